// What a request's fields mean, through the public Engine API on the real
// stories260K model: generation stops at the context limit; repetition,
// presence and frequency penalties count the prompt's tokens as well as the
// generated ones; Ranking::sum_logprob keeps the highest totals. Expected
// values come from the test's own arithmetic over Engine::evaluate logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "bifurcate/engine.h"

namespace bifurcate {
namespace {

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

class RequestSemantics : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  }
  static Engine make(AttentionMode mode = AttentionMode::bifurcated, KvPrecision kv = KvPrecision::f16) {
    EngineOptions o;
    o.model_path = kModel;
    o.threads = 2;
    o.attention = mode;
    o.kv_precision = kv;
    o.kv_budget_bytes = std::size_t(64) << 20;
    return Engine(o);
  }
};

TEST_F(RequestSemantics, GenerationStopsAtTheContextLimit) {
  for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
    Engine engine = make(mode);
    const int context = engine.model_info().context_length;
    ASSERT_EQ(context, 512);
    std::vector<int32_t> text;
    while (int(text.size()) < context) {
      const std::vector<int32_t> more =
          engine.tokenize(" Once upon a time, there was a big red ball.", false);
      text.insert(text.end(), more.begin(), more.end());
    }
    for (int prompt_length : {500, 511}) {
      GenerationRequest r;
      r.prompt_tokens.assign(text.begin(), text.begin() + prompt_length);
      r.n = 3;
      r.max_tokens = 100;
      r.ignore_eos = true;
      r.sampling.temperature = 0.8f;
      r.sampling.seed = 4;
      const GenerationResult result = engine.generate(r);
      EXPECT_EQ(result.stats.prompt_tokens, prompt_length);
      ASSERT_EQ(result.samples.size(), 3u);
      for (const Sample& s : result.samples) {
        EXPECT_EQ(int(s.tokens.size()), context - prompt_length) << "prompt " << prompt_length;
        EXPECT_EQ(s.finish_reason, FinishReason::length);
      }
    }
  }
}

// The sampler's documented penalties (sampling/penalties.h), written out
// again: over the last `last_n` tokens of `history` (all if -1), each
// distinct token t seen c times gets logit = logit > 0 ? logit / rep : logit *
// rep, then logit -= presence + frequency * c.
std::vector<double> penalized(const std::vector<float>& logits, const std::vector<int32_t>& history,
                              const SamplingOptions& o) {
  std::vector<double> out(logits.begin(), logits.end());
  const size_t from = o.repeat_last_n < 0 || size_t(o.repeat_last_n) >= history.size()
                          ? 0
                          : history.size() - size_t(o.repeat_last_n);
  std::map<int32_t, int> counts;
  for (size_t i = from; i < history.size(); ++i) ++counts[history[i]];
  for (const auto& [t, c] : counts) {
    double& x = out[size_t(t)];
    x = x > 0 ? x / o.repetition_penalty : x * o.repetition_penalty;
    x -= o.presence_penalty + o.frequency_penalty * c;
  }
  return out;
}

