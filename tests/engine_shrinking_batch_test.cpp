// Samples leaving the batch at different steps — by stop string, by EOS, by
// cancellation — on the real stories260K model with the default f16 KV,
// through the public Engine API only (so the tests hold for any scheduler
// behind it). Each run is compared with the same request run to full length
// (ignore_eos, no stop strings), where every sample decodes to the end: a
// sample that left must hold exactly the prefix of its full-length tokens up
// to its stop rule, a survivor exactly its full-length tokens, and sample 0
// (stream 0 of the seed) exactly what it decodes alone, as an n = 1 request.
// After every request the KV pool is back to its idle size: no blocks
// (Engine::status().kv_bytes_used, with the prefix cache off).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "bifurcate/engine.h"
#include "gguf/gguf_value.h"
#include "model_file_support.h"

namespace bifurcate {
namespace {

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

Engine make_engine(AttentionMode mode, const std::string& path = kModel) {
  EngineOptions o;
  o.model_path = path;
  o.threads = 2;
  o.attention = mode;
  o.kv_budget_bytes = std::size_t(64) << 20;
  o.prefix_cache = false;  // idle then means no KV blocks at all
  return Engine(o);
}

GenerationRequest sampled(int n, uint64_t seed, int max_tokens) {
  GenerationRequest r;
  r.prompt = "Once upon a time";
  r.n = n;
  r.max_tokens = max_tokens;
  r.ranking = Ranking::none;
  r.sampling.temperature = 0.9f;
  r.sampling.top_p = 0.95f;
  r.sampling.seed = seed;
  return r;
}

// A request's result with what its callbacks saw.
struct Observed {
  GenerationResult result;
  std::vector<int> active;                          // on_step's active count, per step
  std::vector<int> tokens_seen;                     // on_token calls per sample
  std::vector<std::vector<FinishReason>> finished;  // on_finish calls per sample
};

// Runs `r`; `cancel_after_step`, when >= 1, sets the cancel flag from on_step
// after that step and records how many tokens each sample had then.
Observed observe(Engine& engine, const GenerationRequest& r, int cancel_after_step = 0,
                 std::vector<int>* tokens_at_cancel = nullptr) {
  Observed o;
  const int drawn = std::max(r.n, r.best_of);
  o.tokens_seen.assign(size_t(drawn), 0);
  o.finished.resize(size_t(drawn));
  std::atomic<bool> cancel{false};
  GenerationCallbacks callbacks;
  callbacks.on_token = [&](int i, const TokenEvent&) { ++o.tokens_seen.at(size_t(i)); };
  callbacks.on_finish = [&](int i, FinishReason reason) { o.finished.at(size_t(i)).push_back(reason); };
  callbacks.on_step = [&](int, int active) {
    o.active.push_back(active);
    if (cancel_after_step >= 1 && int(o.active.size()) == cancel_after_step) {
      if (tokens_at_cancel != nullptr) *tokens_at_cancel = o.tokens_seen;
      cancel = true;
    }
  };
  callbacks.cancel = &cancel;
  o.result = engine.generate(r, callbacks);
  // Every sample's callbacks agree with its result.
  for (const Sample& s : o.result.samples) {
    EXPECT_EQ(o.tokens_seen.at(size_t(s.index)), int(s.tokens.size()))
        << "on_token calls, sample " << s.index;
    EXPECT_EQ(o.finished.at(size_t(s.index)), std::vector<FinishReason>{s.finish_reason})
        << "on_finish calls, sample " << s.index;
  }
  EXPECT_EQ(engine.status().kv_bytes_used, 0u) << "the KV pool is not back to idle after the request";
  return o;
}

bool is_prefix(const std::vector<int32_t>& part, const std::vector<int32_t>& whole) {
  return part.size() <= whole.size() && std::equal(part.begin(), part.end(), whole.begin());
}

// Where a stop string ends sample `full` (its full-length run): the stop
// whose first occurrence ENDS first triggers; the text is cut where it
// starts, and the tokens end with the one that completed it.
struct StopPoint {
  bool stops = false;
  size_t cut = 0;       // text length kept
  size_t n_tokens = 0;  // tokens kept
};

StopPoint stop_point(const Engine& engine, const Sample& full, const std::vector<std::string>& stops) {
  StopPoint p;
  size_t end = std::string::npos;
  for (const std::string& s : stops) {
    const size_t at = full.text.find(s);
    if (at != std::string::npos && at + s.size() < end) end = at + s.size(), p.cut = at, p.stops = true;
  }
  if (!p.stops) return p;
  for (size_t length = 0; length < end; ++p.n_tokens)
    length += engine.token_to_piece(full.tokens.at(p.n_tokens)).size();
  return p;
}

// Stop strings taken from samples 1.. of `full`, at increasing offsets (so
// they end those samples at different steps), none occurring in sample 0.
std::vector<std::string> stops_from(const GenerationResult& full) {
  std::vector<std::string> stops;
  const std::string& keep = full.samples.at(0).text;
  for (size_t j = 1; j < full.samples.size(); ++j) {
    const std::string& text = full.samples[j].text;
    for (size_t at = 6 * j + 3; at + 5 <= text.size(); ++at) {
      const std::string s = text.substr(at, 5);
      if (keep.find(s) == std::string::npos) {
        stops.push_back(s);
        break;
      }
    }
  }
  return stops;
}

class ShrinkingBatch : public ::testing::TestWithParam<AttentionMode> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  }
};

