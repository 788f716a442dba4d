#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "sampling/penalties.h"
#include "sampling/sampler.h"
#include "sampling/sampling_params.h"
#include "util/error.h"

namespace bifurcate::sampling {
namespace {

std::vector<float> random_logits(std::size_t n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(n);
  for (float& v : logits) v = normal(rng);
  return logits;
}

// ---- independent references, in double ----

std::vector<double> reference_log_softmax(const std::vector<float>& logits) {
  double max = -std::numeric_limits<double>::infinity();
  for (float v : logits) max = std::max(max, static_cast<double>(v));
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  std::vector<double> out;
  for (float v : logits) out.push_back(static_cast<double>(v) - max - std::log(sum));
  return out;
}

// Probability of every token after top-k → temperature → softmax → min-p →
// top-p (no penalties), written straight from the definitions: sort
// everything, then cut.
std::vector<double> reference_distribution(const std::vector<float>& logits, const SamplingParams& p) {
  const std::size_t vocab = logits.size();
  std::vector<std::size_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
  if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < vocab) order.resize(p.top_k);
  std::vector<double> prob(vocab, 0.0);
  double total = 0.0;
  for (std::size_t t : order) {
    prob[t] = std::exp((static_cast<double>(logits[t]) - logits[order[0]]) / p.temperature);
    total += prob[t];
  }
  const double p_max = prob[order[0]];
  std::vector<std::size_t> kept;
  for (std::size_t t : order) {
    if (prob[t] / total >= p.min_p * p_max / total) {
      kept.push_back(t);
    } else {
      prob[t] = 0.0;
    }
  }
  double kept_total = 0.0;
  for (std::size_t t : kept) kept_total += prob[t];
  double mass = 0.0;
  std::size_t prefix = 0;
  while (prefix < kept.size() && (prefix == 0 || mass < p.top_p * kept_total)) mass += prob[kept[prefix++]];
  for (std::size_t i = prefix; i < kept.size(); ++i) prob[kept[i]] = 0.0;
  for (double& v : prob) v /= mass;
  return prob;
}

std::vector<double> reference_penalized(const std::vector<float>& logits, const std::vector<int32_t>& history,
                                        const SamplingParams& p) {
  std::vector<double> out(logits.begin(), logits.end());
  std::size_t first = 0;
  if (p.repeat_last_n >= 0) {
    first = history.size() > static_cast<std::size_t>(p.repeat_last_n) ? history.size() - p.repeat_last_n
                                                                          : 0;
  }
  std::map<int32_t, int> count;
  for (std::size_t i = first; i < history.size(); ++i) ++count[history[i]];
  for (const auto& [token, n] : count) {
    double v = out[token];
    v = v > 0 ? v / p.repetition_penalty : v * p.repetition_penalty;
    out[token] = v - p.presence_penalty - p.frequency_penalty * n;
  }
  return out;
}

// ---- validation and input errors ----

void expect_invalid(const SamplingParams& p, const std::string& needle) {
  try {
    validate(p);
    ADD_FAILURE() << "expected Error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_THROW(Sampler(p, 0), Error);
}

TEST(SamplingParams, InvalidFieldsAreNamedWithTheirValues) {
  SamplingParams p;
  EXPECT_NO_THROW(validate(p));
  p = {}, p.temperature = -0.5f, expect_invalid(p, "temperature must be finite and >= 0, got -0.5");
  p = {}, p.temperature = std::nanf(""), expect_invalid(p, "temperature");
  p = {}, p.top_k = -1, expect_invalid(p, "top_k must be >= 0 (0 = off), got -1");
  p = {}, p.top_p = 0.0f, expect_invalid(p, "top_p must be in (0, 1] (1 = off), got 0");
  p = {}, p.top_p = 1.5f, expect_invalid(p, "top_p must be in (0, 1] (1 = off), got 1.5");
  p = {}, p.min_p = -0.1f, expect_invalid(p, "min_p must be in [0, 1] (0 = off), got -0.1");
  p = {}, p.min_p = 2.0f, expect_invalid(p, "min_p");
  p = {}, p.repetition_penalty = 0.0f, expect_invalid(p, "repetition_penalty must be finite and > 0");
  p = {}, p.presence_penalty = INFINITY, expect_invalid(p, "presence_penalty must be finite, got inf");
  p = {}, p.frequency_penalty = std::nanf(""), expect_invalid(p, "frequency_penalty");
  p = {}, p.repeat_last_n = -2, expect_invalid(p, "repeat_last_n must be >= -1 (-1 = whole history), got -2");
  p = {}, p.top_logprobs = -3, expect_invalid(p, "top_logprobs must be >= 0, got -3");
}

TEST(Sampler, RejectsLogitsWithoutADistribution) {
  Sampler sampler({}, 0);
  EXPECT_THROW(sampler.sample({}, {}), Error);
  std::vector<float> logits = {0.0f, 1.0f, std::nanf(""), 2.0f};
  try {
    sampler.sample(logits, {});
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logit 2 of 4 is nan"), std::string::npos) << e.what();
  }
  logits = {0.0f, INFINITY};
  EXPECT_THROW(sampler.sample(logits, {}), Error);
  logits = {-INFINITY, -INFINITY};
  EXPECT_THROW(sampler.sample(logits, {}), Error);
  logits = {0.0f, 1.0f};
  const std::vector<int32_t> history = {1, 2};
  SamplingParams penalized;
  penalized.repetition_penalty = 1.1f;
  Sampler penalizing_sampler(penalized, 0);
  try {
    penalizing_sampler.sample(logits, history);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("history token 2 is outside the vocabulary of 2"), std::string::npos)
        << e.what();
  }
}

// ---- greedy ----

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = 3;  // ignored by greedy
  Sampler sampler(p, 7);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = random_logits(1001 + seed, seed);
    std::size_t expected = 0;
    for (std::size_t i = 1; i < logits.size(); ++i) {
      if (logits[i] > logits[expected]) expected = i;
    }
    EXPECT_EQ(sampler.sample(logits, {}).token, static_cast<int32_t>(expected));
  }
  std::vector<float> tied = {1.0f, 5.0f, -2.0f, 5.0f, 5.0f};
  EXPECT_EQ(sampler.sample(tied, {}).token, 1);
}

