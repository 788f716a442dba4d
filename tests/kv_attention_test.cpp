// End to end: K/V written into a KvCache tree, planned by kv/ and run by
// kernels::attend / attend_causal, against a float64 softmax-attention reference
// computed here from each sequence's concatenated K/V (as the test wrote them).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kv/attention_cost.h"
#include "kv/attention_plan.h"
#include "kv/kv_cache.h"
#include "numeric_test_support.h"
#include "util/f16.h"
#include "util/thread_pool.h"

namespace bifurcate::kv {
namespace {

using kernels::KvType;

// One token's rows as stored: [layer][kv_head][head_size] floats (f16-rounded for f16).
struct TokenRows {
  std::vector<float> k, v;
};

// The KV tree under test plus the test's own record of every token it wrote.
class RecordedCache {
 public:
  RecordedCache(const KvLayout& layout, uint32_t seed) : cache(layout, std::size_t(1) << 28), rng_(seed) {}

  void append(SegmentId s, int n) {
    const KvLayout& L = cache.layout();
    std::normal_distribution<float> dist(0.f, 1.f);
    for (int t = 0; t < n; ++t) {
      KvCache::Slot slot = cache.append_token(s);
      TokenRows rows;
      for (int l = 0; l < L.n_layers; ++l) {
        for (int j = 0; j < L.n_kv_heads; ++j) {
          store_row(cache.k_row(slot, l, j), rows.k, dist);
          store_row(cache.v_row(slot, l, j), rows.v, dist);
        }
      }
      written_[s].push_back(std::move(rows));
    }
  }

  // Tokens root..s in order, from the record (not read back from the cache).
  std::vector<const TokenRows*> path(SegmentId s) const {
    std::vector<SegmentId> ids;
    for (SegmentId p = s; p != kNoSegment; p = cache.parent(p)) ids.insert(ids.begin(), p);
    std::vector<const TokenRows*> out;
    for (SegmentId p : ids) {
      auto it = written_.find(p);
      if (it == written_.end()) continue;
      for (const TokenRows& r : it->second) out.push_back(&r);
    }
    return out;
  }

  // Records a copy_path: the copy's tokens are the path's tokens.
  SegmentId copy_path(SegmentId s) {
    SegmentId copy = cache.copy_path(s);
    for (const TokenRows* r : path(s)) written_[copy].push_back(*r);
    return copy;
  }

  KvCache cache;

 private:
  template <class Dist>
  void store_row(void* row, std::vector<float>& record, Dist& dist) {
    const KvLayout& L = cache.layout();
    for (int e = 0; e < L.head_size; ++e) {
      float x = dist(rng_);
      if (L.type == KvType::f32) {
        static_cast<float*>(row)[e] = x;
      } else {
        uint16_t h = f32_to_f16(x);
        static_cast<uint16_t*>(row)[e] = h;
        x = f16_to_f32(h);
      }
      record.push_back(x);
    }
  }

  std::mt19937 rng_;
  std::map<SegmentId, std::vector<TokenRows>> written_;
};

// out[h, k] of one query row q[h, k] over `keys`, layer `layer`, in float64.
// n_keys limits the keys (causal prefill); -1 means all.
std::vector<double> reference_attention(const KvLayout& L, const kernels::AttentionShape& shape,
                                        const std::vector<const TokenRows*>& keys, int layer, const float* q,
                                        int n_keys = -1) {
  const int hs = L.head_size, group = shape.n_heads / shape.n_kv_heads;
  const std::size_t m = n_keys < 0 ? keys.size() : std::size_t(n_keys);
  std::vector<double> out(std::size_t(shape.n_heads * hs), 0.0);
  for (int h = 0; h < shape.n_heads; ++h) {
    std::size_t base = std::size_t(layer * L.n_kv_heads + h / group) * std::size_t(hs);
    std::vector<double> s(m);
    double max_s = -std::numeric_limits<double>::infinity();
    for (std::size_t t = 0; t < m; ++t) {
      double dot = 0;
      for (int e = 0; e < hs; ++e) dot += double(q[h * hs + e]) * double(keys[t]->k[base + std::size_t(e)]);
      s[t] = dot * double(shape.scale);
      max_s = std::max(max_s, s[t]);
    }
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - max_s));
    for (std::size_t t = 0; t < m; ++t) {
      for (int e = 0; e < hs; ++e) {
        out[std::size_t(h) * std::size_t(hs) + std::size_t(e)] +=
            s[t] / sum * double(keys[t]->v[base + std::size_t(e)]);
      }
    }
  }
  return out;
}

struct Case {
  int n_heads, n_kv_heads, head_size;
  KvType type;
  int block_tokens;
};

std::string describe(const Case& c) {
  return testing::PrintToString(c.n_heads) + " heads, " + testing::PrintToString(c.n_kv_heads) +
         " KV heads, head size " + testing::PrintToString(c.head_size) +
         (c.type == KvType::f32 ? ", f32" : ", f16") + ", blocks of " +
         testing::PrintToString(c.block_tokens);
}

const std::vector<Case> kCases = {
    {4, 4, 8, KvType::f32, 32},    // MHA, the test model's head size
    {8, 2, 13, KvType::f16, 7},    // GQA, awkward head size and block
    {4, 1, 64, KvType::f32, 5},    // MQA, fast-path head size, tiny blocks
    {6, 3, 128, KvType::f16, 32},  // GQA, largest fast path
};

