// attend at the edges: all-equal and huge scores against the float64
// reference (attention_test_support.h), bad plans rejected with an Error
// naming the problem and the output untouched, and no heap allocation in
// steady state.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "attention_test_support.h"
#include "kernels/attention.h"
#include "util/aligned_alloc.h"
#include "util/error.h"

#include "counting_new.h"  // g_allocations

namespace bifurcate::kernels {
namespace {

using namespace attention_test;

TEST(Attend, RowWithAllScoresEqualAveragesTheValues) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  const DecodeCase c{8, 2, 64, 3, 1000, 31, KvType::f16, Layout::blocks32};
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << c << " seed=" << seed);
  std::mt19937 rng(seed);
  DecodeData d = make_decode_data(c, rng);
  std::fill(d.q.begin(), d.q.begin() + c.h * c.k, 0.0f);  // sequence 0: every score is 0
  compute_reference(c, d);
  // The reference is then the plain mean of the values; check that independently too.
  double mean0 = 0.0;
  for (int t = 0; t < c.m_c; ++t) mean0 += d.shared.value(0, t)[0];
  for (int t = 0; t < c.m_d; ++t) mean0 += d.leaves[0].value(0, t)[0];
  EXPECT_NEAR(d.ref[0], mean0 / (c.m_c + c.m_d), 1e-12);
  std::vector<float> out = run_attend(bifurcated_plan(c, d, rng).plan, d.q, ws, pool);
  EXPECT_LE(relative_error(out, d.ref), kTolerance);
}

TEST(Attend, HugeScoresDoNotOverflow) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  for (KvType type : {KvType::f32, KvType::f16}) {
    const DecodeCase c{4, 4, 128, 3, 300, 7, type, Layout::blocks32};
    const unsigned seed = fresh_seed();
    SCOPED_TRACE(testing::Message() << c << " seed=" << seed);
    std::mt19937 rng(seed);
    DecodeData d = make_decode_data(c, rng, 30.0f, 30.0f);  // q.k ~ 1e4, scale 1
    d.shape.scale = 1.0f;
    // Integer q and K (exact in f16 too): every score is an integer below 2^24, exact in float
    // whatever the summation order, so the check measures the softmax, not an ill-conditioned
    // dot product (random reals at this size lose ~1e-4 of the score and failed ~1 run in 8).
    auto round_all = [](std::vector<float>& xs) {
      for (float& x : xs) x = std::nearbyint(x);
    };
    round_all(d.q);
    round_all(d.shared.k);
    for (KvData& leaf : d.leaves) round_all(leaf.k);
    compute_reference(c, d);
    std::vector<float> bifurcated = run_attend(bifurcated_plan(c, d, rng).plan, d.q, ws, pool);
    std::vector<float> replicated = run_attend(replicated_plan(c, d, rng).plan, d.q, ws, pool);
    EXPECT_LE(relative_error(bifurcated, d.ref), kTolerance);
    EXPECT_LE(relative_error(replicated, d.ref), kTolerance);
  }
}
// ---------------------------------------------------------------------------
// Bad arguments: an Error naming the problem, and the output left untouched.

