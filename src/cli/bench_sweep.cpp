#include "cli/bench_sweep.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <span>
#include <utility>

#include "cli/bench_memory.h"
#include "model/transformer.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f s", seconds);
  return text;
}

// The median of values already sorted ascending (at least one).
double sorted_median(const std::vector<double>& v) {
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<int32_t> random_tokens(std::mt19937_64& rng, int n, int n_vocab) {
  std::uniform_int_distribution<int32_t> pick(0, n_vocab - 1);
  std::vector<int32_t> tokens(static_cast<std::size_t>(n));
  for (int32_t& t : tokens) t = pick(rng);
  return tokens;
}

void validate(const SweepConfig& c, const model::ModelConfig& m) {
  require(!c.contexts.empty() && !c.samples.empty() && !c.modes.empty(),
          "bench needs at least one context (--npp), one sample count (--npl) and one attention mode");
  require(c.ntg >= 1, "bench --ntg must be >= 1, got ", c.ntg);
  require(c.repeat >= 1, "bench --repeat must be >= 1, got ", c.repeat);
  require(c.prefill_chunk >= 1, "prefill chunk must be >= 1, got ", c.prefill_chunk);
  for (int pp : c.contexts) {
    require(pp >= 1, "bench --npp values must be >= 1, got ", pp);
    // One warm-up step and ntg timed steps follow the prompt.
    require(int64_t(pp) + c.ntg + 1 <= m.context_length, "context ", pp, " + ", c.ntg + 1,
            " decoded tokens exceeds the model's context length ", m.context_length);
  }
  for (int b : c.samples) require(b >= 1 && b <= 4096, "bench --npl values must be in [1, 4096], got ", b);
}

// Everything one context's rows share: its cache, prefilled prompt and figures.
struct ContextState {
  std::unique_ptr<kv::KvCache>
      cache;  // one per context: its pool's memory goes back when the context is done
  kv::SegmentId root = kv::kNoSegment;
  kv::SegmentId keeper = kv::kNoSegment;  // an empty leaf that keeps the root alive between rows
  int context = 0;
  double prefill_seconds = 0;
};

class SweepRunner {
 public:
  SweepRunner(const model::Model& model, const SweepConfig& config, ThreadPool& pool, const SweepHooks& hooks)
      : config_(config),
        pool_(pool),
        hooks_(hooks),
        transformer_(model.config(), model.weights()),
        n_vocab_(model.config().n_vocab),
        rng_(config.seed) {}

  std::vector<BenchRow> run() {
    std::vector<int> contexts = config_.contexts, samples = config_.samples;
    std::sort(contexts.begin(), contexts.end());
    std::sort(samples.begin(), samples.end());
    const kv::KvLayout layout = transformer_.kv_layout(config_.kv_type);
    // The prompt of the longest context, prefilled incrementally: the first
    // `context` tokens of a causal prefill are that context's prefill.
    // Room for the whole prompt plus the block each incremental append may
    // conservatively reserve (check_budget assumes a fresh block per append).
    const std::size_t blocks =
        std::size_t(contexts.back()) / std::size_t(layout.block_tokens) + contexts.size() + 2;
    kv::KvCache prompt_cache(layout, blocks * (layout.block_bytes() + 64));
    const kv::SegmentId prompt_root = prompt_cache.create_root();
    const std::vector<int32_t> prompt = random_tokens(rng_, contexts.back(), n_vocab_);
    std::vector<double> prefill_seconds;  // cumulative, per context
    int prefilled = 0;
    for (int context : contexts) {
      if (cancelled()) return {};
      const double before = prefill_seconds.empty() ? 0 : prefill_seconds.back();
      prefill_seconds.push_back(
          before +
          prefill(prompt_cache, prompt_root,
                  std::span(prompt).subspan(std::size_t(prefilled), std::size_t(context - prefilled))));
      prefilled = context;
      progress(str("prefill: ", context, " tokens in ", seconds_text(prefill_seconds.back())));
    }
    // Round r of every row runs in pass r, so a row's rounds are spread over
    // the whole sweep: a burst of load on the shared machine (seconds long)
    // hits one round of a row, and the median over its steps sets it aside.
    // Odd passes run the modes in the other order, so a change of the
    // machine's state within a pass does not always fall on the same mode
    // (the speedup compares them). Pass 0 keeps bifurcated first: its rows
    // measure peak RSS, and a mode's rows must not see the other's pool.
    std::vector<AttentionMode> modes;
    for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated})
      if (std::find(config_.modes.begin(), config_.modes.end(), mode) != config_.modes.end()) modes.push_back(mode);
    std::vector<BenchRow> rows(contexts.size() * modes.size() * samples.size());
    std::vector<RoundTotals> totals(rows.size());
    std::vector<bool> planned(rows.size(), false), reported(rows.size(), false);
    for (int pass = 0; pass < config_.repeat && !cancelled(); ++pass) {
      for (std::size_t c = 0; c < contexts.size() && !cancelled(); ++c) {
        ContextState state;
        state.cache = std::make_unique<kv::KvCache>(layout, config_.kv_budget_bytes);
        state.context = contexts[c];
        state.prefill_seconds = prefill_seconds[c];
        state.root = state.cache->copy_path_prefix(prompt_cache, prompt_root, contexts[c]);
        state.keeper = state.cache->fork(state.root);
        for (std::size_t k = 0; k < modes.size(); ++k) {
          const std::size_t m = pass % 2 == 0 ? k : modes.size() - 1 - k;
          for (std::size_t s = 0; s < samples.size() && !cancelled(); ++s) {
            const std::size_t index = (c * modes.size() + m) * samples.size() + s;
            if (pass == 0) rows[index] = plan_row(state, modes[m], samples[s]), planned[index] = true;
            run_row_round(state, rows[index], pass, totals[index]);
          }
        }
        if (pass == config_.repeat - 1 && !cancelled()) {  // the context's rows, in report order
          const std::size_t first = c * modes.size() * samples.size();
          for (std::size_t i = first; i < first + modes.size() * samples.size(); ++i) {
            finish_row(rows[i], std::move(totals[i]));
            reported[i] = true;
            if (hooks_.on_row) hooks_.on_row(rows[i]);
          }
        }
      }  // each context's cache (and the memory its pool took) is freed after every pass
    }
    // What a cancelled sweep finished: rows with whole rounds, from those rounds.
    std::vector<BenchRow> done;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (!planned[i]) continue;
      if (!reported[i]) {
        if (!rows[i].skipped && totals[i].rounds == 0) continue;
        rows[i].rounds = std::max(1, totals[i].rounds);
        finish_row(rows[i], std::move(totals[i]));
        if (hooks_.on_row) hooks_.on_row(rows[i]);
      }
      done.push_back(rows[i]);
    }
    return done;
  }

 private:
  void progress(std::string_view line) const {
    if (hooks_.progress) hooks_.progress(line);
  }
  bool cancelled() const { return hooks_.cancel != nullptr && hooks_.cancel->load(); }

  // Appends `tokens` to root `segment`; returns the seconds it took.
  double prefill(kv::KvCache& cache, kv::SegmentId segment, std::span<const int32_t> tokens) {
    if (tokens.empty()) return 0;
    logits_.resize(std::size_t(n_vocab_));
    progress(str("prefill: ", cache.tokens(segment), " + ", tokens.size(), " tokens ..."));
    const double t0 = now_seconds();
    transformer_.prefill(cache, segment, tokens, logits_, false, pool_, config_.prefill_chunk);
    return now_seconds() - t0;
  }

  // What the rounds of one row add up.
  struct RoundTotals {
    int rounds = 0;                 // whole rounds run (a round cut short by Ctrl-C adds nothing)
    std::vector<double> steps;      // every timed step of every round, seconds
    std::vector<double> bandwidth;  // the DRAM probe before each round, bytes/s
    std::vector<double> peak;       // the GEMM probe before each round, FLOP/s
    double attention_seconds = 0;
    double forward_seconds = 0;
  };

  std::string row_name(const ContextState& s, AttentionMode mode, int b) const {
    return str("row PP=", s.context, " B=", b, " ", attention_mode_name(mode));
  }

  // The row's identity and whether it fits the KV budget (checked once: every
  // pass starts from the same fresh cache holding the prompt).
  BenchRow plan_row(const ContextState& s, AttentionMode mode, int b) {
    BenchRow row;
    row.context = s.context;
    row.ntg = config_.ntg;
    row.rounds = config_.repeat;
    row.samples = b;
    row.mode = mode;
    row.prefill_seconds = s.prefill_seconds;
    const RowBudget budget = check_row_budget(*s.cache, mode, s.context, b, config_.ntg + 1);
    row.kv_needed_bytes = budget.needed_bytes;
    row.kv_budget_bytes = budget.budget_bytes;
    if (!budget.fits) {
      row.skipped = true;
      progress(str(row_name(s, mode, b), ": skipped, ", row.skip_reason()));
    }
    return row;
  }

  // One round of a row, preceded by the bandwidth and GEMM probes. Peak RSS is taken in
  // the first pass, where rows run in the order that makes it the row's own.
  void run_row_round(ContextState& s, BenchRow& row, int pass, RoundTotals& totals) {
    if (row.skipped || cancelled()) return;
    if (hooks_.probe_bandwidth) {
      progress(str(row_name(s, row.mode, row.samples), ": probing DRAM read bandwidth ..."));
      totals.bandwidth.push_back(hooks_.probe_bandwidth());
    }
    if (hooks_.probe_peak) {
      progress(str(row_name(s, row.mode, row.samples), ": probing the FMA ceiling ..."));
      totals.peak.push_back(hooks_.probe_peak());
    }
    if (pass == 0) {
      progress(str(row_name(s, row.mode, row.samples), ": preparing ..."));
      row.rss_reset = reset_peak_rss();
    }
    run_round(s, row, pass, totals);
    if (pass == 0) row.peak_rss_bytes = read_peak_rss_bytes();
  }

  // The median of a row's probes; 0 when there were none.
  static double median_probe(std::vector<double> probes) {
    if (probes.empty()) return 0;
    std::sort(probes.begin(), probes.end());
    return sorted_median(probes);
  }

  // The row's figures from all its rounds; its bandwidth and peak are the median probes.
  static void finish_row(BenchRow& row, RoundTotals totals) {
    if (row.skipped) return;
    row.attention_share = totals.forward_seconds > 0 ? totals.attention_seconds / totals.forward_seconds : 0;
    pool_timed_steps(std::move(totals.steps), row);
    row.read_bytes_per_second = median_probe(std::move(totals.bandwidth));
    row.flops_per_second = median_probe(std::move(totals.peak));
  }

  // Makes the row's B sequences, decodes them, records the KV they hold at
  // the end, and releases them (the rounds are identical in memory).
  void run_round(ContextState& s, BenchRow& row, int round, RoundTotals& totals) {
    const int b = row.samples;
    const std::size_t prompt_bytes = s.cache->bytes_in_use();
    std::vector<kv::SegmentId> leaves;
    try {
      const double t0 = now_seconds();
      for (int i = 0; i < b; ++i) {
        leaves.push_back(row.mode == AttentionMode::bifurcated ? s.cache->fork(s.root)
                                                               : s.cache->copy_path(s.root));
      }
      if (round == 0) {
        progress(
            str(row_name(s, row.mode, b), ": ", b,
                row.mode == AttentionMode::bifurcated ? " leaves forked in " : " private copies made in ",
                seconds_text(now_seconds() - t0)));
      }
      decode_round(s, leaves, row, round, totals);
    } catch (...) {
      for (kv::SegmentId leaf : leaves) s.cache->release(leaf);
      throw;
    }
    // The replicated sequences do not need the prompt this bench keeps for the next rows.
    row.kv_bytes = s.cache->bytes_in_use() - (row.mode == AttentionMode::replicated ? prompt_bytes : 0);
    for (kv::SegmentId leaf : leaves) s.cache->release(leaf);
  }

  // One untimed warm-up step, then config_.ntg timed steps; a round cut
  // short by cancel adds nothing to `totals`.
  void decode_round(ContextState& s, const std::vector<kv::SegmentId>& leaves, const BenchRow& row, int round,
                    RoundTotals& totals) {
    const int b = int(leaves.size());
    logits_.resize(std::size_t(b) * std::size_t(n_vocab_));
    std::vector<double> steps;
    for (int step = 0; step <= config_.ntg; ++step) {
      if (cancelled()) return;
      const std::vector<int32_t> tokens = random_tokens(rng_, b, n_vocab_);
      if (step == 1) transformer_.reset_timings();
      const double t0 = now_seconds();
      transformer_.decode(*s.cache, leaves, tokens, logits_.data(), pool_);
      if (step > 0) steps.push_back(now_seconds() - t0);
      progress(str(row_name(s, row.mode, b), ": round ", round + 1, "/", config_.repeat, ", step ", step, "/",
                   config_.ntg));
    }
    const model::ForwardTimings& t = transformer_.timings();
    totals.attention_seconds += t.attention;
    totals.forward_seconds += t.total;
    totals.steps.insert(totals.steps.end(), steps.begin(), steps.end());
    ++totals.rounds;
  }

  const SweepConfig& config_;
  ThreadPool& pool_;
  const SweepHooks& hooks_;
  model::Transformer transformer_;
  int n_vocab_;
  std::mt19937_64 rng_;
  std::vector<float> logits_;
};

}  // namespace

