// Engine internals shared by the engine's source files.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "bifurcate/engine.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/transformer.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"
#include "engine/scheduler.h"
#include "util/thread_pool.h"

namespace bifurcate {

struct Engine::Impl {
  EngineOptions options;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  ModelInfo info;
  ThreadPool pool;
  model::Transformer transformer;
  kv::KvCache cache;                             // the model thread's (scheduler.h)
  std::unique_ptr<engine::Scheduler> scheduler;  // last: its thread stops before the rest goes

  explicit Impl(const EngineOptions& options);
  ~Impl();
};

// The KV budget EngineOptions::kv_budget_bytes asks for (0: from MemAvailable).
std::size_t resolve_kv_budget(std::size_t requested);

// Refuses up front work whose KV cache could outgrow what the budget has free:
// a root of `root_tokens` plus `n_leaves` leaves of up to `leaf_tokens` each,
// in whole blocks. `what` names the work: the Error reads "<what> need N bytes
// (x GiB) of KV cache; the budget has M bytes (y GiB) free".
void require_kv_budget(const kv::KvCache& cache, size_t root_tokens, size_t n_leaves, size_t leaf_tokens,
                       const std::string& what);

// Prefills `tokens` into a fresh root segment of the engine's cache, in
// chunks of options.prefill_chunk; the root is released on error. Logits as
// model::Transformer::prefill writes them.
kv::SegmentId prefill_root(Engine::Impl& engine, std::span<const int32_t> tokens, std::span<float> logits,
                           bool all_positions);

// `n` leaves of `root`, one per sequence: O(1) forks when bifurcated; when
// replicated, private copies of the root's tokens, after which the root is
// released (a forked root is freed with its last leaf). On error everything,
// the root included, is released.
std::vector<kv::SegmentId> fork_leaves(Engine::Impl& engine, kv::SegmentId root, int n);

// Converts the public sampling options to the sampler's parameters.
sampling::SamplingParams to_sampling_params(const SamplingOptions& options);

// Orders samples by `ranking` (stable: ties keep draw order) and keeps the first n.
void rank_samples(std::vector<Sample>& samples, Ranking ranking, int n);

}  // namespace bifurcate
