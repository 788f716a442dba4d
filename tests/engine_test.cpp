// The engine's request semantics on the real stories260K model: greedy
// samples agree with n=1, seeded sampling is reproducible and independent of
// the attention mode and thread count, stop strings, best_of + ranking, and
// clear errors for bad requests.
#include "bifurcate/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "util/error.h"

namespace bifurcate {
namespace {

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  }
  static Engine make(AttentionMode mode = AttentionMode::bifurcated, int threads = 2,
                     KvPrecision kv = KvPrecision::f32, std::size_t budget = std::size_t(64) << 20) {
    EngineOptions o;
    o.model_path = kModel;
    o.attention = mode;
    o.threads = threads;
    o.kv_precision = kv;
    o.kv_budget_bytes = budget;
    return Engine(o);
  }
  static GenerationRequest sampled(int n, uint64_t seed) {
    GenerationRequest r;
    r.prompt = "Once upon a time";
    r.n = n;
    r.max_tokens = 48;
    r.ranking = Ranking::none;
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = seed;
    return r;
  }
};

TEST_F(EngineTest, GreedySamplesAllEqualTheSingleSample) {
  Engine engine = make();
  GenerationRequest r = sampled(1, 0);
  r.sampling.temperature = 0;
  const Sample one = engine.generate(r).samples.at(0);
  r.n = 9;
  const GenerationResult many = engine.generate(r);
  ASSERT_EQ(many.samples.size(), 9u);
  for (const Sample& s : many.samples) {
    EXPECT_EQ(s.tokens, one.tokens);
    EXPECT_EQ(s.text, one.text);
  }
}

TEST_F(EngineTest, ContinuationKeepsTheSpaceOfItsFirstToken) {
  Engine engine = make();
  GenerationRequest r = sampled(1, 0);
  r.prompt = "Once upon a";
  r.sampling.temperature = 0;
  r.max_tokens = 3;
  const Sample s = engine.generate(r).samples.at(0);
  EXPECT_EQ(engine.token_to_piece(s.tokens.at(0)), " time");
  EXPECT_EQ(s.text.substr(0, 5), " time") << s.text;
}

TEST_F(EngineTest, SeededSamplingIsReproducibleAcrossModesAndThreads) {
  const GenerationRequest r = sampled(6, 1234);
  Engine bifurcated = make(AttentionMode::bifurcated, 2);
  Engine replicated = make(AttentionMode::replicated, 1);
  const GenerationResult a = bifurcated.generate(r);
  const GenerationResult b = bifurcated.generate(r);
  const GenerationResult c = replicated.generate(r);
  std::set<std::vector<int32_t>> distinct;
  for (size_t i = 0; i < a.samples.size(); ++i) {
    EXPECT_EQ(a.samples[i].tokens, b.samples[i].tokens) << "sample " << i;
    EXPECT_EQ(a.samples[i].tokens, c.samples[i].tokens) << "sample " << i;
    EXPECT_NEAR(a.samples[i].sum_logprob, c.samples[i].sum_logprob, 1e-3);
    distinct.insert(a.samples[i].tokens);
  }
  EXPECT_GT(distinct.size(), 1u) << "different streams should give different samples";
  GenerationRequest other = r;
  other.sampling.seed = 99;
  EXPECT_NE(bifurcated.generate(other).samples[0].tokens, a.samples[0].tokens);
}

TEST_F(EngineTest, LogprobsAreConsistentWithScores) {
  Engine engine = make();
  GenerationRequest r = sampled(3, 7);
  r.sampling.top_logprobs = 3;
  for (const Sample& s : engine.generate(r).samples) {
    ASSERT_EQ(s.logprobs.size(), s.tokens.size());
    ASSERT_EQ(s.top_logprobs.size(), s.tokens.size());
    double sum = 0;
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      EXPECT_LE(s.logprobs[t], 0.0f);
      sum += s.logprobs[t];
      ASSERT_EQ(s.top_logprobs[t].size(), 3u);
      EXPECT_LE(s.logprobs[t], s.top_logprobs[t][0].second + 1e-6f);  // the best alternative is at least as likely
    }
    EXPECT_NEAR(s.sum_logprob, sum, 1e-3);
    EXPECT_NEAR(s.mean_logprob, sum / double(s.tokens.size()), 1e-5);
  }
}