std::string BenchRow::skip_reason() const {
  char text[96];
  const double gib = double(std::size_t(1) << 30);
  std::snprintf(text, sizeof text, "needs %.2f GiB > budget %.2f GiB", double(kv_needed_bytes) / gib,
                double(kv_budget_bytes) / gib);
  return text;
}

void pool_timed_steps(std::vector<double> steps, BenchRow& row) {
  require(!steps.empty() && row.rounds >= 1, "pool_timed_steps needs steps and rounds >= 1, got ",
          steps.size(), " steps, ", row.rounds, " rounds");
  double sum = 0;
  for (double x : steps) sum += x;
  row.decode_seconds = sum / double(row.rounds);
  row.step_mean_seconds = sum / double(steps.size());
  std::sort(steps.begin(), steps.end());
  row.step_median_seconds = sorted_median(steps);
  row.step_min_seconds = steps.front();
  row.step_max_seconds = steps.back();
}

int64_t BenchRow::n_kv() const {
  return mode == AttentionMode::bifurcated ? int64_t(context) + int64_t(samples) * ntg
                                           : int64_t(samples) * (int64_t(context) + ntg);
}

RowBudget check_row_budget(const kv::KvCache& cache, AttentionMode mode, int context, int samples,
                           int steps) {
  // Bifurcated: B fresh leaves of `steps` tokens. Replicated: B private copies
  // of the prompt, each growing by `steps` tokens. A decode step takes a new
  // block only for a sequence whose last block is full, so whole blocks of
  // each sequence's tokens are exactly what it needs.
  const int64_t per_sequence = mode == AttentionMode::bifurcated ? steps : int64_t(context) + steps;
  const std::size_t per_sequence_bytes = cache.bytes_for_tokens(per_sequence);
  RowBudget r;
  r.budget_bytes = cache.budget_bytes();
  r.needed_bytes = cache.bytes_in_use() + std::size_t(samples) * per_sequence_bytes;
  r.fits = r.needed_bytes <= r.budget_bytes;
  return r;
}

std::vector<BenchRow> run_sweep(const model::Model& model, const SweepConfig& config, ThreadPool& pool,
                                const SweepHooks& hooks) {
  validate(config, model.config());
  return SweepRunner(model, config, pool, hooks).run();
}

}  // namespace bifurcate::cli
