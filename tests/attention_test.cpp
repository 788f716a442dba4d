// attend / attend_causal / attend_segment against a float64 softmax over the
// concatenated keys (attention_test_support.h): every head size, grouping,
// batch and length, a three-level tree, thread-count independence, causal
// prefill, key sub-ranges and every stacked row count. Extreme scores, bad
// plans and allocation are in attention_edge_test.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "attention_test_support.h"

namespace bifurcate::kernels {
namespace {

using namespace attention_test;

// (h, g) for MHA, GQA (h = 4g) and MQA.
const std::vector<std::pair<int, int>> kHeadLayouts = {{4, 4}, {8, 2}, {4, 1}};

TEST(Attend, EveryHeadSizeAndGroupingAtSmallAndLongContext) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  int variant = 0;
  double worst = 0.0;
  for (int k : {1, 8, 13, 64, 80, 96, 128})
    for (auto [h, g] : kHeadLayouts)
      for (KvType type : {KvType::f32, KvType::f16}) {
        const Layout layout = variant++ % 2 ? Layout::blocks32 : Layout::single;
        worst = std::max(worst, check_decode({h, g, k, 3, 64, 31, type, layout}, pool, ws));
        worst = std::max(worst, check_decode({h, g, k, 1, 1000, 1, type, layout}, pool, ws));
      }
  std::printf("worst relative error over the head-size grid: %.3g\n", worst);
}

TEST(Attend, EveryBatchContextAndDecodedLength) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  int variant = 0;
  double worst = 0.0;
  for (int b : {1, 3, 16, 33})
    for (int m_c : {1, 7, 64, 1000, 4097})
      for (int m_d : {0, 1, 31}) {
        const KvType type = variant % 2 ? KvType::f16 : KvType::f32;
        const Layout layout = Layout(variant % 3);
        ++variant;
        worst =
            std::max(worst, check_decode({4, 4, 8, b, m_c, m_d, type, layout}, pool, ws));  // test model's k
        worst = std::max(worst, check_decode({8, 2, 128, b, m_c, m_d, type, layout}, pool, ws));
      }
  std::printf("worst relative error over the (b, m_c, m_d) grid: %.3g\n", worst);
}

// root (shared by all) -> two mid segments -> one leaf per sequence (some empty).
TEST(Attend, ThreeLevelTreeMatchesReferenceAndReplicated) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  const int h = 8, g = 2, k = 96, b = 5;
  const KvType type = KvType::f16;
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const AttentionShape shape = make_shape(h, g, k, type);
  KvData root = random_kv(rng, g, k, 700, type);
  std::vector<KvData> mids = {random_kv(rng, g, k, 37, type), random_kv(rng, g, k, 130, type)};
  const std::vector<int> mid_of = {0, 0, 0, 1, 1};
  const std::vector<int> leaf_tokens = {3, 0, 31, 1, 64};
  std::vector<KvData> leaves;
  for (int s = 0; s < b; ++s) leaves.push_back(random_kv(rng, g, k, leaf_tokens[std::size_t(s)], type));
  std::vector<float> q = random_queries(rng, b * h, k, kQueryAmplitude);

  std::vector<double> ref(q.size());
  for (int s = 0; s < b; ++s)
    for (int head = 0; head < h; ++head) {
      const std::size_t row = (std::size_t(s) * h + head) * k;
      reference_row(&q[row], shape.scale,
                    {&root, &mids[std::size_t(mid_of[std::size_t(s)])], &leaves[std::size_t(s)]},
                    head / (h / g), -1, &ref[row]);
    }

  StoredPlan tree;
  tree.stored.push_back(store(root, type, Layout::blocks32, rng, {0, 1, 2, 3, 4}));
  tree.stored.push_back(store(mids[0], type, Layout::ragged, rng, {0, 1, 2}));
  tree.stored.push_back(store(mids[1], type, Layout::single, rng, {3, 4}));
  for (int s = 0; s < b; ++s)
    tree.stored.push_back(store(leaves[std::size_t(s)], type, Layout::ragged, rng, {s}));
  tree.plan = AttentionPlan{shape, b, {}};
  for (const StoredSegment& st : tree.stored) tree.plan.segments.push_back(st.planned);

  StoredPlan replicated;
  for (int s = 0; s < b; ++s)
    replicated.stored.push_back(
        store(concat(concat(root, mids[std::size_t(mid_of[std::size_t(s)])]), leaves[std::size_t(s)]), type,
              Layout::blocks32, rng, {s}));
  replicated.plan = AttentionPlan{shape, b, {}};
  for (const StoredSegment& st : replicated.stored) replicated.plan.segments.push_back(st.planned);

  std::vector<float> tree_out = run_attend(tree.plan, q, ws, pool);
  std::vector<float> replicated_out = run_attend(replicated.plan, q, ws, pool);
  EXPECT_LE(relative_error(tree_out, ref), kTolerance);
  EXPECT_LE(relative_error(replicated_out, ref), kTolerance);
  EXPECT_LE(relative_error(tree_out, replicated_out), kTolerance);
}