struct BadPlanFixture : testing::Test {
  BadPlanFixture() : pool(1), rng(fresh_seed()) {
    c = DecodeCase{4, 2, 8, 2, 40, 3, KvType::f32, Layout::blocks32};
    d = make_decode_data(c, rng);
    p = bifurcated_plan(c, d, rng);
  }
  // Expects attend to throw an Error mentioning `fragment` and not to write out.
  void expect_rejected(const AttentionPlan& plan, const std::string& fragment) {
    std::vector<float> out(d.q.size(), 7.0f);
    try {
      attend(plan, d.q.data(), out.data(), ws, pool);
      ADD_FAILURE() << "no Error for: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    for (float x : out) ASSERT_EQ(x, 7.0f);
  }
  ThreadPool pool;
  AttentionWorkspace ws;
  std::mt19937 rng;
  DecodeCase c;
  DecodeData d;
  StoredPlan p;
};

TEST_F(BadPlanFixture, ValidPlanRuns) {
  std::vector<float> out = run_attend(p.plan, d.q, ws, pool);
  compute_reference(c, d);
  EXPECT_LE(relative_error(out, d.ref), kTolerance);
}

TEST_F(BadPlanFixture, HeadsNotDivisibleByGroups) {
  AttentionPlan plan = p.plan;
  plan.shape.n_kv_heads = 3;
  expect_rejected(plan, "not a multiple of n_kv_heads 3");
}

TEST_F(BadPlanFixture, HeadSizeBelowOne) {
  AttentionPlan plan = p.plan;
  plan.shape.head_size = 0;
  expect_rejected(plan, "head_size must be >= 1, got 0");
}

TEST_F(BadPlanFixture, SequenceOutOfRange) {
  AttentionPlan plan = p.plan;
  plan.segments[1].sequences = {2};
  expect_rejected(plan, "lists sequence 2, outside [0, 2)");
  plan.segments[1].sequences = {-1};
  expect_rejected(plan, "lists sequence -1");
}

TEST_F(BadPlanFixture, SequencesNotAscendingOrRepeated) {
  AttentionPlan plan = p.plan;
  plan.segments[0].sequences = {1, 0};
  expect_rejected(plan, "must be ascending");
  plan.segments[0].sequences = {0, 0, 1};
  expect_rejected(plan, "must be ascending");
}

TEST_F(BadPlanFixture, SequenceAttendingToNoKeys) {
  AttentionPlan plan = p.plan;
  plan.segments[0].sequences = {0};  // sequence 1 keeps only its 3-token leaf
  plan.segments[2].chunks.clear();   // ... which is now empty too
  expect_rejected(plan, "sequence 1 attends to zero keys");
}

TEST_F(BadPlanFixture, NullChunkPointer) {
  AttentionPlan plan = p.plan;
  plan.segments[0].chunks[1].v = nullptr;
  expect_rejected(plan, "segment 0 chunk 1 has a null V pointer");
}

TEST_F(BadPlanFixture, HeadStrideSmallerThanAHeadsRows) {
  AttentionPlan plan = p.plan;
  plan.segments[0].head_stride = 16;  // 32 tokens x 8 floats need 1024 bytes per head
  expect_rejected(plan, "head_stride 16 bytes is smaller");
}

TEST_F(BadPlanFixture, CausalSegmentTooShort) {
  std::vector<float> out(d.q.size(), 7.0f);
  EXPECT_THROW(attend_causal(p.plan.shape, p.plan.segments[0], 39, 2, d.q.data(), out.data(), ws, pool),
               Error);
  EXPECT_THROW(attend_causal(p.plan.shape, p.plan.segments[0], -1, 1, d.q.data(), out.data(), ws, pool),
               Error);
  for (float x : out) ASSERT_EQ(x, 7.0f);
}

// One thread: each pool thread's scratch grows to the largest task IT has
// run, and which thread runs which task varies between calls, so with more
// threads the workspace reaches its steady state after an unpredictable
// number of calls. With one, the first call runs every task.
TEST(Attend, SteadyStateCallsDoNotAllocate) {
  ThreadPool pool(1);
  AttentionWorkspace ws;
  const DecodeCase c{8, 2, 64, 16, 1000, 31, KvType::f16, Layout::blocks32};
  std::mt19937 rng(fresh_seed());
  DecodeData d = make_decode_data(c, rng);
  StoredPlan p = bifurcated_plan(c, d, rng);
  std::vector<float> out(d.q.size());
  attend(p.plan, d.q.data(), out.data(), ws, pool);  // grows the workspace
  const long before = g_allocations.load(), aligned_before = aligned_allocation_count();
  for (int i = 0; i < 3; ++i) attend(p.plan, d.q.data(), out.data(), ws, pool);
  EXPECT_EQ(g_allocations.load() - before, 0) << "operator new";
  EXPECT_EQ(aligned_allocation_count() - aligned_before, 0)
      << "aligned scratch (AlignedBuffer, allocate_aligned)";
}

}  // namespace
}  // namespace bifurcate::kernels
