// The measurement behind `bifurcate bench`. One random prompt of the longest
// context is prefilled once, incrementally: contexts run ascending, and the
// first PP tokens of a causal prefill are PP's prefill, so T_PP(PP) is the
// cumulative prefill time up to PP. Each context's rows get a KV cache of
// their own (budget = --kv-budget-gib) holding a copy of those PP tokens
// (KvCache::copy_path_prefix); per
// (mode, B) a round makes the B sequences from it (fork: bifurcated; private
// copy: replicated), decodes one warm-up step plus `ntg` timed steps of
// random tokens, and releases them. The sweep runs `repeat` passes, round r
// of every row in pass r (each pass builds the contexts' caches afresh), so a
// row's rounds are spread over the run: a machine shared with others swings
// over seconds to minutes, and a burst hits one round, which the row's median
// over all repeat·ntg timed steps sets aside. Within a pass rows run
// bifurcated first, then replicated, B ascending, so the KV pool (which keeps
// freed blocks until the context's cache is destroyed) only grows with the
// row that needs it and each row's peak RSS (taken in the first pass) is its own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bifurcate/engine.h"
#include "kernels/attention_types.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "util/thread_pool.h"

namespace bifurcate::cli {

struct SweepConfig {
  std::vector<int> contexts;         // PP values; run ascending
  int ntg = 32;                      // timed decode steps per round (TG)
  int repeat = 1;                    // rounds per row, each a warm-up step + ntg timed steps
  std::vector<int> samples;          // B values; run ascending
  std::vector<AttentionMode> modes;  // run bifurcated first whatever the order here
  kernels::KvType kv_type = kernels::KvType::f16;
  std::size_t kv_budget_bytes = std::size_t(8) << 30;
  uint64_t seed = 1;  // prompt and decode tokens
  int prefill_chunk = 256;
};

// One (context, B, mode) row. Seconds and bytes are measured.
struct BenchRow {
  int context = 0;  // PP
  int ntg = 0;      // TG: timed steps per round
  int rounds = 1;   // N: rounds pooled in the figures below
  int samples = 0;  // B
  AttentionMode mode = AttentionMode::bifurcated;
  bool skipped = false;
  std::size_t kv_needed_bytes = 0;  // what the row needs (prompt held + its sequences' growth)
  std::size_t kv_budget_bytes = 0;

  double prefill_seconds = 0;    // T_PP: the one prefill of this context
  double decode_seconds = 0;     // T_TG: one round's ntg timed steps, averaged over the rounds
  double step_mean_seconds = 0;  // the step statistics pool all N·TG timed steps
  double step_median_seconds = 0;
  double step_min_seconds = 0;
  double step_max_seconds = 0;
  double attention_share = 0;        // attention seconds / forward seconds over all timed steps
  double read_bytes_per_second = 0;  // median of the DRAM read probes before its rounds; 0: not probed
  double flops_per_second = 0;       // median of the GEMM peak probes before its rounds; 0: not probed
  std::size_t kv_bytes = 0;  // KV the row's B sequences hold at its end (bifurcated: incl. the shared prompt)
  std::size_t peak_rss_bytes = 0;  // VmHWM after the row
  bool rss_reset = false;          // false: VmHWM is the process-wide peak

  int timed_steps() const { return rounds * ntg; }
  // The batched-bench columns (llama.cpp's llama-batched-bench).
  int64_t n_kv() const;  // PP + B·TG shared prompt, B·(PP+TG) replicated
  // Why a skipped row was skipped: "needs 1.50 GiB > budget 1.00 GiB".
  std::string skip_reason() const;
  double s_pp() const { return prefill_seconds > 0 ? context / prefill_seconds : 0; }
  double s_tg() const { return decode_seconds > 0 ? double(samples) * ntg / decode_seconds : 0; }
  double total_seconds() const { return prefill_seconds + decode_seconds; }
  double s_total() const { return total_seconds() > 0 ? double(n_kv()) / total_seconds() : 0; }
};

// Whether a row fits the KV budget: `needed` = bytes already in use (the
// prompt) + for each of B new sequences of `steps` decoded tokens, the blocks
// it holds before its last step plus the fresh block that step must be able
// to start (the decode step's admission rule).
struct RowBudget {
  bool fits = false;
  std::size_t needed_bytes = 0;
  std::size_t budget_bytes = 0;
};
RowBudget check_row_budget(const kv::KvCache& cache, AttentionMode mode, int context, int samples, int steps);

// Fills row's step figures from every timed step of its row.rounds rounds
// (seconds, any order): mean, median, min, max over all of them, and
// decode_seconds = their sum / rounds (one round's T_TG on average).
void pool_timed_steps(std::vector<double> steps, BenchRow& row);

struct SweepHooks {
  std::function<void(std::string_view line)> progress;  // one status line (no newline)
  std::function<void(const BenchRow&)> on_row;          // each row as soon as it is measured
  // Called right before each round of a row that runs (not for skipped
  // rows); the median of the bytes/s it returns for a row becomes the row's
  // read_bytes_per_second.
  std::function<double()> probe_bandwidth;
  // The same for the GEMM peak (FLOP/s): the row's flops_per_second. The
  // compute left to us moves too (two vCPUs sharing one core halve it).
  std::function<double()> probe_peak;
  // Ctrl-C: polled before each round and between decode steps. Once set,
  // the sweep stops and returns what it finished: a row with at least one
  // whole round keeps those rounds (BenchRow::rounds says how many; a round
  // cut short is dropped), a skipped row stays, rows never reached are left
  // out. on_row is still called once for every returned row.
  const std::atomic<bool>* cancel = nullptr;
};

// Validates the config against the model (Error names the offending value)
// and runs every row. Throws nothing for rows that do not fit: they are skipped.
std::vector<BenchRow> run_sweep(const model::Model& model, const SweepConfig& config, ThreadPool& pool,
                                const SweepHooks& hooks);

}  // namespace bifurcate::cli