// Work splits depend on the plan only, so any thread count gives bit-identical output;
// b = 1 with a long context exercises the key-range splits.
TEST(Attend, ResultIsBitwiseIndependentOfThreadCount) {
  for (const DecodeCase& c : {DecodeCase{4, 4, 128, 1, 4097, 5, KvType::f16, Layout::blocks32},
                              DecodeCase{8, 2, 13, 3, 1000, 31, KvType::f32, Layout::single}}) {
    const unsigned seed = fresh_seed();
    SCOPED_TRACE(testing::Message() << c << " seed=" << seed);
    std::mt19937 rng(seed);
    DecodeData d = make_decode_data(c, rng);
    StoredPlan p = bifurcated_plan(c, d, rng);
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      AttentionWorkspace ws;
      outs.push_back(run_attend(p.plan, d.q, ws, pool));
    }
    compute_reference(c, d);
    EXPECT_LE(relative_error(outs[0], d.ref), kTolerance);
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[2].data(), outs[0].size() * sizeof(float)), 0);
  }
}

// ---------------------------------------------------------------------------
// Causal prefill over one segment.

void check_causal(int h, int g, int k, KvType type, Layout layout, int first_position, int n_queries,
                  ThreadPool& pool, AttentionWorkspace& ws) {
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "h=" << h << " g=" << g << " k=" << k
                                  << " first_position=" << first_position << " n_queries=" << n_queries
                                  << " layout=" << layout_name(layout) << " seed=" << seed);
  std::mt19937 rng(seed);
  const AttentionShape shape = make_shape(h, g, k, type);
  // Keys past the last query exist in the segment but must stay invisible.
  KvData kv = random_kv(rng, g, k, first_position + n_queries + 9, type);
  std::vector<float> q = random_queries(rng, n_queries * h, k, kQueryAmplitude);
  std::vector<double> ref(q.size());
  for (int i = 0; i < n_queries; ++i)
    for (int head = 0; head < h; ++head) {
      const std::size_t row = (std::size_t(i) * h + head) * k;
      reference_row(&q[row], shape.scale, {&kv}, head / (h / g), first_position + i + 1, &ref[row]);
    }
  StoredSegment st = store(kv, type, layout, rng);
  std::vector<float> out(q.size(), kPoison);
  bifurcate::kv::partition_causal(shape, first_position, n_queries, st.planned);
  attend_causal(shape, st.planned, first_position, n_queries, q.data(), out.data(), ws, pool);
  EXPECT_LE(relative_error(out, ref), kTolerance);
}

TEST(AttendCausal, MatchesReferenceForChunkedPrefill) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  check_causal(4, 4, 8, KvType::f32, Layout::blocks32, 0, 1, pool, ws);
  check_causal(4, 4, 8, KvType::f16, Layout::ragged, 0, 37, pool, ws);
  check_causal(8, 2, 64, KvType::f16, Layout::blocks32, 100, 300, pool, ws);
  check_causal(4, 1, 13, KvType::f32, Layout::single, 1000, 5, pool, ws);
  check_causal(8, 2, 128, KvType::f16, Layout::single, 0, 600, pool, ws);
  check_causal(2, 2, 80, KvType::f32, Layout::ragged, 2000, 1, pool, ws);
}

// ---------------------------------------------------------------------------
// attend_segment directly: a key sub-range and per-row causal limits.

