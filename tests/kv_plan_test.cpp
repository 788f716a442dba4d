// build_attention_plan / StepAttentionPlan: which segments a step attends, in
// what order, listing which batch sequences, and with which chunks per layer.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kv/attention_plan.h"
#include "util/error.h"

namespace bifurcate::kv {
namespace {

using kernels::KvType;

KvLayout plan_layout() {
  return KvLayout{.n_layers = 4, .n_kv_heads = 2, .head_size = 8, .type = KvType::f16, .block_tokens = 4};
}

kernels::AttentionShape shape_of(const KvLayout& L, int group = 2) {
  return kernels::AttentionShape{L.n_kv_heads * group, L.n_kv_heads, L.head_size, L.type,
                                 1.f / std::sqrt(float(L.head_size))};
}

void append(KvCache& cache, SegmentId s, int n) {
  for (int i = 0; i < n; ++i) cache.append_token(s);  // contents do not matter for the plan's structure
}

// The plan segment must be exactly cache.view(id, layer) plus `sequences`.
void expect_segment(const kernels::PlannedSegment& got, const KvCache& cache, SegmentId id, int layer,
                    const std::vector<int>& sequences) {
  SCOPED_TRACE(testing::Message() << "segment " << id << " layer " << layer);
  kernels::PlannedSegment want = cache.view(id, layer);
  EXPECT_EQ(got.sequences, sequences);
  EXPECT_EQ(got.head_stride, want.head_stride);
  ASSERT_EQ(got.chunks.size(), want.chunks.size());
  int tokens = 0;
  for (std::size_t c = 0; c < want.chunks.size(); ++c) {
    EXPECT_EQ(got.chunks[c].k, want.chunks[c].k) << "chunk " << c;
    EXPECT_EQ(got.chunks[c].v, want.chunks[c].v) << "chunk " << c;
    EXPECT_EQ(got.chunks[c].tokens, want.chunks[c].tokens) << "chunk " << c;
    tokens += got.chunks[c].tokens;
  }
  EXPECT_EQ(tokens, cache.tokens(id));
}

TEST(AttentionPlan, BifurcatedIsOneSharedSegmentPlusOneLeafPerSequence) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId context = cache.create_root();
  append(cache, context, 10);
  const int b = 5;
  std::vector<SegmentId> leaves;
  for (int i = 0; i < b; ++i) {
    leaves.push_back(cache.fork(context));
    append(cache, leaves.back(), i + 1);
  }
  for (int layer : {0, 3}) {
    kernels::AttentionPlan plan = build_attention_plan(cache, leaves, layer, shape_of(L));
    EXPECT_EQ(plan.n_sequences, b);
    EXPECT_EQ(plan.shape.n_heads, 4);
    ASSERT_EQ(plan.segments.size(), std::size_t(b + 1));
    expect_segment(plan.segments[0], cache, context, layer, {0, 1, 2, 3, 4});
    for (int i = 0; i < b; ++i)
      expect_segment(plan.segments[std::size_t(i) + 1], cache, leaves[std::size_t(i)], layer, {i});
  }
}

TEST(AttentionPlan, SequenceListsFollowBatchOrderNotCreationOrder) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId context = cache.create_root();
  append(cache, context, 3);
  SegmentId a = cache.fork(context), b = cache.fork(context), c = cache.fork(context);
  append(cache, a, 1);
  append(cache, b, 2);
  append(cache, c, 3);
  std::vector<SegmentId> batch = {c, a, b};
  kernels::AttentionPlan plan = build_attention_plan(cache, batch, 1, shape_of(L));
  ASSERT_EQ(plan.segments.size(), 4u);
  expect_segment(plan.segments[0], cache, context, 1, {0, 1, 2});
  expect_segment(plan.segments[1], cache, c, 1, {0});
  expect_segment(plan.segments[2], cache, a, 1, {1});
  expect_segment(plan.segments[3], cache, b, 1, {2});
}

TEST(AttentionPlan, ReplicatedIsOnePrivateCopyPerSequence) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId context = cache.create_root();
  append(cache, context, 9);
  const int b = 3;
  std::vector<SegmentId> copies;
  for (int i = 0; i < b; ++i) {
    copies.push_back(cache.copy_path(context));
    append(cache, copies.back(), 2 * i + 1);
  }
  cache.release(context);
  kernels::AttentionPlan plan = build_attention_plan(cache, copies, 2, shape_of(L));
  ASSERT_EQ(plan.segments.size(), std::size_t(b));
  for (int i = 0; i < b; ++i) {
    expect_segment(plan.segments[std::size_t(i)], cache, copies[std::size_t(i)], 2, {i});
    EXPECT_EQ(cache.tokens(copies[std::size_t(i)]), 9 + 2 * i + 1);
  }
}

