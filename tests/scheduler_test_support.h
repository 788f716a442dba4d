// Shared by the scheduler tests: a tiny random-weight model with a real
// vocabulary, request sets with overlapping and disjoint prefixes, running
// requests from many threads at once, and the exactness check.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bifurcate/engine.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "numeric_test_support.h"

namespace bifurcate::scheduler_test {

inline const std::string kVocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
inline const std::string kStories = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

// A tiny random model file (F32 weights, the llama-spm vocabulary), written
// once per process and kept until exit (engines map it).
inline const std::string& tiny_model_path(const std::string& shape = "tiny") {
  static std::map<std::string, std::string> paths;
  auto it = paths.find(shape);
  if (it != paths.end()) return it->second;
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("bifurcate_scheduler_" + shape + "_" + std::to_string(getpid()) + ".gguf"))
                               .string();
  model::write_random_model(model::find_model_shape(shape), gguf::GgmlType::F32, kVocab, 11, path, {}, 2);
  std::atexit([] {
    for (const auto& [name, p] : paths) std::filesystem::remove(p);
  });
  return paths.emplace(shape, path).first->second;
}

inline EngineOptions tiny_options(AttentionMode mode, bool prefix_cache, int step_tokens = 256, int chunk = 256) {
  EngineOptions o;
  o.model_path = tiny_model_path();
  o.threads = 2;
  o.attention = mode;
  o.kv_precision = KvPrecision::f32;
  o.kv_budget_bytes = std::size_t(64) << 20;
  o.prefix_cache = prefix_cache;
  o.step_tokens = step_tokens;
  o.prefill_chunk = chunk;
  return o;
}

// `count` requests: groups of a shared "system prompt" (lengths not multiples
// of the 32-token block, one longer than two blocks) plus a question of their
// own, some identical to another, some with no shared prefix; greedy and
// seeded sampling, n and best_of, different lengths.
inline std::vector<GenerationRequest> mixed_requests(int count, uint32_t seed, int n_vocab) {
  std::mt19937 rng(seed);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(3 + rng() % uint32_t(n_vocab - 3));
    return t;
  };
  const std::vector<std::vector<int32_t>> systems = {tokens(37), tokens(70), tokens(100), tokens(64)};
  std::vector<GenerationRequest> out;
  for (int i = 0; i < count; ++i) {
    GenerationRequest r;
    if (i % 7 == 6) {
      r.prompt_tokens = tokens(1 + int(rng() % 50));  // no shared prefix
    } else if (i % 5 == 4 && !out.empty()) {
      r.prompt_tokens = out[size_t(i - 1)].prompt_tokens;  // the same prompt as the one before
    } else {
      r.prompt_tokens = systems[size_t(i) % systems.size()];
      const std::vector<int32_t> own = tokens(1 + int(rng() % 40));
      r.prompt_tokens.insert(r.prompt_tokens.end(), own.begin(), own.end());
    }
    r.n = 1 + i % 3;
    r.best_of = i % 4 == 3 ? r.n + 1 : 0;
    r.max_tokens = 3 + int(rng() % 14);
    r.ignore_eos = true;
    r.ranking = Ranking::none;
    r.sampling.temperature = i % 2 == 0 ? 0.0f : 0.8f;
    r.sampling.seed = 100 + uint64_t(i);
    r.sampling.top_logprobs = i % 3 == 0 ? 2 : 0;
    out.push_back(r);
  }
  return out;
}

// Every request on its own thread, all submitted at (nearly) the same time.
inline std::vector<GenerationResult> run_concurrently(Engine& engine, const std::vector<GenerationRequest>& requests) {
  std::vector<GenerationResult> results(requests.size());
  std::vector<std::string> errors(requests.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        results[i] = engine.generate(requests[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < errors.size(); ++i) EXPECT_EQ(errors[i], "") << "request " << i;
  return results;
}

// Same tokens, and log-probs within 1e-5 relative (f32 KV), sample by sample.
inline void expect_same_samples(const GenerationResult& got, const GenerationResult& want, const std::string& what) {
  ASSERT_EQ(got.samples.size(), want.samples.size()) << what;
  for (size_t s = 0; s < want.samples.size(); ++s) {
    const Sample& a = got.samples[s];
    const Sample& b = want.samples[s];
    EXPECT_EQ(a.index, b.index) << what;
    EXPECT_EQ(a.tokens, b.tokens) << what << " sample " << s;
    ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
    for (size_t t = 0; t < b.logprobs.size(); ++t)
      EXPECT_LE(std::abs(a.logprobs[t] - b.logprobs[t]), 1e-5 * std::max(1.0f, std::abs(b.logprobs[t])))
          << what << " sample " << s << " token " << t;
    EXPECT_EQ(a.top_logprobs.size(), b.top_logprobs.size()) << what;
    EXPECT_EQ(a.finish_reason, b.finish_reason) << what;
  }
}

}  // namespace bifurcate::scheduler_test