// Runs attend on the plan of `leaves` for every layer and checks each sequence
// against the reference over its own root..leaf tokens.
void check_step(const RecordedCache& rc, const std::vector<SegmentId>& leaves,
                const kernels::AttentionShape& shape, uint32_t seed, ThreadPool& pool) {
  const KvLayout& L = rc.cache.layout();
  const std::size_t row = std::size_t(shape.n_heads) * std::size_t(shape.head_size);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> q(leaves.size() * row), out(leaves.size() * row);
  StepAttentionPlan step;
  step.build(rc.cache, leaves, shape);
  kernels::AttentionWorkspace ws;
  for (int layer = 0; layer < L.n_layers; ++layer) {
    for (float& x : q) x = dist(rng);
    std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
    kernels::attend(step.for_layer(layer), q.data(), out.data(), ws, pool);
    for (std::size_t i = 0; i < leaves.size(); ++i) {
      std::vector<double> ref = reference_attention(L, shape, rc.path(leaves[i]), layer, q.data() + i * row);
      double err = relative_error(out.data() + i * row, ref);
      EXPECT_LE(err, 1e-5) << "layer " << layer << ", sequence " << i << " of " << leaves.size();
    }
  }
}

// The cache a case runs on: two layers of its KV heads, head size, type and blocks.
KvLayout layout_for(const Case& c) {
  return KvLayout{.n_layers = 2,
                  .n_kv_heads = c.n_kv_heads,
                  .head_size = c.head_size,
                  .type = c.type,
                  .block_tokens = c.block_tokens};
}

kernels::AttentionShape shape_for(const Case& c) {
  return kernels::AttentionShape{c.n_heads, c.n_kv_heads, c.head_size, c.type,
                                 1.f / std::sqrt(float(c.head_size))};
}

TEST(KvAttention, BifurcatedAndReplicatedPlansMatchTheReference) {
  ThreadPool pool(2);
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    RecordedCache rc(layout_for(c), seed);
    SegmentId context = rc.cache.create_root();
    rc.append(context, 37);
    std::vector<int> decoded = {0, 1, 31, 5, 7};  // m_d per sample; 0 = just forked
    std::vector<SegmentId> leaves, copies;
    for (int m_d : decoded) {
      leaves.push_back(rc.cache.fork(context));
      rc.append(leaves.back(), m_d);
    }
    {
      SCOPED_TRACE("bifurcated");
      check_step(rc, leaves, shape_for(c), seed + 1, pool);
    }
    for (SegmentId leaf : leaves) copies.push_back(rc.copy_path(leaf));
    {
      SCOPED_TRACE("replicated");
      check_step(rc, copies, shape_for(c), seed + 2, pool);
    }
  }
}

TEST(KvAttention, ThreeLevelTreeMatchesTheReference) {
  ThreadPool pool(2);
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    RecordedCache rc(layout_for(c), seed);
    SegmentId system = rc.cache.create_root();
    rc.append(system, 11);
    SegmentId req_a = rc.cache.fork(system), req_b = rc.cache.fork(system);
    rc.append(req_a, 40);
    rc.append(req_b, 1);
    std::vector<SegmentId> leaves = {rc.cache.fork(req_b), rc.cache.fork(req_a), rc.cache.fork(req_a),
                                     rc.cache.fork(req_b)};
    rc.append(leaves[0], 3);
    rc.append(leaves[1], 9);
    rc.append(leaves[3], 1);  // leaves[2] stays empty
    check_step(rc, leaves, shape_for(c), seed + 3, pool);
  }
}

TEST(KvAttention, CausalPrefillOverAViewMatchesTheReference) {
  ThreadPool pool(2);
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    RecordedCache rc(layout_for(c), seed);
    const KvLayout& L = rc.cache.layout();
    SegmentId prompt = rc.cache.create_root();
    kernels::AttentionShape shape = shape_for(c);
    const std::size_t row = std::size_t(c.n_heads) * std::size_t(c.head_size);
    std::mt19937 rng(seed + 4);
    std::normal_distribution<float> dist(0.f, 1.f);
    kernels::AttentionWorkspace ws;
    // Two prefill chunks, as a model would run them: append the chunk's tokens, then attend.
    for (int chunk : {13, 20}) {
      int first = rc.cache.tokens(prompt);
      rc.append(prompt, chunk);
      std::vector<const TokenRows*> keys = rc.path(prompt);
      for (int layer = 0; layer < L.n_layers; ++layer) {
        std::vector<float> q(std::size_t(chunk) * row),
            out(q.size(), std::numeric_limits<float>::quiet_NaN());
        for (float& x : q) x = dist(rng);
        kernels::PlannedSegment segment = rc.cache.view(prompt, layer);
        partition_causal(shape, first, chunk, segment);
        kernels::attend_causal(shape, segment, first, chunk, q.data(), out.data(), ws, pool);
        for (int i = 0; i < chunk; ++i) {
          std::vector<double> ref =
              reference_attention(L, shape, keys, layer, q.data() + std::size_t(i) * row, first + i + 1);
          EXPECT_LE(relative_error(out.data() + std::size_t(i) * row, ref), 1e-5)
              << "layer " << layer << ", position " << first + i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace bifurcate::kv
