// StepAttentionPlan::fold_nodes and the node rule (kv/attention_cost.h): a
// segment read by exactly the sequences of its one planned child is read as
// part of that child (its chunks first, the child's key limits shifted); a
// segment with several reading children is folded into each of them only
// when it is short (the rule's threshold, computed here by hand); the
// attention is the same either way, and the same as replicated copies.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kv/attention_plan.h"
#include "util/error.h"
#include "util/f16.h"
#include "util/thread_pool.h"

namespace bifurcate::kv {
namespace {

KvLayout layout() {
  return KvLayout{.n_layers = 3, .n_kv_heads = 2, .head_size = 128, .type = kernels::KvType::f16, .block_tokens = 4};
}

kernels::AttentionShape shape() {
  const KvLayout L = layout();
  return kernels::AttentionShape{L.n_kv_heads, L.n_kv_heads, L.head_size, L.type, 1.f / std::sqrt(128.f)};
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

// The rule's thresholds for the default model (BW 50 GB/s, F 400 GFLOP/s,
// T 0.5 us), k = 128, f16, one query head per KV head, computed by hand:
// own = T + 2·R·129·4 / BW + 4·R·128 / F, folded = (r - 1)·t·(512 / BW + 256 / F).
//   R = 2, r = 2: own 0.54384 us, 10.88 ns per token: folds up to t = 49.
//   R = 4, r = 4: own 0.58768 us, 32.64 ns per token: folds up to t = 18.
//   R = 4, r = 2: own 0.58768 us, 10.88 ns per token: folds up to t = 54.
TEST(AttentionCost, FoldRuleMatchesHandComputedThresholds) {
  const AttentionCostModel m;
  const kernels::AttentionShape s = shape();
  EXPECT_TRUE(fold_is_cheaper(m, s, 100000, 1, 1));  // one child: never more bytes
  EXPECT_TRUE(fold_is_cheaper(m, s, 49, 2, 2));
  EXPECT_FALSE(fold_is_cheaper(m, s, 50, 2, 2));
  EXPECT_TRUE(fold_is_cheaper(m, s, 18, 4, 4));
  EXPECT_FALSE(fold_is_cheaper(m, s, 19, 4, 4));
  EXPECT_TRUE(fold_is_cheaper(m, s, 54, 4, 2));
  EXPECT_FALSE(fold_is_cheaper(m, s, 55, 4, 2));
  // Twice the task overhead: twice the node length, less the per-row terms' share.
  const AttentionCostModel slow_tasks{.task_seconds = 1e-6};
  EXPECT_TRUE(fold_is_cheaper(slow_tasks, s, 95, 2, 2));    // own 1.04384 us / 10.88 ns = 95.9
  EXPECT_FALSE(fold_is_cheaper(slow_tasks, s, 96, 2, 2));
}

// The thread partition comes with the plan: a long context read by one row is
// split into kTargetTasks / g key ranges per KV head (each >= kMinSplitTokens),
// short leaves are not; a prefill chunk's rows are grouped.
TEST(AttentionCost, PlanCarriesTheThreadPartition) {
  KvCache cache(layout(), 1 << 27);
  const SegmentId root = cache.create_root();
  append(cache, root, 4096);
  const SegmentId leaf = cache.fork(root), chunk = cache.fork(root);
  append(cache, leaf, 3);
  append(cache, chunk, 20);
  StepAttentionPlan step;
  const std::vector<SegmentId> one = {leaf};
  step.build(cache, one, shape());
  ASSERT_EQ(step.plan().segments.size(), 2u);
  EXPECT_EQ(step.plan().segments[0].key_splits, kTargetTasks / 2);  // g = 2 KV heads share 16 tasks
  EXPECT_EQ(step.plan().segments[1].key_splits, 1);
  step.fold_nodes(cache);  // one reader: one segment of 4099 tokens, split the same way
  ASSERT_EQ(step.plan().segments.size(), 1u);
  EXPECT_EQ(step.plan().segments[0].key_splits, kTargetTasks / 2);
  const std::vector<SegmentId> rows(20, chunk);
  std::vector<int> key_ends(20);
  for (int i = 0; i < 20; ++i) key_ends[size_t(i)] = i + 1;
  step.build(cache, rows, key_ends, shape());
  EXPECT_EQ(step.plan().segments[1].row_groups, kTargetTasks / 2);
  EXPECT_EQ(step.plan().segments[1].key_splits, 1);  // 20 keys at most
}

TEST(AttentionPlanFold, SingleReaderChainsFoldLongSharedNodesStay) {
  KvCache cache(layout(), 1 << 26);
  const SegmentId system = cache.create_root();
  append(cache, system, 70);  // R = 4, r = 2: stays above 54 tokens
  const SegmentId req_a = cache.fork(system), req_b = cache.fork(system);
  append(cache, req_a, 60);  // R = 2, r = 2: stays above 49 tokens
  append(cache, req_b, 6);
  const SegmentId a1 = cache.fork(req_a), a2 = cache.fork(req_a), b1 = cache.fork(req_b);
  append(cache, a1, 1);
  append(cache, a2, 4);
  append(cache, b1, 3);  // a prefill chunk of 3 rows, rows 1 and 2 of the batch
  const std::vector<SegmentId> batch = {a1, b1, b1, a2};
  const std::vector<int> key_ends = {1, 2, 3, 4};
  StepAttentionPlan step;
  step.build(cache, batch, key_ends, shape());
  step.fold_nodes(cache);
  // req_b (read by rows 1, 2 only, through b1) folds into b1; system and
  // req_a have two children each and are long. Tree order follows each path's first row.
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

// A request's node of t tokens below a long system prompt, read by its two
// samples: folded into both samples' reads up to t = 49, read once above.
TEST(AttentionPlanFold, ShortSharedNodeFoldsIntoEveryChildAsTheRuleSays) {
  for (int t : {49, 50}) {
    SCOPED_TRACE("t = " + std::to_string(t));
    KvCache cache(layout(), 1 << 26);
    const SegmentId system = cache.create_root();
    append(cache, system, 200);
    const SegmentId req = cache.fork(system), other = cache.fork(system);
    append(cache, req, t);
    append(cache, other, 3);
    const SegmentId s1 = cache.fork(req), s2 = cache.fork(req);
    append(cache, s1, 2);
    append(cache, s2, 5);
    const std::vector<SegmentId> batch = {s1, other, s2};
    StepAttentionPlan step;
    step.build(cache, batch, shape());
    step.fold_nodes(cache);
    const kernels::AttentionPlan& plan = step.for_layer(1);
    if (t == 49) {
      EXPECT_EQ(step.segment_ids(), (std::vector<SegmentId>{system, s1, other, s2}));
      expect_chunks(plan.segments[1], chunks_of(cache, {req, s1}, 1));
      expect_chunks(plan.segments[3], chunks_of(cache, {req, s2}, 1));
    } else {
      EXPECT_EQ(step.segment_ids(), (std::vector<SegmentId>{system, req, s1, other, s2}));
      EXPECT_EQ(plan.segments[1].sequences, (std::vector<int>{0, 2}));
    }
    EXPECT_EQ(plan.segments[0].sequences, (std::vector<int>{0, 1, 2}));  // 200 tokens, R = 3, r = 2: stays
  }
}

// Random K/V in every row of segment `s`.
void fill(KvCache& cache, SegmentId s, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  const KvLayout& L = cache.layout();
  for (int i = 0; i < cache.tokens(s); ++i) {
    const KvCache::Slot slot = cache.slot(s, i);
    for (int l = 0; l < L.n_layers; ++l)
      for (int j = 0; j < L.n_kv_heads; ++j)
        for (void* row : {cache.k_row(slot, l, j), cache.v_row(slot, l, j)})
          for (int x = 0; x < L.head_size; ++x) static_cast<uint16_t*>(row)[x] = f32_to_f16(d(rng));
  }
}

// ||a - b|| / ||b|| over all rows (f32 accumulation in different orders differs in the last bits).
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// Whatever the rule decides, every row's attention is what replicated copies give.
TEST(AttentionPlanFold, FoldedUnfoldedAndReplicatedAttentionAgree) {
  std::mt19937 rng(11);
  KvCache cache(layout(), 1 << 27);
  const SegmentId system = cache.create_root();
  append(cache, system, 300);
  const SegmentId req = cache.fork(system), other = cache.fork(system);
  append(cache, req, 9);  // short: folds into its three samples
  append(cache, other, 70);
  std::vector<SegmentId> batch;
  for (int i = 0; i < 3; ++i) batch.push_back(cache.fork(req));
  for (int i = 0; i < 2; ++i) batch.push_back(cache.fork(other));
  for (size_t i = 0; i < batch.size(); ++i) append(cache, batch[i], 1 + int(i));
  for (SegmentId s : {system, req, other}) fill(cache, s, rng);
  for (SegmentId s : batch) fill(cache, s, rng);
  std::vector<SegmentId> copies;
  for (SegmentId s : batch) copies.push_back(cache.copy_path(s));

  const kernels::AttentionShape sh = shape();
  const int row = sh.n_heads * sh.head_size;
  std::vector<float> q(batch.size() * size_t(row));
  std::normal_distribution<float> d(0.f, 1.f);
  for (float& x : q) x = d(rng);
  ThreadPool pool(2);
  kernels::AttentionWorkspace ws;
  auto run = [&](std::span<const SegmentId> leaves, const AttentionCostModel* cost, size_t* n_segments) {
    StepAttentionPlan step;
    step.build(cache, leaves, sh);
    if (cost != nullptr) step.fold_nodes(cache, *cost);
    *n_segments = step.plan().segments.size();
    std::vector<float> out(q.size());
    kernels::attend(step.for_layer(2), q.data(), out.data(), ws, pool);
    return out;
  };
  size_t n_unfolded = 0, n_folded = 0, n_all = 0, n_replicated = 0;
  const AttentionCostModel fold_everything{.task_seconds = 1.0};
  const std::vector<float> replicated = run(copies, nullptr, &n_replicated);
  const std::vector<float> unfolded = run(batch, nullptr, &n_unfolded);
  const AttentionCostModel defaults;
  const std::vector<float> folded = run(batch, &defaults, &n_folded);
  const std::vector<float> all_folded = run(batch, &fold_everything, &n_all);
  EXPECT_EQ(n_replicated, 5u);
  EXPECT_EQ(n_unfolded, 8u);  // system, req, other, 5 leaves
  EXPECT_EQ(n_folded, 7u);    // req folded into its 3 samples
  EXPECT_EQ(n_all, 5u);       // everything folded: the replicated shape, read from the tree
  EXPECT_LE(max_relative_difference(unfolded, replicated), 1e-5);
  EXPECT_LE(max_relative_difference(folded, replicated), 1e-5);
  EXPECT_LE(max_relative_difference(all_folded, replicated), 1e-5);
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
  step.fold_nodes(cache);
  EXPECT_EQ(step.segment_ids(), (std::vector<SegmentId>{leaf}));
  expect_chunks(step.for_layer(1).segments[0], chunks_of(cache, {root, mid, leaf}, 1));
  EXPECT_TRUE(step.plan().segments[0].key_ends.empty());
}

}  // namespace
}  // namespace bifurcate::kv