TEST(Sampler, GreedyFollowsPenalizedLogits) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;
  p.frequency_penalty = 0.25f;
  p.repeat_last_n = -1;
  Sampler sampler(p, 0);
  const std::vector<float> logits = {2.0f, 2.5f, 1.0f, -1.0f};
  // Token 1 repeated twice: 2.5 / 1.5 - 0.5 = 1.1667 < 2.0, so token 0 wins.
  const std::vector<int32_t> history = {1, 3, 1};
  EXPECT_EQ(sampler.sample(logits, history).token, 0);
  EXPECT_EQ(sampler.sample(logits, {}).token, 1);
}

// logit_bias is added before everything else: the distribution is the
// reference one over the biased logits, +100 forces a token, -100 bans it.
TEST(Sampler, LogitBiasShiftsTheLogitsBeforeTruncation) {
  const std::vector<float> logits = random_logits(500, 7);
  const int32_t top = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const int32_t low = int32_t(std::min_element(logits.begin(), logits.end()) - logits.begin());
  SamplingParams p;
  p.temperature = 0.0f;
  p.logit_bias = {{low, 100.0f}};
  EXPECT_EQ(Sampler(p, 0).sample(logits, {}).token, low);
  p.logit_bias = {{top, -100.0f}};
  std::vector<float> without_top = logits;
  without_top[std::size_t(top)] = -1e30f;
  const int32_t second = int32_t(std::max_element(without_top.begin(), without_top.end()) - without_top.begin());
  EXPECT_EQ(Sampler(p, 0).sample(logits, {}).token, second);

  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.logit_bias = {{low, 9.5f}, {top, -100.0f}, {3, 1.25f}};
  std::vector<float> biased = logits;
  for (const auto& [token, bias] : p.logit_bias) biased[std::size_t(token)] += bias;
  const std::vector<double> want = reference_distribution(biased, p);
  Sampler sampler(p, 0);
  const std::vector<std::pair<int32_t, double>> got = sampler.distribution(logits, {});
  double total = 0;
  for (const auto& [token, prob] : got) {
    EXPECT_NEAR(prob, want[std::size_t(token)], 1e-6) << "token " << token;
    total += want[std::size_t(token)];
  }
  EXPECT_NEAR(total, 1.0, 1e-6);  // the kept set is the reference's
  for (int i = 0; i < 200; ++i) {
    const TokenChoice c = sampler.sample(logits, {});
    ASSERT_NE(c.token, top);
    EXPECT_NEAR(c.logprob, reference_log_softmax(logits)[std::size_t(c.token)], 1e-5);  // raw, unbiased
  }

  p.logit_bias = {{500, 1.0f}};  // outside the vocabulary
  EXPECT_THROW(Sampler(p, 0).sample(logits, {}), Error);
  p.logit_bias = {{1, std::numeric_limits<float>::quiet_NaN()}};
  expect_invalid(p, "logit_bias");
}

// ---- log-probs ----

