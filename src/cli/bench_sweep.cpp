#include "cli/bench_sweep.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>

#include "cli/bench_memory.h"
#include "model/transformer.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

double gib(std::size_t bytes) { return double(bytes) / double(std::size_t(1) << 30); }

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f s", seconds);
  return text;
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
  std::unique_ptr<kv::KvCache> cache;  // one per context: its pool's memory goes back when the context is done
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
    std::vector<int> samples = config_.samples;
    std::sort(samples.begin(), samples.end());
    std::vector<BenchRow> rows;
    for (int context : config_.contexts) {
      ContextState state;
      prefill_context(context, state);
      for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
        if (std::find(config_.modes.begin(), config_.modes.end(), mode) == config_.modes.end()) continue;
        for (int b : samples) {
          rows.push_back(run_row(state, mode, b));
          if (hooks_.on_row) hooks_.on_row(rows.back());
        }
      }
    }  // each context's cache (and the memory its pool took) is freed here
    return rows;
  }

 private:
  void progress(std::string_view line) const {
    if (hooks_.progress) hooks_.progress(line);
  }

  void prefill_context(int context, ContextState& s) {
    s.cache = std::make_unique<kv::KvCache>(transformer_.kv_layout(config_.kv_type), config_.kv_budget_bytes);
    s.context = context;
    s.root = s.cache->create_root();
    const std::vector<int32_t> prompt = random_tokens(rng_, context, n_vocab_);
    logits_.resize(std::size_t(n_vocab_));
    progress(str("prefill: ", context, " tokens ..."));
    const double t0 = now_seconds();
    transformer_.prefill(*s.cache, s.root, prompt, logits_, false, pool_, config_.prefill_chunk);
    s.prefill_seconds = now_seconds() - t0;
    s.keeper = s.cache->fork(s.root);
    progress(str("prefill: ", context, " tokens in ", seconds_text(s.prefill_seconds)));
  }

  BenchRow run_row(ContextState& s, AttentionMode mode, int b) {
    BenchRow row;
    row.context = s.context;
    row.ntg = config_.ntg;
    row.samples = b;
    row.mode = mode;
    row.prefill_seconds = s.prefill_seconds;
    const RowBudget budget = check_row_budget(*s.cache, mode, s.context, b, config_.ntg + 1);
    row.kv_needed_bytes = budget.needed_bytes;
    row.kv_budget_bytes = budget.budget_bytes;
    if (!budget.fits) {
      row.skipped = true;
      progress(str("row PP=", s.context, " B=", b, " ", mode_name(mode), ": skipped, needs ",
                   gib(budget.needed_bytes), " GiB > budget ", gib(budget.budget_bytes), " GiB"));
      return row;
    }
    progress(str("row PP=", s.context, " B=", b, " ", mode_name(mode), ": preparing ..."));
    row.rss_reset = reset_peak_rss();
    const std::size_t prompt_bytes = s.cache->bytes_in_use();
    std::vector<kv::SegmentId> leaves;
    try {
      const double t0 = now_seconds();
      for (int i = 0; i < b; ++i) {
        leaves.push_back(mode == AttentionMode::bifurcated ? s.cache->fork(s.root) : s.cache->copy_path(s.root));
      }
      progress(str("row PP=", s.context, " B=", b, " ", mode_name(mode), ": ", b, mode == AttentionMode::bifurcated ? " leaves forked in " : " private copies made in ",
                   seconds_text(now_seconds() - t0)));
      decode_row(s, leaves, row);
    } catch (...) {
      for (kv::SegmentId leaf : leaves) s.cache->release(leaf);
      throw;
    }
    // The replicated sequences do not need the prompt this bench keeps for the next rows.
    row.kv_bytes = s.cache->bytes_in_use() - (mode == AttentionMode::replicated ? prompt_bytes : 0);
    row.peak_rss_bytes = read_peak_rss_bytes();
    for (kv::SegmentId leaf : leaves) s.cache->release(leaf);
    return row;
  }

  // One untimed warm-up step, then config_.ntg timed steps.
  void decode_row(ContextState& s, const std::vector<kv::SegmentId>& leaves, BenchRow& row) {
    const int b = int(leaves.size());
    logits_.resize(std::size_t(b) * std::size_t(n_vocab_));
    std::vector<double> steps;
    for (int step = 0; step <= config_.ntg; ++step) {
      const std::vector<int32_t> tokens = random_tokens(rng_, b, n_vocab_);
      if (step == 1) transformer_.reset_timings();
      const double t0 = now_seconds();
      transformer_.decode(*s.cache, leaves, tokens, logits_.data(), pool_);
      if (step > 0) steps.push_back(now_seconds() - t0);
      progress(str("row PP=", s.context, " B=", b, " ", mode_name(row.mode), ": step ", step, "/", config_.ntg));
    }
    const model::ForwardTimings& t = transformer_.timings();
    row.attention_share = t.total > 0 ? t.attention / t.total : 0;
    for (double x : steps) row.decode_seconds += x;
    row.step_mean_seconds = row.decode_seconds / double(steps.size());
    std::sort(steps.begin(), steps.end());
    const std::size_t n = steps.size();
    row.step_median_seconds = n % 2 == 1 ? steps[n / 2] : 0.5 * (steps[n / 2 - 1] + steps[n / 2]);
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

std::string_view mode_name(AttentionMode mode) {
  return mode == AttentionMode::bifurcated ? "bifurcated" : "replicated";
}

int64_t BenchRow::n_kv() const {
  return mode == AttentionMode::bifurcated ? int64_t(context) + int64_t(samples) * ntg
                                           : int64_t(samples) * (int64_t(context) + ntg);
}

RowBudget check_row_budget(const kv::KvCache& cache, AttentionMode mode, int context, int samples, int steps) {
  // Bifurcated: B fresh leaves of `steps` tokens. Replicated: B private copies
  // of the prompt, each growing by `steps` tokens.
  const int64_t per_sequence = mode == AttentionMode::bifurcated ? steps : int64_t(context) + steps;
  RowBudget r;
  r.budget_bytes = cache.budget_bytes();
  r.needed_bytes = cache.bytes_in_use() + std::size_t(samples) * cache.bytes_for_tokens(per_sequence);
  r.fits = r.needed_bytes <= r.budget_bytes;
  return r;
}

std::vector<BenchRow> run_sweep(const model::Model& model, const SweepConfig& config, ThreadPool& pool,
                                const SweepHooks& hooks) {
  validate(config, model.config());
  return SweepRunner(model, config, pool, hooks).run();
}

}  // namespace bifurcate::cli
