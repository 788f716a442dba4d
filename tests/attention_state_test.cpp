// merge_attention_states against a float64 softmax over the union of key sets.
#include "kernels/attention_state.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "numeric_test_support.h"
#include "util/error.h"

namespace bifurcate::kernels {
namespace {

// Scores s_j and values v_j (head_size each) of one key set, seen by one query row.
struct KeySet {
  std::vector<double> scores;
  std::vector<std::vector<double>> values;
};

KeySet random_keys(std::mt19937& rng, int n, int head_size, double score_spread, double score_offset) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  KeySet set;
  for (int j = 0; j < n; ++j) {
    set.scores.push_back(score_offset + score_spread * u(rng));
    std::vector<double> v(static_cast<std::size_t>(head_size));
    for (double& x : v) x = u(rng);
    set.values.push_back(v);
  }
  return set;
}

// The float64 state {o, lse} of one row over the concatenation of `sets`.
void reference_state(const std::vector<const KeySet*>& sets, int head_size, std::vector<double>& o,
                     double& lse) {
  double m = -std::numeric_limits<double>::infinity();
  for (const KeySet* s : sets)
    for (double x : s->scores) m = std::max(m, x);
  o.assign(std::size_t(head_size), 0.0);
  double sum = 0.0;
  for (const KeySet* s : sets) {
    for (std::size_t j = 0; j < s->scores.size(); ++j) {
      double p = std::exp(s->scores[j] - m);
      sum += p;
      for (int d = 0; d < head_size; ++d) o[std::size_t(d)] += p * s->values[j][std::size_t(d)];
    }
  }
  for (double& x : o) x /= sum;
  lse = m + std::log(sum);
}

// Rounds the float64 state of one set to the float state a kernel would return.
AttentionState float_state(const KeySet& set, int head_size) {
  std::vector<double> o;
  double lse;
  reference_state({&set}, head_size, o, lse);
  AttentionState st = AttentionState::empty(head_size);
  for (int d = 0; d < head_size; ++d) st.o[std::size_t(d)] = float(o[std::size_t(d)]);
  st.lse = float(lse);
  return st;
}

// The merged output's error relative to the size of what was merged: max |out - ref| over
// the largest |o| among the inputs and the reference. A merge rounds in proportion to its
// inputs, and their weighted average can cancel to far less (one head dimension, values
// in [-1, 1]): relative to the result alone the same rounding read up to 3e-5 for 1 seed
// in 40. A wrong weight or a dropped state is still off by the inputs' own size.
double merge_error(const std::vector<float>& out, const std::vector<double>& ref,
                   const std::vector<const std::vector<float>*>& inputs) {
  double scale = 0.0, worst = 0.0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  for (const std::vector<float>* o : inputs)
    for (float x : *o)
      if (std::isfinite(x)) scale = std::max(scale, double(std::abs(x)));
  for (std::size_t d = 0; d < ref.size(); ++d) {
    if (d >= out.size() || !std::isfinite(out[d])) return std::numeric_limits<double>::quiet_NaN();
    worst = std::max(worst, std::abs(double(out[d]) - ref[d]));
  }
  return worst / scale;
}

TEST(AttentionState, TwoWayMergeEqualsSoftmaxOverUnion) {
  for (int head_size : {1, 8, 13, 128}) {
    unsigned seed = fresh_seed();
    SCOPED_TRACE(testing::Message() << "seed=" << seed << " head_size=" << head_size);
    std::mt19937 rng(seed);
    KeySet a = random_keys(rng, 17, head_size, 3.0, 0.0);
    KeySet b = random_keys(rng, 5, head_size, 3.0, 2.5);  // b's scores dominate
    const AttentionState state_a = float_state(a, head_size), state_b = float_state(b, head_size);
    AttentionState merged = state_a;
    merged.merge(state_b);
    std::vector<double> o;
    double lse;
    reference_state({&a, &b}, head_size, o, lse);
    EXPECT_LE(merge_error(merged.o, o, {&state_a.o, &state_b.o}), 1e-6);
    EXPECT_NEAR(merged.lse, lse, 1e-5 * std::max(1.0, std::abs(lse)));
  }
}

TEST(AttentionState, NWayMergeEqualsSoftmaxOverUnionAndSkipsEmptyStates) {
  const int head_size = 13;
  unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  std::vector<KeySet> sets;
  for (int i = 0; i < 5; ++i) sets.push_back(random_keys(rng, 1 + 7 * i, head_size, 4.0, i - 2.0));
  std::vector<AttentionState> states;
  for (const KeySet& s : sets) states.push_back(float_state(s, head_size));
  // An empty state whose o is garbage must contribute nothing.
  AttentionState empty = AttentionState::empty(head_size);
  empty.o.assign(std::size_t(head_size), std::numeric_limits<float>::quiet_NaN());
  states.insert(states.begin() + 2, empty);

  std::vector<const float*> o_rows;
  std::vector<float> lses;
  for (const AttentionState& s : states) {
    o_rows.push_back(s.o.data());
    lses.push_back(s.lse);
  }
  std::vector<float> out(std::size_t(head_size), std::numeric_limits<float>::quiet_NaN());
  float lse_out = std::numeric_limits<float>::quiet_NaN();
  merge_attention_states(o_rows, lses, head_size, out.data(), &lse_out);

  std::vector<const KeySet*> all;
  for (const KeySet& s : sets) all.push_back(&s);
  std::vector<double> o;
  double lse;
  reference_state(all, head_size, o, lse);
  std::vector<const std::vector<float>*> inputs;
  for (const AttentionState& s : states) inputs.push_back(&s.o);  // the empty state's NaNs are skipped
  EXPECT_LE(merge_error(out, o, inputs), 1e-6);
  EXPECT_NEAR(lse_out, lse, 1e-5 * std::max(1.0, std::abs(lse)));
}

TEST(AttentionState, EmptyIsTheIdentityAndNeverMakesNaN) {
  const int head_size = 8;
  std::mt19937 rng(fresh_seed());
  KeySet a = random_keys(rng, 9, head_size, 2.0, 0.0);
  const AttentionState full = float_state(a, head_size);

  AttentionState left = AttentionState::empty(head_size);  // empty <- full
  left.merge(full);
  EXPECT_EQ(left.o, full.o);
  EXPECT_EQ(left.lse, full.lse);

  AttentionState right = full;  // full <- empty
  right.merge(AttentionState::empty(head_size));
  EXPECT_EQ(right.o, full.o);
  EXPECT_EQ(right.lse, full.lse);

  AttentionState both = AttentionState::empty(head_size);  // empty <- empty
  both.merge(AttentionState::empty(head_size));
  EXPECT_TRUE(both.is_empty());
  for (float x : both.o) EXPECT_EQ(x, 0.0f);

  std::vector<const float*> o_rows = {both.o.data(), both.o.data()};
  std::vector<float> lses = {kEmptyLse, kEmptyLse};
  std::vector<float> out(std::size_t(head_size), 1.0f);
  float lse_out = 0.0f;
  merge_attention_states(o_rows, lses, head_size, out.data(), &lse_out);
  EXPECT_EQ(lse_out, kEmptyLse);
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

TEST(AttentionState, HugeLseDoesNotOverflow) {
  const int head_size = 8;
  unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  // exp(1e4) overflows float and double alike; the merge must work relative to the max.
  KeySet a = random_keys(rng, 6, head_size, 2.0, 1e4);
  KeySet b = random_keys(rng, 4, head_size, 2.0, 1e4 + 1.0);
  AttentionState merged = float_state(a, head_size);
  merged.merge(float_state(b, head_size));
  std::vector<double> o;
  double lse;
  reference_state({&a, &b}, head_size, o, lse);
  // A float lse near 1e4 is only resolved to ~1e-3 (its ulp), which bounds how well
  // the two weights exp(lse_i - lse) can be known; the merge itself adds nothing.
  const double lse_resolution = 2.0 * 1e4 * std::numeric_limits<float>::epsilon();
  EXPECT_LE(relative_error(merged.o, o), 2.0 * lse_resolution);
  EXPECT_NEAR(merged.lse, lse, lse_resolution);
}

TEST(AttentionState, MismatchedHeadSizesThrow) {
  AttentionState a = AttentionState::empty(8);
  EXPECT_THROW(a.merge(AttentionState::empty(9)), Error);
}

}  // namespace
}  // namespace bifurcate::kernels