TEST_P(ShrinkingBatch, StopStringsEndSamplesAtDifferentStepsAndSurvivorsAreUnchanged) {
  Engine engine = make_engine(GetParam());
  ASSERT_EQ(engine.status().kv_bytes_used, 0u);
  GenerationRequest r = sampled(8, 11, 48);
  r.ignore_eos = true;
  const GenerationResult full = observe(engine, r).result;
  r.stop = stops_from(full);
  ASSERT_EQ(r.stop.size(), 7u);
  const Observed run = observe(engine, r);

  std::set<size_t> stop_lengths;
  int survivors = 0;
  for (size_t i = 0; i < run.result.samples.size(); ++i) {
    const Sample& s = run.result.samples[i];
    const Sample& f = full.samples[i];
    const StopPoint p = stop_point(engine, f, r.stop);
    if (p.stops) {
      EXPECT_EQ(s.finish_reason, FinishReason::stop) << "sample " << i;
      EXPECT_EQ(s.text, f.text.substr(0, p.cut)) << "sample " << i;
      EXPECT_EQ(s.tokens,
                std::vector<int32_t>(f.tokens.begin(), f.tokens.begin() + std::ptrdiff_t(p.n_tokens)))
          << "sample " << i;
      stop_lengths.insert(p.n_tokens);
    } else {
      ++survivors;
      EXPECT_EQ(s.finish_reason, FinishReason::length) << "sample " << i;
      EXPECT_EQ(s.tokens, f.tokens) << "sample " << i;
      EXPECT_EQ(s.text, f.text) << "sample " << i;
    }
  }
  // The batch really shrank, at several different steps, and someone stayed.
  ASSERT_GE(stop_lengths.size(), 3u) << "the stop strings did not end samples at 3 different steps";
  ASSERT_GE(survivors, 1);
  EXPECT_TRUE(std::is_sorted(run.active.rbegin(), run.active.rend())) << "the batch grew";
  EXPECT_GE(std::set<int>(run.active.begin(), run.active.end()).size(), 3u);

  // Sample 0 survived; alone it decodes the same tokens.
  GenerationRequest alone = r;
  alone.n = 1;
  EXPECT_EQ(observe(engine, alone).result.samples.at(0).tokens, run.result.samples.at(0).tokens);
}

// stories260K never samples its EOS (llama2.c's stories end with BOS), so
// this test gives a copy of the model another EOS id (the writer rewrites
// tokenizer.ggml.eos_token_id): a token that, in the full-length run, first
// appears in several samples at different steps but never in sample 0 nor in
// at least one other.
TEST_P(ShrinkingBatch, EosEndsSamplesAtDifferentStepsAndSurvivorsAreUnchanged) {
  GenerationRequest r = sampled(8, 11, 64);
  r.ignore_eos = true;
  int32_t eos = -1;
  {
    Engine original = make_engine(GetParam());
    const GenerationResult probe = original.generate(r);
    const std::vector<int32_t>& first = probe.samples.at(0).tokens;
    for (int32_t t = 3; t < original.model_info().n_vocab && eos < 0; ++t) {
      if (std::find(first.begin(), first.end(), t) != first.end()) continue;
      std::set<std::ptrdiff_t> steps;
      int without = 0;
      for (const Sample& s : probe.samples) {
        const auto at = std::find(s.tokens.begin(), s.tokens.end(), t);
        if (at == s.tokens.end()) {
          ++without;
        } else {
          steps.insert(at - s.tokens.begin());
        }
      }
      if (steps.size() >= 3 && without >= 2) eos = t;
    }
  }
  ASSERT_GE(eos, 0) << "no token first appears in 3 samples at different steps";
  test_models::ScratchDir dir("shrinking_batch");
  const std::string path = dir.path("stories260K-eos.gguf");
  test_models::GgufCopy copy = test_models::GgufCopy::read(kModel);
  copy.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(uint32_t(eos)));
  copy.write(path);
  Engine engine = make_engine(GetParam(), path);
  ASSERT_NE(engine.model_info().eos_token, "</s>") << "the copy kept the original EOS";

  const GenerationResult full = observe(engine, r).result;
  r.ignore_eos = false;
  const Observed run = observe(engine, r);
  std::set<size_t> eos_steps;
  for (size_t i = 0; i < run.result.samples.size(); ++i) {
    const Sample& s = run.result.samples[i];
    const std::vector<int32_t>& f = full.samples[i].tokens;
    const auto at = std::find(f.begin(), f.end(), eos);
    EXPECT_EQ(s.tokens, std::vector<int32_t>(f.begin(), at)) << "sample " << i;
    EXPECT_EQ(s.finish_reason, at == f.end() ? FinishReason::length : FinishReason::eos) << "sample " << i;
    if (at != f.end()) eos_steps.insert(size_t(at - f.begin()));
  }
  EXPECT_GE(eos_steps.size(), 3u);
  EXPECT_TRUE(std::is_sorted(run.active.rbegin(), run.active.rend())) << "the batch grew";
  EXPECT_GE(std::set<int>(run.active.begin(), run.active.end()).size(), 3u);

  GenerationRequest alone = r;
  alone.n = 1;
  const Sample& zero = run.result.samples.at(0);
  EXPECT_EQ(zero.finish_reason, FinishReason::length);
  EXPECT_EQ(observe(engine, alone).result.samples.at(0).tokens, zero.tokens);
}