TEST(AttendSegment, KeySubRangeAndRowLimitsMatchReference) {
  const int k = 13, rows = 6, tokens = 300;
  const KvType type = KvType::f16;
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  const AttentionShape shape = make_shape(2, 2, k, type);
  KvData kv = random_kv(rng, 2, k, tokens, type);
  StoredSegment st = store(kv, type, Layout::ragged, rng);
  std::vector<float> q = random_queries(rng, rows, k, kQueryAmplitude);
  std::vector<const float*> q_rows;
  for (int r = 0; r < rows; ++r) q_rows.push_back(&q[std::size_t(r) * k]);
  // Row 0 sees nothing of [70, 250) (empty state); the rest see growing prefixes.
  const std::vector<int> key_end = {60, 71, 100, 163, 249, 300};
  const int begin = 70, end = 250, kv_head = 1;

  // Reference: keys [begin, min(end, key_end[r])) of KV head 1.
  KvData window{2, k, end - begin, {}, {}};
  for (std::vector<float> KvData::*field : {&KvData::k, &KvData::v})
    for (int head = 0; head < 2; ++head) {
      const float* first = (kv.*field).data() + (std::size_t(head) * tokens + begin) * k;
      (window.*field).insert((window.*field).end(), first, first + std::size_t(end - begin) * k);
    }

  std::vector<float> out(std::size_t(rows) * k, kPoison), lse(rows, kPoison);
  SegmentScratch scratch;
  attend_segment(shape, SegmentKeys{st.planned.chunks, st.planned.head_stride, kv_head, begin, end},
                 StackedQueries{q_rows.data(), key_end.data(), rows}, out.data(), lse.data(), scratch);
  EXPECT_EQ(lse[0], kEmptyLse);
  for (int d = 0; d < k; ++d) EXPECT_EQ(out[std::size_t(d)], 0.0f);
  std::vector<float> seen(out.begin() + k, out.end());
  std::vector<double> ref(seen.size());
  for (int r = 1; r < rows; ++r) {
    const int limit = std::min(end, key_end[std::size_t(r)]) - begin;
    reference_row(q_rows[std::size_t(r)], shape.scale, {&window}, kv_head, limit,
                  &ref[std::size_t(r - 1) * k]);
    // lse against its own float64 value.
    double m = -1e300, sum = 0.0;
    std::vector<double> s;
    for (int t = 0; t < limit; ++t) {
      double dot = 0.0;
      for (int d = 0; d < k; ++d) dot += double(q_rows[std::size_t(r)][d]) * window.key(kv_head, t)[d];
      s.push_back(shape.scale * dot);
      m = std::max(m, s.back());
    }
    for (double x : s) sum += std::exp(x - m);
    EXPECT_NEAR(lse[std::size_t(r)], m + std::log(sum), 1e-5 * std::max(1.0, std::abs(m)));
  }
  EXPECT_LE(relative_error(seen, ref), kTolerance);
}

// Every stacked row count 1..40 reaches one of the kernel's paths (one-row f16 GEMV; with
// AVX-512 and k % 16 == 0 up to 16 rows with head dims in lanes, in 4-row blocks and 64-,
// 48- or 16-column P.V blocks (k = 48, 80, 128), else up to 8 rows as key-half lane pairs,
// else 16-row groups; 8-row groups otherwise), with partial groups and odd tiles (ragged
// chunks, 203 keys); each row checked with its LSE.
TEST(AttendSegment, EveryRowCountMatchesReference) {
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  for (KvType type : {KvType::f16, KvType::f32})
    for (int k : {8, 24, 48, 80, 128}) {
      const AttentionShape shape = make_shape(1, 1, k, type);
      KvData kv = random_kv(rng, 1, k, 203, type);
      StoredSegment st = store(kv, type, Layout::ragged, rng);
      std::vector<float> q = random_queries(rng, 40, k, kQueryAmplitude);
      std::vector<const float*> rows;
      for (int r = 0; r < 40; ++r) rows.push_back(&q[std::size_t(r) * k]);
      std::vector<double> ref(q.size());
      for (int r = 0; r < 40; ++r)
        reference_row(rows[std::size_t(r)], shape.scale, {&kv}, 0, -1, &ref[std::size_t(r) * k]);
      SegmentScratch scratch;
      for (int n_rows = 1; n_rows <= 40; ++n_rows) {
        SCOPED_TRACE(testing::Message()
                     << "k=" << k << " n_rows=" << n_rows << " kv=" << (type == KvType::f16 ? "f16" : "f32"));
        std::vector<float> out(std::size_t(n_rows) * k, kPoison), lse(std::size_t(n_rows), kPoison);
        attend_segment(shape, SegmentKeys{st.planned.chunks, st.planned.head_stride, 0, 0, kv.tokens},
                       StackedQueries{rows.data(), nullptr, n_rows}, out.data(), lse.data(), scratch);
        EXPECT_LE(
            relative_error(out, std::vector<double>(ref.begin(), ref.begin() + std::ptrdiff_t(out.size()))),
            kTolerance);
        for (int r = 0; r < n_rows; ++r) {  // lse = log sum exp(scale q.k), in float64
          double m = -1e300, sum = 0.0;
          std::vector<double> s(std::size_t(kv.tokens));
          for (int t = 0; t < kv.tokens; ++t) {
            double dot = 0.0;
            for (int d = 0; d < k; ++d) dot += double(rows[std::size_t(r)][d]) * kv.key(0, t)[d];
            s[std::size_t(t)] = shape.scale * dot;
            m = std::max(m, s[std::size_t(t)]);
          }
          for (double x : s) sum += std::exp(x - m);
          EXPECT_NEAR(lse[std::size_t(r)], m + std::log(sum), 1e-5 * std::max(1.0, std::abs(m)));
        }
      }
    }
}

}  // namespace
}  // namespace bifurcate::kernels