TEST(Sampler, LogprobsAreThoseOfRawLogits) {
  SamplingParams p;
  p.temperature = 0.6f;
  p.top_k = 20;
  p.top_p = 0.9f;
  p.repetition_penalty = 1.3f;
  p.top_logprobs = 5;
  Sampler sampler(p, 3);
  const std::vector<int32_t> history = {4, 8, 15, 16, 23, 42};
  for (uint32_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = random_logits(3001, 100 + seed);
    const std::vector<double> ref = reference_log_softmax(logits);
    const TokenChoice choice = sampler.sample(logits, history);
    EXPECT_NEAR(choice.logprob, ref[choice.token], 1e-5);

    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
    ASSERT_EQ(choice.top.size(), 5u);
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(choice.top[i].first, order[i]);
      EXPECT_NEAR(choice.top[i].second, ref[order[i]], 1e-5);
    }
  }
}

TEST(Sampler, TopLogprobsLargerThanVocabReturnsWholeVocab) {
  SamplingParams p;
  p.top_logprobs = 10;
  Sampler sampler(p, 0);
  const std::vector<float> logits = {0.5f, -1.0f, 3.0f};
  const TokenChoice choice = sampler.sample(logits, {});
  const std::vector<double> ref = reference_log_softmax(logits);
  ASSERT_EQ(choice.top.size(), 3u);
  EXPECT_EQ(choice.top[0].first, 2);
  EXPECT_EQ(choice.top[1].first, 0);
  EXPECT_EQ(choice.top[2].first, 1);
  EXPECT_NEAR(choice.top[2].second, ref[1], 1e-6);
}

// ---- penalties ----

TEST(Penalties, ChangeLogitsExactlyAsTheFormulas) {
  const std::vector<float> logits = random_logits(50, 9);
  std::mt19937 rng(5);
  std::vector<int32_t> history(200);
  for (int32_t& t : history) t = std::uniform_int_distribution<int32_t>(0, 49)(rng);
  std::vector<int32_t> scratch;
  for (int window : {-1, 0, 1, 7, 64, 500}) {
    SamplingParams p;
    p.repetition_penalty = 1.7f;
    p.presence_penalty = 0.4f;
    p.frequency_penalty = 0.15f;
    p.repeat_last_n = window;
    std::vector<float> got = logits;
    apply_penalties(p, history, got, scratch);
    const std::vector<double> want = reference_penalized(logits, history, p);
    int changed = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-5) << "window " << window << " token " << i;
      changed += got[i] != logits[i];
    }
    if (window == 0) {
      EXPECT_EQ(changed, 0);
    } else if (window >= 64 || window == -1) {
      EXPECT_GT(changed, 20);
    }
  }
}

// ---- randomness ----

std::vector<int32_t> draw_sequence(const SamplingParams& p, uint64_t stream, const std::vector<float>& logits,
                                   int n) {
  Sampler sampler(p, stream);
  std::vector<int32_t> tokens;
  for (int i = 0; i < n; ++i) tokens.push_back(sampler.sample(logits, {}).token);
  return tokens;
}

TEST(Sampler, SameSeedAndStreamRepeatDifferentOnesDiffer) {
  const std::vector<float> logits(1000, 0.0f);  // uniform: 1000 choices per draw
  SamplingParams p;
  p.seed = 42;
  const auto a = draw_sequence(p, 1, logits, 100);
  EXPECT_EQ(a, draw_sequence(p, 1, logits, 100));
  const auto b = draw_sequence(p, 2, logits, 100);
  p.seed = 43;
  const auto c = draw_sequence(p, 1, logits, 100);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 100; ++i) same_ab += a[i] == b[i], same_ac += a[i] == c[i];
  EXPECT_LT(same_ab, 5);  // ~0.1 expected by chance
  EXPECT_LT(same_ac, 5);
}

TEST(Sampler, DrawDependsOnlyOnSeedStreamAndCallIndex) {
  // Two samplers of the same stream see different first logits; their second
  // draws, on the same logits, must agree because they use the same uniform.
  SamplingParams p;
  p.seed = 9;
  const std::vector<float> second = random_logits(500, 77, 1.0f);
  Sampler a(p, 5), b(p, 5);
  a.sample(random_logits(10, 1), {});
  b.sample(random_logits(900, 2), {});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.sample(second, {}).token, b.sample(second, {}).token);
  EXPECT_EQ(a.draws(), 21u);
}

// ---- distributions ----

double chi_square(const std::vector<int>& counts, const std::vector<double>& expected_prob, int n_draws,
                  int* degrees_of_freedom) {
  double chi2 = 0.0;
  *degrees_of_freedom = -1;
  for (std::size_t t = 0; t < counts.size(); ++t) {
    if (expected_prob[t] == 0.0) {
      EXPECT_EQ(counts[t], 0) << "token " << t << " was cut but drawn";
      continue;
    }
    const double e = expected_prob[t] * n_draws;
    chi2 += (counts[t] - e) * (counts[t] - e) / e;
    ++*degrees_of_freedom;
  }
  return chi2;
}