TEST_P(ShrinkingBatch, CancellationEndsTheSamplesStillRunning) {
  Engine engine = make_engine(GetParam());
  GenerationRequest r = sampled(8, 11, 48);
  r.ignore_eos = true;
  const GenerationResult full = observe(engine, r).result;
  r.stop = stops_from(full);
  const int cancel_step = 10;
  std::vector<int> tokens_at_cancel;
  const Observed run = observe(engine, r, cancel_step, &tokens_at_cancel);
  ASSERT_EQ(tokens_at_cancel.size(), run.result.samples.size());
  int stopped = 0, cancelled = 0;
  for (size_t i = 0; i < run.result.samples.size(); ++i) {
    const Sample& s = run.result.samples[i];
    const StopPoint p = stop_point(engine, full.samples[i], r.stop);
    EXPECT_TRUE(is_prefix(s.tokens, full.samples[i].tokens)) << "sample " << i;
    if (p.stops && p.n_tokens <= size_t(tokens_at_cancel[i])) {
      ++stopped;  // ended by its stop string before the cancellation
      EXPECT_EQ(s.finish_reason, FinishReason::stop) << "sample " << i;
      EXPECT_EQ(s.tokens.size(), p.n_tokens) << "sample " << i;
    } else {
      ++cancelled;
      EXPECT_EQ(s.finish_reason, FinishReason::cancelled) << "sample " << i;
      // Cancellation is polled between steps: at most one more token after the flag.
      EXPECT_GE(s.tokens.size(), size_t(tokens_at_cancel[i])) << "sample " << i;
      EXPECT_LE(s.tokens.size(), size_t(tokens_at_cancel[i]) + 1) << "sample " << i;
    }
  }
  EXPECT_GE(stopped, 1);
  EXPECT_GE(cancelled, 2);
}

// The default configuration in both modes gives the same sampled tokens
// while the batch shrinks (f16 KV, stop strings).
TEST(ShrinkingBatchModes, BifurcatedAndReplicatedAgreeWithF16Kv) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  Engine bifurcated = make_engine(AttentionMode::bifurcated),
         replicated = make_engine(AttentionMode::replicated);
  GenerationRequest r = sampled(8, 11, 48);
  r.ignore_eos = true;
  r.stop = stops_from(bifurcated.generate(r));
  const GenerationResult a = bifurcated.generate(r), b = replicated.generate(r);
  ASSERT_EQ(a.samples.size(), b.samples.size());
  for (size_t i = 0; i < a.samples.size(); ++i) {
    EXPECT_EQ(a.samples[i].tokens, b.samples[i].tokens) << "sample " << i;
    EXPECT_EQ(a.samples[i].finish_reason, b.samples[i].finish_reason) << "sample " << i;
  }
  GenerationRequest greedy = r;
  greedy.sampling.temperature = 0;
  EXPECT_EQ(bifurcated.generate(greedy).samples.at(3).tokens,
            replicated.generate(greedy).samples.at(3).tokens);
}

// With the prefix cache on (the default), whatever stays cached after a
// request is only the cache's: no sequence still holds blocks.
TEST(ShrinkingBatchModes, DefaultOptionsHoldOnlyCachedBlocksWhenIdle) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  Engine engine({.model_path = kModel, .threads = 2});
  GenerationRequest r = sampled(6, 5, 40);
  r.stop = {"the", "and"};
  engine.generate(r);
  const EngineStatus idle = engine.status();
  EXPECT_EQ(idle.kv_bytes_used, idle.kv_bytes_cached);
  EXPECT_EQ(idle.running_requests, 0);
  EXPECT_EQ(idle.queued_requests, 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, ShrinkingBatch,
                         ::testing::Values(AttentionMode::bifurcated, AttentionMode::replicated),
                         [](const auto& info) {
                           return std::string(info.param == AttentionMode::bifurcated ? "Bifurcated"
                                                                                      : "Replicated");
                         });

}  // namespace
}  // namespace bifurcate
