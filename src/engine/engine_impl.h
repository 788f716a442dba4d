// Engine internals shared by the engine's source files.
#pragma once

#include <memory>

#include "bifurcate/engine.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/transformer.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace bifurcate {

struct Engine::Impl {
  EngineOptions options;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  ModelInfo info;
  ThreadPool pool;
  model::Transformer transformer;
  kv::KvCache cache;

  explicit Impl(const EngineOptions& options);
};

// Converts the public sampling options to the sampler's parameters.
sampling::SamplingParams to_sampling_params(const SamplingOptions& options);

// Orders samples by `ranking` (stable: ties keep draw order) and keeps the first n.
void rank_samples(std::vector<Sample>& samples, Ranking ranking, int n);

}  // namespace bifurcate