// Greedy decoding with penalties equals, token by token, the argmax of the
// test's penalized logits (from Engine::evaluate of prompt + tokens so far)
// with the penalty window over prompt AND generated tokens; a window over the
// generated tokens alone would have chosen differently.
TEST_F(RequestSemantics, PenaltiesCountPromptAndGeneratedTokens) {
  Engine engine = make(AttentionMode::bifurcated, KvPrecision::f32);
  GenerationRequest r;
  r.prompt =
      "Once upon a time, there was a little girl named Lily. Lily loved to play in the park with her ball";
  r.max_tokens = 24;
  r.ignore_eos = true;
  r.sampling.temperature = 0;
  const std::vector<int32_t> prompt = engine.tokenize(r.prompt, true);
  const std::vector<int32_t> unpenalized = engine.generate(r).samples.at(0).tokens;

  struct Penalties {
    float repetition, presence, frequency;
    int last_n;
  };
  for (const Penalties& p : {Penalties{1.5f, 0, 0, -1}, Penalties{1.1f, 0.5f, 0.4f, 30}}) {
    SCOPED_TRACE(testing::Message() << "repetition " << p.repetition << " presence " << p.presence
                                    << " frequency " << p.frequency << " last_n " << p.last_n);
    r.sampling.repetition_penalty = p.repetition;
    r.sampling.presence_penalty = p.presence;
    r.sampling.frequency_penalty = p.frequency;
    r.sampling.repeat_last_n = p.last_n;
    const std::vector<int32_t> got = engine.generate(r).samples.at(0).tokens;
    ASSERT_EQ(got.size(), 24u);
    EXPECT_NE(got, unpenalized) << "the penalties changed nothing: the test would not see them";

    std::vector<int32_t> history = prompt;
    int decided = 0, generated_only_differs = 0;
    for (size_t t = 0; t < got.size(); ++t) {
      const std::vector<float> logits = engine.evaluate(history, false);
      const std::vector<double> with_prompt = penalized(logits, history, r.sampling);
      std::vector<double> ranked = with_prompt;
      std::nth_element(ranked.begin(), ranked.begin() + 1, ranked.end(), std::greater<>());
      const int32_t expected =
          int32_t(std::max_element(with_prompt.begin(), with_prompt.end()) - with_prompt.begin());
      // A near tie could go either way between prefill and decode rounding: decide only clear cases.
      if (ranked[0] - ranked[1] > 1e-3 * std::max(1.0, std::abs(ranked[0]))) {
        EXPECT_EQ(got[t], expected) << "token " << t;
        ++decided;
      }
      const std::vector<int32_t> generated(history.begin() + std::ptrdiff_t(prompt.size()), history.end());
      SamplingOptions o = r.sampling;
      if (o.repeat_last_n >= 0) o.repeat_last_n = std::min<int>(o.repeat_last_n, int(generated.size()));
      const std::vector<double> without_prompt = penalized(logits, generated, o);
      generated_only_differs +=
          std::max_element(without_prompt.begin(), without_prompt.end()) - without_prompt.begin() != expected;
      history.push_back(got[t]);
    }
    EXPECT_GE(decided, 20);
    EXPECT_GE(generated_only_differs, 1)
        << "the prompt's tokens made no difference: the test would not see them";
  }
}

// best_of 8, n 3, ranked by sum_logprob: the 3 drawn samples with the
// highest total log-probability, highest first. Stop strings make the
// lengths differ, so the totals rank differently from the means.
TEST_F(RequestSemantics, SumLogprobRankingKeepsTheHighestTotals) {
  Engine engine = make();
  GenerationRequest all;
  all.prompt = "Once upon a time";
  all.n = 8;
  all.max_tokens = 40;
  all.stop = {".", "!"};
  all.ranking = Ranking::none;
  all.sampling.temperature = 1.0f;
  std::vector<Sample> drawn;
  for (uint64_t seed = 1; seed <= 20 && drawn.empty(); ++seed) {
    all.sampling.seed = seed;
    drawn = engine.generate(all).samples;
    auto top3 = [&](auto key) {
      std::vector<int> order(drawn.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return key(drawn[size_t(a)]) > key(drawn[size_t(b)]); });
      return std::set<int>(order.begin(), order.begin() + 3);
    };
    if (top3([](const Sample& s) { return s.sum_logprob; }) ==
        top3([](const Sample& s) { return s.mean_logprob; })) {
      drawn.clear();  // this seed cannot tell the two rankings apart
    }
  }
  ASSERT_FALSE(drawn.empty()) << "no seed in 1..20 ranks the totals differently from the means";
  for (const Sample& s : drawn) {
    EXPECT_NEAR(s.sum_logprob, std::accumulate(s.logprobs.begin(), s.logprobs.end(), 0.0), 1e-4);
  }
  std::vector<Sample> expected = drawn;
  std::stable_sort(expected.begin(), expected.end(),
                   [](const Sample& a, const Sample& b) { return a.sum_logprob > b.sum_logprob; });

  GenerationRequest best = all;
  best.n = 3;
  best.best_of = 8;
  best.ranking = Ranking::sum_logprob;
  const GenerationResult kept = engine.generate(best);
  ASSERT_EQ(kept.samples.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(kept.samples[i].index, expected[i].index) << "rank " << i;
    EXPECT_EQ(kept.samples[i].tokens, expected[i].tokens) << "rank " << i;
    EXPECT_DOUBLE_EQ(kept.samples[i].sum_logprob, expected[i].sum_logprob) << "rank " << i;
  }
}

}  // namespace
}  // namespace bifurcate