TEST(AttentionPlan, ThreeLevelTreeListsEveryDescendantInTreeOrder) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId system = cache.create_root();
  append(cache, system, 7);
  SegmentId req_a = cache.fork(system), req_b = cache.fork(system);
  append(cache, req_a, 5);
  append(cache, req_b, 2);
  SegmentId a1 = cache.fork(req_a), a2 = cache.fork(req_a), b1 = cache.fork(req_b);
  append(cache, a1, 1);
  append(cache, a2, 4);
  append(cache, b1, 6);
  std::vector<SegmentId> batch = {b1, a1, a2};
  StepAttentionPlan step;
  step.build(cache, batch, shape_of(L));
  std::vector<SegmentId> order = {system, req_b, b1, req_a, a1, a2};
  std::vector<std::vector<int>> sequences = {{0, 1, 2}, {0}, {0}, {1, 2}, {1}, {2}};
  EXPECT_EQ(step.segment_ids(), order);
  // Moving between layers in any order re-bases every chunk exactly.
  for (int layer : {2, 0, 3, 1, 1}) {
    const kernels::AttentionPlan& plan = step.for_layer(layer);
    ASSERT_EQ(plan.segments.size(), order.size());
    for (std::size_t j = 0; j < order.size(); ++j)
      expect_segment(plan.segments[j], cache, order[j], layer, sequences[j]);
  }
  // Paths: every sequence attends to exactly its root..leaf tokens.
  std::vector<int> keys(3, 0);
  for (const auto& seg : step.plan().segments) {
    int tokens = 0;
    for (const auto& c : seg.chunks) tokens += c.tokens;
    for (int i : seg.sequences) keys[std::size_t(i)] += tokens;
  }
  for (std::size_t i = 0; i < batch.size(); ++i)
    EXPECT_EQ(keys[i], cache.path_tokens(batch[i])) << "sequence " << i;
}

TEST(AttentionPlan, EmptySegmentsAreLeftOutAndRebuildsReuseTheObject) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId context = cache.create_root();
  append(cache, context, 5);
  SegmentId a = cache.fork(context), b = cache.fork(context);
  std::vector<SegmentId> batch = {a, b};
  StepAttentionPlan step;
  step.build(cache, batch, shape_of(L));
  ASSERT_EQ(step.plan().segments.size(), 1u);  // both leaves still empty
  expect_segment(step.plan().segments[0], cache, context, 0, {0, 1});

  append(cache, b, 1);  // the next step: b has a token, the plan is rebuilt in place at layer 0
  step.for_layer(2);
  step.build(cache, batch, shape_of(L));
  EXPECT_EQ(step.layer(), 0);
  ASSERT_EQ(step.plan().segments.size(), 2u);
  expect_segment(step.plan().segments[0], cache, context, 0, {0, 1});
  expect_segment(step.plan().segments[1], cache, b, 0, {1});
}

TEST(AttentionPlan, MismatchesAreErrors) {
  KvLayout L = plan_layout();
  KvCache cache(L, 1 << 22);
  SegmentId root = cache.create_root();
  append(cache, root, 2);
  std::vector<SegmentId> batch = {root};
  kernels::AttentionShape shape = shape_of(L);
  EXPECT_NO_THROW(build_attention_plan(cache, batch, 0, shape));
  EXPECT_THROW(build_attention_plan(cache, batch, 4, shape), Error);  // layer out of range
  kernels::AttentionShape wrong = shape;
  wrong.head_size = 16;
  EXPECT_THROW(build_attention_plan(cache, batch, 0, wrong), Error);
  wrong = shape;
  wrong.kv_type = KvType::f32;
  EXPECT_THROW(build_attention_plan(cache, batch, 0, wrong), Error);
  wrong = shape;
  wrong.n_heads = 3;  // not a multiple of 2 KV heads
  EXPECT_THROW(build_attention_plan(cache, batch, 0, wrong), Error);
  std::vector<SegmentId> stale = {root + 7};
  EXPECT_THROW(build_attention_plan(cache, stale, 0, shape), Error);
}

}  // namespace
}  // namespace bifurcate::kv
