// StepAttentionPlan::fold_single_reader_chains: a segment read by exactly the
// sequences of its one planned child is read as part of that child (its
// chunks first, the child's key limits shifted); a segment with several
// reading children stays a segment of its own.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kv/attention_plan.h"

namespace bifurcate::kv {
namespace {

KvLayout layout() {
  return KvLayout{.n_layers = 3, .n_kv_heads = 2, .head_size = 8, .type = kernels::KvType::f16, .block_tokens = 4};
}

kernels::AttentionShape shape() {
  const KvLayout L = layout();
  return kernels::AttentionShape{L.n_kv_heads * 2, L.n_kv_heads, L.head_size, L.type, 1.f / std::sqrt(8.f)};
}

void append(KvCache& cache, SegmentId s, int n) {
  for (int i = 0; i < n; ++i) cache.append_token(s);
}

// The chunks of `ids`' views at `layer`, concatenated.
std::vector<kernels::KvChunk> chunks_of(const KvCache& cache, std::initializer_list<SegmentId> ids, int layer) {
  std::vector<kernels::KvChunk> out;
  for (SegmentId id : ids) {
    const kernels::PlannedSegment v = cache.view(id, layer);
    out.insert(out.end(), v.chunks.begin(), v.chunks.end());
  }
  return out;
}

void expect_chunks(const kernels::PlannedSegment& got, const std::vector<kernels::KvChunk>& want) {
  ASSERT_EQ(got.chunks.size(), want.size());
  for (size_t c = 0; c < want.size(); ++c) {
    EXPECT_EQ(got.chunks[c].k, want[c].k) << "chunk " << c;
    EXPECT_EQ(got.chunks[c].tokens, want[c].tokens) << "chunk " << c;
  }
}

TEST(AttentionPlanFold, SingleReaderChainsFoldSharedNodesStay) {
  KvCache cache(layout(), 1 << 22);
  const SegmentId system = cache.create_root();
  append(cache, system, 7);
  const SegmentId req_a = cache.fork(system), req_b = cache.fork(system);
  append(cache, req_a, 5);
  append(cache, req_b, 6);
  const SegmentId a1 = cache.fork(req_a), a2 = cache.fork(req_a), b1 = cache.fork(req_b);
  append(cache, a1, 1);
  append(cache, a2, 4);
  append(cache, b1, 3);  // a prefill chunk of 3 rows, rows 1 and 2 of the batch
  const std::vector<SegmentId> batch = {a1, b1, b1, a2};
  const std::vector<int> key_ends = {1, 2, 3, 4};
  StepAttentionPlan step;
  step.build(cache, batch, key_ends, shape());
  step.fold_single_reader_chains(cache);
  // req_b (read by rows 1, 2 only, through b1) folds into b1; system and
  // req_a have two children each. Tree order follows each path's first row.
  EXPECT_EQ(step.segment_ids(), (std::vector<SegmentId>{system, req_a, a1, b1, a2}));
  for (int layer : {0, 2, 1}) {
    const kernels::AttentionPlan& plan = step.for_layer(layer);
    ASSERT_EQ(plan.segments.size(), 5u);
    EXPECT_EQ(plan.segments[0].sequences, (std::vector<int>{0, 1, 2, 3}));
    expect_chunks(plan.segments[0], chunks_of(cache, {system}, layer));
    EXPECT_EQ(plan.segments[1].sequences, (std::vector<int>{0, 3}));
    expect_chunks(plan.segments[1], chunks_of(cache, {req_a}, layer));
    EXPECT_EQ(plan.segments[2].sequences, (std::vector<int>{0}));
    expect_chunks(plan.segments[2], chunks_of(cache, {a1}, layer));
    EXPECT_EQ(plan.segments[3].sequences, (std::vector<int>{1, 2}));
    expect_chunks(plan.segments[3], chunks_of(cache, {req_b, b1}, layer));
    EXPECT_EQ(plan.segments[3].key_ends, (std::vector<int>{6 + 2, 6 + 3}));  // shifted by req_b's 6 tokens
    EXPECT_EQ(plan.segments[4].sequences, (std::vector<int>{3}));
    expect_chunks(plan.segments[4], chunks_of(cache, {a2}, layer));
  }
}

TEST(AttentionPlanFold, ChainOfOneSequenceBecomesOneSegment) {
  KvCache cache(layout(), 1 << 22);
  const SegmentId root = cache.create_root();
  append(cache, root, 9);
  const SegmentId mid = cache.fork(root);
  append(cache, mid, 4);
  const SegmentId leaf = cache.fork(mid);
  append(cache, leaf, 2);
  StepAttentionPlan step;
  const std::vector<SegmentId> batch = {leaf};
  step.build(cache, batch, shape());
  step.fold_single_reader_chains(cache);
  EXPECT_EQ(step.segment_ids(), (std::vector<SegmentId>{leaf}));
  expect_chunks(step.for_layer(1).segments[0], chunks_of(cache, {root, mid, leaf}, 1));
  EXPECT_TRUE(step.plan().segments[0].key_ends.empty());
}

}  // namespace
}  // namespace bifurcate::kv