TEST_F(EngineTest, BestOfReturnsTheHighestMeanLogprobSamples) {
  Engine engine = make();
  GenerationRequest all = sampled(8, 5);
  const GenerationResult drawn = engine.generate(all);
  std::vector<double> means;
  for (const Sample& s : drawn.samples) means.push_back(s.mean_logprob);
  std::sort(means.rbegin(), means.rend());

  GenerationRequest best = sampled(3, 5);
  best.best_of = 8;
  const GenerationResult kept = engine.generate(best);
  ASSERT_EQ(kept.samples.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(kept.samples[i].mean_logprob, means[i]);
}

TEST_F(EngineTest, StopStringEndsTheSampleAndIsNotIncluded) {
  Engine engine = make();
  GenerationRequest r = sampled(1, 0);
  r.sampling.temperature = 0;
  r.max_tokens = 100;
  const std::string full = engine.generate(r).samples[0].text;
  // A stop string that straddles token boundaries: the tail of one word and the start of the next.
  const size_t at = full.find("girl named");
  ASSERT_NE(at, std::string::npos) << full;
  r.stop = {"rl nam", "never appears"};
  const Sample s = engine.generate(r).samples[0];
  EXPECT_EQ(s.finish_reason, FinishReason::stop);
  EXPECT_EQ(s.text, full.substr(0, at + 2));
}

// A request admitted by the up-front check never runs out of KV blocks later:
// with a budget of exactly the blocks it needs, it completes.
TEST_F(EngineTest, RequestFittingTheBudgetExactlyCompletes) {
  // stories260K: 5 layers x 4 KV heads x (K + V) x 32 tokens x 8 dims x 4 bytes (f32).
  const std::size_t block = 5 * 4 * 2 * 32 * 8 * 4;
  GenerationRequest r = sampled(4, 8);
  r.max_tokens = 40;  // 40 own tokens per sample: 2 blocks each
  r.ignore_eos = true;
  for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
    // Bifurcated: prompt (1 block) + 4 x 2. Replicated: prompt + 4 copies of 45 tokens (2 blocks each).
    Engine engine = make(mode, 2, KvPrecision::f32, 9 * block);
    const GenerationResult result = engine.generate(r);
    for (const Sample& s : result.samples) EXPECT_EQ(s.tokens.size(), 40u);
    Engine smaller = make(mode, 2, KvPrecision::f32, 8 * block);
    EXPECT_THROW(smaller.generate(r), Error);
  }
}

TEST_F(EngineTest, BadRequestsGiveClearErrors) {
  Engine engine = make(AttentionMode::bifurcated, 2, KvPrecision::f32, std::size_t(4) << 20);
  auto message = [&](const GenerationRequest& r) -> std::string {
    try {
      engine.generate(r);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  GenerationRequest r = sampled(1, 0);
  r.prompt = "";
  EXPECT_NE(message(r).find("prompt is empty"), std::string::npos);
  r.prompt = "bad \xff\xfe utf-8";
  EXPECT_NE(message(r).find("UTF-8"), std::string::npos) << message(r);
  r = sampled(0, 0);
  EXPECT_NE(message(r).find("n must be >= 1"), std::string::npos);
  r = sampled(4, 0);
  r.best_of = 2;
  EXPECT_NE(message(r).find("best_of"), std::string::npos);
  r = sampled(1, 0);
  r.prompt.clear();
  for (int i = 0; i < 600; ++i) r.prompt += " Once upon a time";
  EXPECT_NE(message(r).find("context length is 512"), std::string::npos) << message(r);
  r = sampled(1000, 0);
  r.max_tokens = 400;
  const std::string budget = message(r);
  EXPECT_NE(budget.find("KV cache"), std::string::npos) << budget;
  EXPECT_NE(budget.find("budget"), std::string::npos) << budget;
  r = sampled(1, 0);
  r.sampling.temperature = -1;
  EXPECT_NE(message(r).find("temperature"), std::string::npos);
  // The engine survives every refusal and still works.
  EXPECT_EQ(engine.generate(sampled(2, 0)).samples.size(), 2u);
}

TEST_F(EngineTest, MissingModelFileIsAClearError) {
  EngineOptions o;
  o.model_path = "/nonexistent/model.gguf";
  try {
    Engine engine(o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bifurcate
