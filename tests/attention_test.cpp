// attend / attend_causal / attend_segment against a float64 softmax over the
// concatenated keys, written here. Error metric everywhere: for one call's whole
// output, max |x - ref| / max |ref| (NaN if any output is NaN, so it never passes).
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "util/error.h"
#include "util/f16.h"

// Counts heap allocations so a test can check that attend allocates nothing in steady state.
// (The replacement pair is malloc/free on both sides; GCC cannot see that through inlining.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace bifurcate::kernels {
namespace {

constexpr double kTolerance = 1e-5;
const float kPoison = std::numeric_limits<float>::quiet_NaN();

unsigned fresh_seed() { return std::random_device{}(); }

// ---------------------------------------------------------------------------
// Test data: logical K/V, their storage in chunks, the float64 reference.

// Logical keys and values of one segment: [g, tokens, k], already rounded to the KV type.
struct KvData {
  int g = 0, head_size = 0, tokens = 0;
  std::vector<float> k, v;
  const float* key(int head, int t) const { return &k[(std::size_t(head) * tokens + t) * head_size]; }
  const float* value(int head, int t) const { return &v[(std::size_t(head) * tokens + t) * head_size]; }
};

float round_to(KvType type, float x) { return type == KvType::f16 ? f16_to_f32(f32_to_f16(x)) : x; }

KvData random_kv(std::mt19937& rng, int g, int head_size, int tokens, KvType type, float amplitude = 1.0f) {
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  KvData kv{g, head_size, tokens, {}, {}};
  kv.k.resize(std::size_t(g) * tokens * head_size);
  kv.v.resize(kv.k.size());
  for (float& x : kv.k) x = round_to(type, u(rng));
  for (float& x : kv.v) x = round_to(type, u(rng));
  return kv;
}

// The keys of `a` followed by those of `b`, per head.
KvData concat(const KvData& a, const KvData& b) {
  KvData c{a.g, a.head_size, a.tokens + b.tokens, {}, {}};
  for (std::vector<float> KvData::*field : {&KvData::k, &KvData::v}) {
    std::vector<float>& dst = c.*field;
    for (int h = 0; h < a.g; ++h) {
      for (const KvData* src : {&a, &b}) {
        const std::size_t n = std::size_t(src->tokens) * src->head_size;
        const float* first = (src->*field).data() + std::size_t(h) * n;
        dst.insert(dst.end(), first, first + n);
      }
    }
  }
  return c;
}

// How a segment's tokens are cut into chunks.
enum class Layout { blocks32, ragged, single };
const char* layout_name(Layout l) { return l == Layout::blocks32 ? "blocks32" : l == Layout::ragged ? "ragged" : "single"; }

// A segment's K/V stored as a KV pool would: `blocks32` and `ragged` put every chunk in a block
// holding, per KV head, K [capacity, k] then V [capacity, k]; `single` is one chunk with
// K [g, tokens, k] followed by V [g, tokens, k].
struct StoredSegment {
  std::vector<uint8_t> bytes;
  PlannedSegment planned;
};

void store_row(KvType type, const float* src, int n, uint8_t* dst) {
  for (int d = 0; d < n; ++d) {
    if (type == KvType::f16) {
      uint16_t h = f32_to_f16(src[d]);
      std::memcpy(dst + 2 * d, &h, 2);
    } else {
      std::memcpy(dst + 4 * d, &src[d], 4);
    }
  }
}

StoredSegment store(const KvData& kv, KvType type, Layout layout, std::mt19937& rng,
                    std::vector<int> sequences = {}) {
  StoredSegment s;
  s.planned.sequences = std::move(sequences);
  const std::size_t row = std::size_t(kv.head_size) * kv_type_bytes(type);
  if (kv.tokens == 0) return s;
  if (layout == Layout::single) {
    const std::size_t head = std::size_t(kv.tokens) * row;
    s.bytes.resize(2 * kv.g * head);
    for (int h = 0; h < kv.g; ++h)
      for (int t = 0; t < kv.tokens; ++t) {
        store_row(type, kv.key(h, t), kv.head_size, s.bytes.data() + h * head + t * row);
        store_row(type, kv.value(h, t), kv.head_size, s.bytes.data() + kv.g * head + h * head + t * row);
      }
    s.planned.head_stride = head;
    s.planned.chunks.push_back({s.bytes.data(), s.bytes.data() + kv.g * head, kv.tokens});
    return s;
  }
  const int capacity = layout == Layout::blocks32 ? 32 : 50;
  std::vector<int> sizes;
  std::uniform_int_distribution<int> ragged(1, capacity);
  for (int left = kv.tokens; left > 0;) {
    int n = std::min(left, layout == Layout::blocks32 ? capacity : ragged(rng));
    sizes.push_back(n);
    left -= n;
  }
  const std::size_t head_stride = 2 * std::size_t(capacity) * row;
  const std::size_t block_bytes = head_stride * kv.g;
  s.bytes.resize(block_bytes * sizes.size());
  s.planned.head_stride = head_stride;
  int first = 0;
  for (std::size_t b = 0; b < sizes.size(); ++b) {
    uint8_t* block = s.bytes.data() + b * block_bytes;
    for (int h = 0; h < kv.g; ++h)
      for (int t = 0; t < sizes[b]; ++t) {
        store_row(type, kv.key(h, first + t), kv.head_size, block + h * head_stride + t * row);
        store_row(type, kv.value(h, first + t), kv.head_size, block + h * head_stride + (capacity + t) * row);
      }
    s.planned.chunks.push_back({block, block + capacity * row, sizes[b]});
    first += sizes[b];
  }
  return s;
}

// Float64 attention of one query row over the concatenation of `parts` (KV head `kv_head`),
// keys limited to the first `limit` of the concatenation (all when limit < 0).
void reference_row(const float* q, float scale, const std::vector<const KvData*>& parts, int kv_head,
                   int limit, double* out) {
  const int k = parts.front()->head_size;
  std::vector<double> scores;
  std::vector<const float*> values;
  for (const KvData* part : parts)
    for (int t = 0; t < part->tokens; ++t) {
      if (limit >= 0 && int(scores.size()) >= limit) break;
      const float* key = part->key(kv_head, t);
      double s = 0.0;
      for (int d = 0; d < k; ++d) s += double(q[d]) * double(key[d]);
      scores.push_back(double(scale) * s);
      values.push_back(part->value(kv_head, t));
    }
  const double m = *std::max_element(scores.begin(), scores.end());
  double sum = 0.0;
  std::fill(out, out + k, 0.0);
  for (std::size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(scores[j] - m);
    sum += p;
    for (int d = 0; d < k; ++d) out[d] += p * double(values[j][d]);
  }
  for (int d = 0; d < k; ++d) out[d] /= sum;
}

// max |x - ref| / max |ref|, NaN if x holds a NaN.
template <class Ref>
double relative_error(const std::vector<float>& x, const std::vector<Ref>& ref) {
  double worst = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return std::numeric_limits<double>::quiet_NaN();
    worst = std::max(worst, std::abs(double(x[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return scale > 0.0 ? worst / scale : worst;
}

std::vector<float> random_queries(std::mt19937& rng, int rows, int head_size, float amplitude) {
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  std::vector<float> q(std::size_t(rows) * head_size);
  for (float& x : q) x = u(rng);
  return q;
}

AttentionShape make_shape(int h, int g, int k, KvType type) {
  return AttentionShape{h, g, k, type, 1.0f / std::sqrt(float(k))};
}

// Query amplitude giving scaled scores of standard deviation ~2 with keys in [-1, 1].
constexpr float kQueryAmplitude = 6.0f;

// ---------------------------------------------------------------------------
// Decode: bifurcated (shared context + one leaf per sequence) and replicated
// (one private copy per sequence) against the reference and each other.

struct DecodeCase {
  int h, g, k, b, m_c, m_d;
  KvType type;
  Layout layout;
};

std::ostream& operator<<(std::ostream& os, const DecodeCase& c) {
  return os << "h=" << c.h << " g=" << c.g << " k=" << c.k << " b=" << c.b << " m_c=" << c.m_c
            << " m_d=" << c.m_d << " kv=" << (c.type == KvType::f16 ? "f16" : "f32")
            << " layout=" << layout_name(c.layout);
}

struct DecodeData {
  AttentionShape shape;
  KvData shared;
  std::vector<KvData> leaves;
  std::vector<float> q;    // [b, h, k]
  std::vector<double> ref;  // [b, h, k]
};

DecodeData make_decode_data(const DecodeCase& c, std::mt19937& rng, float q_amplitude = kQueryAmplitude,
                            float kv_amplitude = 1.0f) {
  DecodeData d{make_shape(c.h, c.g, c.k, c.type), random_kv(rng, c.g, c.k, c.m_c, c.type, kv_amplitude), {}, {}, {}};
  for (int s = 0; s < c.b; ++s) d.leaves.push_back(random_kv(rng, c.g, c.k, c.m_d, c.type, kv_amplitude));
  d.q = random_queries(rng, c.b * c.h, c.k, q_amplitude);
  return d;
}

void compute_reference(const DecodeCase& c, DecodeData& d) {
  d.ref.assign(d.q.size(), 0.0);
  const int r = c.h / c.g;
  for (int s = 0; s < c.b; ++s)
    for (int head = 0; head < c.h; ++head) {
      const std::size_t row = (std::size_t(s) * c.h + head) * c.k;
      reference_row(&d.q[row], d.shape.scale, {&d.shared, &d.leaves[std::size_t(s)]}, head / r, -1, &d.ref[row]);
    }
}

// Keeps the stored segments alive as long as the plan that points into them.
struct StoredPlan {
  std::vector<StoredSegment> stored;
  AttentionPlan plan;
};

StoredPlan bifurcated_plan(const DecodeCase& c, const DecodeData& d, std::mt19937& rng) {
  StoredPlan p;
  std::vector<int> all(std::size_t(c.b));
  for (int s = 0; s < c.b; ++s) all[std::size_t(s)] = s;
  p.stored.push_back(store(d.shared, c.type, c.layout, rng, all));
  // Leaves use ragged blocks whatever the context layout: they grow one token at a time.
  for (int s = 0; s < c.b; ++s) p.stored.push_back(store(d.leaves[std::size_t(s)], c.type, Layout::ragged, rng, {s}));
  p.plan = AttentionPlan{d.shape, c.b, {}};
  for (const StoredSegment& st : p.stored) p.plan.segments.push_back(st.planned);
  return p;
}

StoredPlan replicated_plan(const DecodeCase& c, const DecodeData& d, std::mt19937& rng) {
  StoredPlan p;
  for (int s = 0; s < c.b; ++s)
    p.stored.push_back(store(concat(d.shared, d.leaves[std::size_t(s)]), c.type, c.layout, rng, {s}));
  p.plan = AttentionPlan{d.shape, c.b, {}};
  for (const StoredSegment& st : p.stored) p.plan.segments.push_back(st.planned);
  return p;
}

std::vector<float> run_attend(const AttentionPlan& plan, const std::vector<float>& q, AttentionWorkspace& ws,
                              ThreadPool& pool) {
  std::vector<float> out(q.size(), kPoison);
  attend(plan, q.data(), out.data(), ws, pool);
  return out;
}

// Returns the largest of the three errors, for the summary the grid tests print.
double check_decode(const DecodeCase& c, ThreadPool& pool, AttentionWorkspace& ws) {
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << c << " seed=" << seed);
  std::mt19937 rng(seed);
  DecodeData d = make_decode_data(c, rng);
  compute_reference(c, d);
  std::vector<float> bifurcated = run_attend(bifurcated_plan(c, d, rng).plan, d.q, ws, pool);
  std::vector<float> replicated = run_attend(replicated_plan(c, d, rng).plan, d.q, ws, pool);
  const double errors[] = {relative_error(bifurcated, d.ref), relative_error(replicated, d.ref),
                           relative_error(bifurcated, replicated)};
  EXPECT_LE(errors[0], kTolerance);
  EXPECT_LE(errors[1], kTolerance);
  EXPECT_LE(errors[2], kTolerance);
  return std::max({errors[0], errors[1], errors[2]});
}

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
        worst = std::max(worst, check_decode({4, 4, 8, b, m_c, m_d, type, layout}, pool, ws));  // test model's k
        worst = std::max(worst, check_decode({8, 2, 128, b, m_c, m_d, type, layout}, pool, ws));
      }
  std::printf("worst relative error over the (b, m_c, m_d) grid: %.3g\n", worst);
}

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
    auto round_all = [](std::vector<float>& xs) { for (float& x : xs) x = std::nearbyint(x); };
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
      reference_row(&q[row], shape.scale, {&root, &mids[std::size_t(mid_of[std::size_t(s)])], &leaves[std::size_t(s)]},
                    head / (h / g), -1, &ref[row]);
    }

