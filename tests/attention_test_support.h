// Shared by attention_test and attention_edge_test: random K/V and queries,
// their storage in chunks as a KV pool would hold them, the float64 reference
// (a softmax over the concatenated keys, written here), and decode plans
// (bifurcated and replicated) built from them.
// Error metric everywhere: relative_error (numeric_test_support.h).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <vector>

#include "kv/attention_cost.h"
#include "kernels/attention.h"
#include "numeric_test_support.h"
#include "util/f16.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels::attention_test {

constexpr double kTolerance = 1e-5;
inline const float kPoison = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------
// Test data: logical K/V, their storage in chunks, the float64 reference.

// Logical keys and values of one segment: [g, tokens, k], already rounded to the KV type.
struct KvData {
  int g = 0, head_size = 0, tokens = 0;
  std::vector<float> k, v;
  const float* key(int head, int t) const { return &k[(std::size_t(head) * tokens + t) * head_size]; }
  const float* value(int head, int t) const { return &v[(std::size_t(head) * tokens + t) * head_size]; }
};

inline float round_to(KvType type, float x) { return type == KvType::f16 ? f16_to_f32(f32_to_f16(x)) : x; }

inline KvData random_kv(std::mt19937& rng, int g, int head_size, int tokens, KvType type,
                        float amplitude = 1.0f) {
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  KvData kv{g, head_size, tokens, {}, {}};
  kv.k.resize(std::size_t(g) * tokens * head_size);
  kv.v.resize(kv.k.size());
  for (float& x : kv.k) x = round_to(type, u(rng));
  for (float& x : kv.v) x = round_to(type, u(rng));
  return kv;
}

// The keys of `a` followed by those of `b`, per head.
inline KvData concat(const KvData& a, const KvData& b) {
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
inline const char* layout_name(Layout l) {
  return l == Layout::blocks32 ? "blocks32" : l == Layout::ragged ? "ragged" : "single";
}

// A segment's K/V stored as a KV pool would: `blocks32` and `ragged` put every chunk in a block
// holding, per KV head, K [capacity, k] then V [capacity, k]; `single` is one chunk with
// K [g, tokens, k] followed by V [g, tokens, k].
struct StoredSegment {
  std::vector<uint8_t> bytes;
  PlannedSegment planned;
};

inline void store_row(KvType type, const float* src, int n, uint8_t* dst) {
  for (int d = 0; d < n; ++d) {
    if (type == KvType::f16) {
      uint16_t h = f32_to_f16(src[d]);
      std::memcpy(dst + 2 * d, &h, 2);
    } else {
      std::memcpy(dst + 4 * d, &src[d], 4);
    }
  }
}

inline StoredSegment store(const KvData& kv, KvType type, Layout layout, std::mt19937& rng,
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
inline void reference_row(const float* q, float scale, const std::vector<const KvData*>& parts, int kv_head,
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

inline std::vector<float> random_queries(std::mt19937& rng, int rows, int head_size, float amplitude) {
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  std::vector<float> q(std::size_t(rows) * head_size);
  for (float& x : q) x = u(rng);
  return q;
}

inline AttentionShape make_shape(int h, int g, int k, KvType type) {
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

inline std::ostream& operator<<(std::ostream& os, const DecodeCase& c) {
  return os << "h=" << c.h << " g=" << c.g << " k=" << c.k << " b=" << c.b << " m_c=" << c.m_c
            << " m_d=" << c.m_d << " kv=" << (c.type == KvType::f16 ? "f16" : "f32")
            << " layout=" << layout_name(c.layout);
}

struct DecodeData {
  AttentionShape shape;
  KvData shared;
  std::vector<KvData> leaves;
  std::vector<float> q;     // [b, h, k]
  std::vector<double> ref;  // [b, h, k]
};

inline DecodeData make_decode_data(const DecodeCase& c, std::mt19937& rng,
                                   float q_amplitude = kQueryAmplitude, float kv_amplitude = 1.0f) {
  DecodeData d{
      make_shape(c.h, c.g, c.k, c.type), random_kv(rng, c.g, c.k, c.m_c, c.type, kv_amplitude), {}, {}, {}};
  for (int s = 0; s < c.b; ++s) d.leaves.push_back(random_kv(rng, c.g, c.k, c.m_d, c.type, kv_amplitude));
  d.q = random_queries(rng, c.b * c.h, c.k, q_amplitude);
  return d;
}

inline void compute_reference(const DecodeCase& c, DecodeData& d) {
  d.ref.assign(d.q.size(), 0.0);
  const int r = c.h / c.g;
  for (int s = 0; s < c.b; ++s)
    for (int head = 0; head < c.h; ++head) {
      const std::size_t row = (std::size_t(s) * c.h + head) * c.k;
      reference_row(&d.q[row], d.shape.scale, {&d.shared, &d.leaves[std::size_t(s)]}, head / r, -1,
                    &d.ref[row]);
    }
}

// Keeps the stored segments alive as long as the plan that points into them.
struct StoredPlan {
  std::vector<StoredSegment> stored;
  AttentionPlan plan;
};

inline StoredPlan bifurcated_plan(const DecodeCase& c, const DecodeData& d, std::mt19937& rng) {
  StoredPlan p;
  std::vector<int> all(std::size_t(c.b));
  for (int s = 0; s < c.b; ++s) all[std::size_t(s)] = s;
  p.stored.push_back(store(d.shared, c.type, c.layout, rng, all));
  // Leaves use ragged blocks whatever the context layout: they grow one token at a time.
  for (int s = 0; s < c.b; ++s)
    p.stored.push_back(store(d.leaves[std::size_t(s)], c.type, Layout::ragged, rng, {s}));
  p.plan = AttentionPlan{d.shape, c.b, {}};
  for (const StoredSegment& st : p.stored) p.plan.segments.push_back(st.planned);
  return p;
}

inline StoredPlan replicated_plan(const DecodeCase& c, const DecodeData& d, std::mt19937& rng) {
  StoredPlan p;
  for (int s = 0; s < c.b; ++s)
    p.stored.push_back(store(concat(d.shared, d.leaves[std::size_t(s)]), c.type, c.layout, rng, {s}));
  p.plan = AttentionPlan{d.shape, c.b, {}};
  for (const StoredSegment& st : p.stored) p.plan.segments.push_back(st.planned);
  return p;
}

// Runs `plan` with the thread partition the engine's plans carry (kv::partition_attention).
inline std::vector<float> run_attend(const AttentionPlan& plan, const std::vector<float>& q,
                                     AttentionWorkspace& ws, ThreadPool& pool) {
  AttentionPlan partitioned = plan;
  bifurcate::kv::partition_attention(partitioned);
  std::vector<float> out(q.size(), kPoison);
  attend(partitioned, q.data(), out.data(), ws, pool);
  return out;
}

// Returns the largest of the three errors, for the summary the grid tests print.
inline double check_decode(const DecodeCase& c, ThreadPool& pool, AttentionWorkspace& ws) {
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

}  // namespace bifurcate::kernels::attention_test