struct DistributionCase {
  const char* name;
  float temperature;
  int top_k;
  float top_p;
  float min_p;
};

TEST(Sampler, EmpiricalDistributionMatchesTruncatedSoftmax) {
  const std::vector<float> logits = {1.0f, 2.2f, 0.3f, 1.7f, -0.4f};
  const DistributionCase cases[] = {
      {"plain", 1.0f, 0, 1.0f, 0.0f},           {"hot", 1.8f, 0, 1.0f, 0.0f},
      {"top_k=3 T=0.7", 0.7f, 3, 1.0f, 0.0f},   {"top_p=0.8 T=1.3", 1.3f, 0, 0.8f, 0.0f},
      {"min_p=0.2", 1.0f, 0, 1.0f, 0.2f},       {"all", 0.8f, 4, 0.9f, 0.1f},
  };
  constexpr int kDraws = 200000;
  for (const DistributionCase& c : cases) {
    SCOPED_TRACE(c.name);
    SamplingParams p;
    p.temperature = c.temperature, p.top_k = c.top_k, p.top_p = c.top_p, p.min_p = c.min_p, p.seed = 2024;
    const std::vector<double> expected = reference_distribution(logits, p);
    Sampler sampler(p, 11);
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < kDraws; ++i) ++counts[sampler.sample(logits, {}).token];
    int dof = 0;
    const double chi2 = chi_square(counts, expected, kDraws, &dof);
    // P(chi2 > 30) < 1e-5 for dof <= 4; a wrong distribution gives thousands here.
    EXPECT_LT(chi2, 30.0) << "dof " << dof;
    // The check has power: the untruncated, untempered softmax must fail it
    // for every case except the plain one.
    if (std::string(c.name) != "plain") {
      SamplingParams plain;
      int plain_dof = 0;
      EXPECT_GT(chi_square(counts, reference_distribution(logits, plain), kDraws, &plain_dof), 1000.0);
    }
  }
}

// Checks distribution() against the reference for many top-p / min-p / top-k
// settings on a large vocabulary, which exercises both the sorted (top-k) and
// the chunked partial-sort paths of top-p.
TEST(Sampler, TruncationKeepsExactlyTheReferenceSet) {
  const std::vector<float> logits = random_logits(5000, 31, 2.0f);
  int compared = 0;
  for (int top_k : {0, 40, 4999}) {
    for (float min_p : {0.0f, 0.01f, 0.3f}) {
      for (float top_p : {0.05f, 0.3f, 0.5f, 0.9f, 0.99f, 0.999f, 1.0f}) {
        for (float temperature : {0.5f, 1.0f, 2.0f}) {
          SamplingParams p;
          p.temperature = temperature, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p;
          SCOPED_TRACE(testing::Message() << "top_k " << top_k << " min_p " << min_p << " top_p " << top_p
                                          << " T " << temperature);
          const std::vector<double> want = reference_distribution(logits, p);
          Sampler sampler(p, 0);
          const auto got = sampler.distribution(logits, {});
          std::size_t want_kept = 0;
          for (double v : want) want_kept += v > 0.0;
          ASSERT_EQ(got.size(), want_kept);
          double sum = 0.0;
          for (const auto& [token, prob] : got) {
            EXPECT_GT(want[token], 0.0) << "token " << token << " kept but should be cut";
            EXPECT_NEAR(prob, want[token], 1e-6 + 1e-5 * want[token]);
            sum += prob;
          }
          EXPECT_NEAR(sum, 1.0, 1e-9);
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 189);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (logits = log p, T = 1).
  const std::vector<float> logits = {std::log(0.2f), std::log(0.4f), std::log(0.1f), std::log(0.3f)};
  auto kept_tokens = [&](float top_p) {
    SamplingParams p;
    p.top_p = top_p;
    Sampler sampler(p, 0);
    std::vector<int32_t> tokens;
    for (const auto& [token, prob] : sampler.distribution(logits, {})) tokens.push_back(token);
    return tokens;
  };
  EXPECT_EQ(kept_tokens(0.1f), (std::vector<int32_t>{1}));
  EXPECT_EQ(kept_tokens(0.41f), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(kept_tokens(0.69f), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(kept_tokens(0.71f), (std::vector<int32_t>{1, 3, 0}));
  EXPECT_EQ(kept_tokens(0.95f), (std::vector<int32_t>{1, 3, 0, 2}));
}

}  // namespace
}  // namespace bifurcate::sampling