  StoredPlan tree;
  tree.stored.push_back(store(root, type, Layout::blocks32, rng, {0, 1, 2, 3, 4}));
  tree.stored.push_back(store(mids[0], type, Layout::ragged, rng, {0, 1, 2}));
  tree.stored.push_back(store(mids[1], type, Layout::single, rng, {3, 4}));
  for (int s = 0; s < b; ++s) tree.stored.push_back(store(leaves[std::size_t(s)], type, Layout::ragged, rng, {s}));
  tree.plan = AttentionPlan{shape, b, {}};
  for (const StoredSegment& st : tree.stored) tree.plan.segments.push_back(st.planned);

  StoredPlan replicated;
  for (int s = 0; s < b; ++s)
    replicated.stored.push_back(store(concat(concat(root, mids[std::size_t(mid_of[std::size_t(s)])]), leaves[std::size_t(s)]),
                                      type, Layout::blocks32, rng, {s}));
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
  SCOPED_TRACE(testing::Message() << "h=" << h << " g=" << g << " k=" << k << " first_position=" << first_position
                                  << " n_queries=" << n_queries << " layout=" << layout_name(layout)
                                  << " seed=" << seed);
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
    reference_row(q_rows[std::size_t(r)], shape.scale, {&window}, kv_head, limit, &ref[std::size_t(r - 1) * k]);
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
// AVX-512 up to 8 rows as key-half lane pairs, else 16-row groups; 8-row groups otherwise),
// with partial groups and odd tiles (ragged chunks, 203 keys); each row checked with its LSE.
TEST(AttendSegment, EveryRowCountMatchesReference) {
  const unsigned seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937 rng(seed);
  for (KvType type : {KvType::f16, KvType::f32})
    for (int k : {8, 24, 128}) {
      const AttentionShape shape = make_shape(1, 1, k, type);
      KvData kv = random_kv(rng, 1, k, 203, type);
      StoredSegment st = store(kv, type, Layout::ragged, rng);
      std::vector<float> q = random_queries(rng, 40, k, kQueryAmplitude);
      std::vector<const float*> rows;
      for (int r = 0; r < 40; ++r) rows.push_back(&q[std::size_t(r) * k]);
      std::vector<double> ref(q.size());
      for (int r = 0; r < 40; ++r) reference_row(rows[std::size_t(r)], shape.scale, {&kv}, 0, -1, &ref[std::size_t(r) * k]);
      SegmentScratch scratch;
      for (int n_rows = 1; n_rows <= 40; ++n_rows) {
        SCOPED_TRACE(testing::Message() << "k=" << k << " n_rows=" << n_rows << " kv=" << (type == KvType::f16 ? "f16" : "f32"));
        std::vector<float> out(std::size_t(n_rows) * k, kPoison), lse(std::size_t(n_rows), kPoison);
        attend_segment(shape, SegmentKeys{st.planned.chunks, st.planned.head_stride, 0, 0, kv.tokens},
                       StackedQueries{rows.data(), nullptr, n_rows}, out.data(), lse.data(), scratch);
        EXPECT_LE(relative_error(out, std::vector<double>(ref.begin(), ref.begin() + std::ptrdiff_t(out.size()))), kTolerance);
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
  EXPECT_THROW(attend_causal(p.plan.shape, p.plan.segments[0], 39, 2, d.q.data(), out.data(), ws, pool), Error);
  EXPECT_THROW(attend_causal(p.plan.shape, p.plan.segments[0], -1, 1, d.q.data(), out.data(), ws, pool), Error);
  for (float x : out) ASSERT_EQ(x, 7.0f);
}

TEST(Attend, SteadyStateCallsDoNotAllocate) {
  ThreadPool pool(2);
  AttentionWorkspace ws;
  const DecodeCase c{8, 2, 64, 16, 1000, 31, KvType::f16, Layout::blocks32};
  std::mt19937 rng(fresh_seed());
  DecodeData d = make_decode_data(c, rng);
  StoredPlan p = bifurcated_plan(c, d, rng);
  std::vector<float> out(d.q.size());
  attend(p.plan, d.q.data(), out.data(), ws, pool);  // grows the workspace
  const long before = g_allocations.load();
  for (int i = 0; i < 3; ++i) attend(p.plan, d.q.data(), out.data(), ws, pool);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace bifurcate::kernels
