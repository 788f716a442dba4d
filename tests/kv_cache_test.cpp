// KvCache: block geometry, lazy budgeted allocation, fork/append/release
// bookkeeping, copy_path contents, and the errors of misuse.
#include "kv/kv_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kv {
namespace {

using kernels::KvType;

KvLayout small_layout(KvType type = KvType::f32, int block_tokens = 4) {
  return KvLayout{.n_layers = 3, .n_kv_heads = 2, .head_size = 5, .type = type, .block_tokens = block_tokens};
}

// The K and V rows one token holds: [layer][kv_head][head_size] each, as floats.
struct TokenRows {
  std::vector<float> k, v;
};

float read_elem(const void* row, KvType type, int e) {
  if (type == KvType::f32) return static_cast<const float*>(row)[e];
  return f16_to_f32(static_cast<const uint16_t*>(row)[e]);
}

void write_elem(void* row, KvType type, int e, float x) {
  if (type == KvType::f32) {
    static_cast<float*>(row)[e] = x;
  } else {
    static_cast<uint16_t*>(row)[e] = f32_to_f16(x);
  }
}

// Writes random rows for every (layer, kv head) of `slot` and returns them as
// stored (f16-rounded for f16), so later reads can be checked exactly.
TokenRows write_random_token(const KvCache& cache, const KvCache::Slot& slot, std::mt19937& rng) {
  const KvLayout& L = cache.layout();
  std::uniform_real_distribution<float> dist(-2.f, 2.f);
  TokenRows rows;
  for (int l = 0; l < L.n_layers; ++l) {
    for (int j = 0; j < L.n_kv_heads; ++j) {
      void* k = cache.k_row(slot, l, j);
      void* v = cache.v_row(slot, l, j);
      for (int e = 0; e < L.head_size; ++e) {
        write_elem(k, L.type, e, dist(rng));
        write_elem(v, L.type, e, dist(rng));
        rows.k.push_back(read_elem(k, L.type, e));
        rows.v.push_back(read_elem(v, L.type, e));
      }
    }
  }
  return rows;
}

std::vector<TokenRows> append_random(KvCache& cache, SegmentId s, int n, std::mt19937& rng) {
  std::vector<TokenRows> out;
  out.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) out.push_back(write_random_token(cache, cache.append_token(s), rng));
  return out;
}

// Reads token `t` of segment `s` back through view() (the kernels' path), not k_row().
TokenRows read_token_via_view(const KvCache& cache, SegmentId s, int t) {
  const KvLayout& L = cache.layout();
  TokenRows rows;
  for (int l = 0; l < L.n_layers; ++l) {
    kernels::PlannedSegment seg = cache.view(s, l);
    int chunk = 0, index = t;
    while (index >= seg.chunks[std::size_t(chunk)].tokens) index -= seg.chunks[std::size_t(chunk++)].tokens;
    const kernels::KvChunk& c = seg.chunks[std::size_t(chunk)];
    for (int j = 0; j < L.n_kv_heads; ++j) {
      std::size_t offset = std::size_t(j) * seg.head_stride + std::size_t(index) * L.row_bytes();
      const auto* k = static_cast<const uint8_t*>(c.k) + offset;
      const auto* v = static_cast<const uint8_t*>(c.v) + offset;
      for (int e = 0; e < L.head_size; ++e) {
        rows.k.push_back(read_elem(k, L.type, e));
        rows.v.push_back(read_elem(v, L.type, e));
      }
    }
  }
  return rows;
}

void expect_rows_eq(const TokenRows& got, const TokenRows& want, const std::string& where) {
  SCOPED_TRACE(where);
  ASSERT_EQ(got.k.size(), want.k.size());
  for (std::size_t i = 0; i < want.k.size(); ++i) {
    ASSERT_EQ(got.k[i], want.k[i]) << "K element " << i;
    ASSERT_EQ(got.v[i], want.v[i]) << "V element " << i;
  }
}

std::size_t stride_of(const KvLayout& L) { return (L.block_bytes() + 63) / 64 * 64; }

TEST(KvLayout, BlockGeometryMatchesTheDocumentedLayout) {
  KvLayout L{.n_layers = 4, .n_kv_heads = 3, .head_size = 13, .type = KvType::f16, .block_tokens = 32};
  EXPECT_EQ(L.run_bytes(), 32u * 13 * 2);
  EXPECT_EQ(L.head_stride(), 2u * 32 * 13 * 2);
  EXPECT_EQ(L.layer_stride(), 3u * 2 * 32 * 13 * 2);
  EXPECT_EQ(L.block_bytes(), 4u * 3 * 2 * 32 * 13 * 2);
  KvLayout bad = L;
  bad.head_size = 0;
  EXPECT_THROW(bad.validate(), Error);
  EXPECT_THROW(KvCache(bad, 1 << 20), Error);
}

TEST(KvCache, MemoryIsTakenLazily) {
  KvCache cache(small_layout(), std::size_t(1) << 30);
  EXPECT_EQ(cache.bytes_reserved(), 0u);
  SegmentId root = cache.create_root();
  EXPECT_EQ(cache.bytes_reserved(), 0u);
  cache.append_token(root);
  EXPECT_GT(cache.bytes_reserved(), 0u);
  EXPECT_LE(cache.bytes_reserved(), std::size_t(64) << 20);  // one slab, not the whole budget
  EXPECT_EQ(cache.bytes_in_use(), stride_of(cache.layout()));
}

TEST(KvCache, ForkAllocatesNothing) {
  std::mt19937 rng(1);
  KvCache cache(small_layout(), 1 << 20);
  SegmentId root = cache.create_root();
  append_random(cache, root, 6, rng);
  std::size_t in_use = cache.bytes_in_use();
  std::size_t reserved = cache.bytes_reserved();
  std::vector<SegmentId> leaves;
  leaves.reserve(50);
  for (int i = 0; i < 50; ++i) leaves.push_back(cache.fork(root));
  EXPECT_EQ(cache.bytes_in_use(), in_use);
  EXPECT_EQ(cache.bytes_reserved(), reserved);
  for (SegmentId leaf : leaves) {
    EXPECT_EQ(cache.tokens(leaf), 0);
    EXPECT_EQ(cache.n_blocks(leaf), 0);
    EXPECT_EQ(cache.path_tokens(leaf), 6);
    EXPECT_EQ(cache.parent(leaf), root);
  }
  EXPECT_EQ(cache.n_children(root), 50);
  EXPECT_TRUE(cache.is_frozen(root));
}

TEST(KvCache, AppendFillsBlocksAndSpillsAtBlockTokens) {
  std::mt19937 rng(2);
  const int bt = 4;
  KvCache cache(small_layout(KvType::f16, bt), 1 << 20);
  SegmentId s = cache.create_root();
  std::vector<uint8_t*> blocks;
  std::vector<TokenRows> written;
  for (int t = 0; t < 2 * bt + 1; ++t) {
    KvCache::Slot slot = cache.append_token(s);
    EXPECT_EQ(slot.index_in_block, t % bt) << "token " << t;
    if (t % bt == 0) blocks.push_back(slot.block);
    EXPECT_EQ(slot.block, blocks.back()) << "token " << t;
    EXPECT_EQ(cache.n_blocks(s), t / bt + 1);
    EXPECT_EQ(cache.bytes_in_use(), std::size_t(t / bt + 1) * stride_of(cache.layout()));
    written.push_back(write_random_token(cache, slot, rng));
  }
  EXPECT_NE(blocks[0], blocks[1]);
  EXPECT_NE(blocks[1], blocks[2]);
  EXPECT_EQ(cache.tokens(s), 9);
  EXPECT_EQ(cache.path_tokens(s), 9);

  for (int l = 0; l < 3; ++l) {
    kernels::PlannedSegment view = cache.view(s, l);
    ASSERT_EQ(view.chunks.size(), 3u);
    EXPECT_EQ(view.chunks[0].tokens, 4);
    EXPECT_EQ(view.chunks[1].tokens, 4);
    EXPECT_EQ(view.chunks[2].tokens, 1);
    EXPECT_EQ(view.head_stride, cache.layout().head_stride());
    EXPECT_TRUE(view.sequences.empty());
  }
  for (int t = 0; t < 9; ++t) {
    expect_rows_eq(read_token_via_view(cache, s, t), written[std::size_t(t)], "token " + std::to_string(t));
    KvCache::Slot slot = cache.slot(s, t);
    EXPECT_EQ(slot.block, blocks[std::size_t(t / bt)]);
    EXPECT_EQ(slot.index_in_block, t % bt);
  }
}

TEST(KvCache, ReleaseFreesExactlyTheUnsharedBlocks) {
  std::mt19937 rng(3);
  KvCache cache(small_layout(KvType::f32, 4), 1 << 20);
  const std::size_t block = stride_of(cache.layout());
  SegmentId root = cache.create_root();
  append_random(cache, root, 10, rng);  // 3 blocks
  SegmentId a = cache.fork(root);
  SegmentId b = cache.fork(root);
  append_random(cache, a, 5, rng);  // 2 blocks
  append_random(cache, b, 1, rng);  // 1 block
  EXPECT_EQ(cache.bytes_in_use(), 6 * block);
  EXPECT_EQ(cache.n_live_segments(), 3);

  cache.release(a);
  EXPECT_EQ(cache.bytes_in_use(), 4 * block);
  EXPECT_FALSE(cache.is_live(a));
  EXPECT_TRUE(cache.is_live(root));
  EXPECT_EQ(cache.n_children(root), 1);
  EXPECT_EQ(cache.path_tokens(b), 11);

  cache.release(b);  // the last child: the shared root goes with it
  EXPECT_EQ(cache.bytes_in_use(), 0u);
  EXPECT_FALSE(cache.is_live(b));
  EXPECT_FALSE(cache.is_live(root));
  EXPECT_EQ(cache.n_live_segments(), 0);
}

TEST(KvCache, ChurnStaysWithinBudgetAndReusesBlocks) {
  std::mt19937 rng(4);
  KvLayout L = small_layout(KvType::f16, 8);
  const std::size_t block = stride_of(L);
  // Room for the shared context (3 blocks) plus 4 live samples of up to 2 blocks each.
  KvCache cache(L, 11 * block);
  SegmentId context = cache.create_root();
  append_random(cache, context, 20, rng);
  std::vector<SegmentId> live;
  for (int round = 0; round < 200; ++round) {
    if (live.size() == 4) {  // a sample finishes, a new one starts
      cache.release(live[std::size_t(round) % 4]);
      live.erase(live.begin() + round % 4);
    }
    SegmentId leaf = cache.fork(context);
    append_random(cache, leaf, 1 + round % 16, rng);
    live.push_back(leaf);
    ASSERT_LE(cache.bytes_in_use(), cache.budget_bytes());
    ASSERT_LE(cache.bytes_reserved(), cache.budget_bytes());
  }
  EXPECT_EQ(cache.n_live_segments(), 5);
  EXPECT_TRUE(cache.is_live(context));
  for (SegmentId leaf : live) cache.release(leaf);
  EXPECT_EQ(cache.bytes_in_use(), 0u);
  EXPECT_EQ(cache.n_live_segments(), 0);
}

TEST(KvCache, CopyPathCopiesEveryKvByteOfThePath) {
  for (KvType type : {KvType::f32, KvType::f16}) {
    SCOPED_TRACE(type == KvType::f32 ? "f32" : "f16");
    std::mt19937 rng(5);
    KvCache cache(small_layout(type, 4), 1 << 20);
    // Ragged segments so copied runs cross block boundaries at different offsets.
    SegmentId root = cache.create_root();
    std::vector<TokenRows> path = append_random(cache, root, 6, rng);
    SegmentId mid = cache.fork(root);
    std::vector<TokenRows> more = append_random(cache, mid, 3, rng);
    path.insert(path.end(), more.begin(), more.end());
    SegmentId other = cache.fork(root);
    append_random(cache, other, 7, rng);  // a sibling branch: must not be copied
    SegmentId leaf = cache.fork(mid);
    more = append_random(cache, leaf, 5, rng);
    path.insert(path.end(), more.begin(), more.end());

    std::size_t in_use = cache.bytes_in_use();
    SegmentId copy = cache.copy_path(leaf);
    EXPECT_EQ(cache.parent(copy), kNoSegment);
    EXPECT_EQ(cache.tokens(copy), 14);
    EXPECT_EQ(cache.path_tokens(copy), 14);
    EXPECT_EQ(cache.n_blocks(copy), 4);
    EXPECT_EQ(cache.bytes_in_use(), in_use + 4 * stride_of(cache.layout()));
    for (int t = 0; t < 14; ++t) {
      expect_rows_eq(read_token_via_view(cache, copy, t), path[std::size_t(t)], "token " + std::to_string(t));
    }
    // The copy is private: it grows, and releasing the original leaves it intact.
    TokenRows extra = write_random_token(cache, cache.append_token(copy), rng);
    cache.release(leaf);
    cache.release(other);
    EXPECT_FALSE(cache.is_live(root));
    for (int t = 0; t < 14; ++t)
      expect_rows_eq(read_token_via_view(cache, copy, t), path[std::size_t(t)], "after");
    expect_rows_eq(read_token_via_view(cache, copy, 14), extra, "appended");
    cache.release(copy);
    EXPECT_EQ(cache.bytes_in_use(), 0u);
  }
}

TEST(KvCache, CopyPathPrefixCopiesTheFirstTokensIntoAnotherCache) {
  std::mt19937 rng(9);
  const KvLayout layout = small_layout(KvType::f16, 4);
  KvCache source(layout, 1 << 20);
  SegmentId root = source.create_root();
  std::vector<TokenRows> path = append_random(source, root, 6, rng);
  SegmentId leaf = source.fork(root);
  std::vector<TokenRows> more = append_random(source, leaf, 7, rng);
  path.insert(path.end(), more.begin(), more.end());
  const std::size_t source_bytes = source.bytes_in_use();

  KvCache dst(layout, 1 << 20);
  for (int n : {0, 5, 6, 9, 13}) {  // inside the root, at its end, across the fork, the whole path
    SCOPED_TRACE("n = " + std::to_string(n));
    SegmentId copy = dst.copy_path_prefix(source, leaf, n);
    EXPECT_EQ(dst.parent(copy), kNoSegment);
    EXPECT_EQ(dst.tokens(copy), n);
    EXPECT_EQ(dst.bytes_in_use(), std::size_t((n + 3) / 4) * stride_of(layout));
    for (int t = 0; t < n; ++t)
      expect_rows_eq(read_token_via_view(dst, copy, t), path[std::size_t(t)], "token " + std::to_string(t));
    dst.release(copy);
  }
  EXPECT_EQ(dst.bytes_in_use(), 0u);
  EXPECT_EQ(source.bytes_in_use(), source_bytes);  // the source is only read
  EXPECT_THROW(dst.copy_path_prefix(source, leaf, 14), Error);  // more than the path holds
  KvCache other_layout(small_layout(KvType::f32, 4), 1 << 20);
  EXPECT_THROW(other_layout.copy_path_prefix(source, leaf, 3), Error);
}

TEST(KvCache, BudgetRefusalNamesNeededBytesAndBudget) {
  KvLayout L = small_layout(KvType::f32, 4);
  const std::size_t block = stride_of(L);
  const std::size_t budget = 3 * block + 10;  // three whole blocks fit
  KvCache cache(L, budget);
  try {
    cache.check_budget(100, 1);  // 25 blocks
    FAIL() << "expected a budget error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("KV cache budget exceeded"), std::string::npos) << msg;
    EXPECT_NE(msg.find("need " + std::to_string(25 * block) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("budget " + std::to_string(budget) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GiB"), std::string::npos) << msg;
  }
  EXPECT_EQ(cache.bytes_reserved(), 0u);  // refusing allocated nothing
  EXPECT_NO_THROW(cache.check_budget(12, 1));
  EXPECT_NO_THROW(cache.check_budget(3, 3));
  EXPECT_NO_THROW(cache.check_budget(5, 3));      // worst split 2+2+1: 3 blocks
  EXPECT_THROW(cache.check_budget(4, 4), Error);  // 1+1+1+1: 4 blocks
  EXPECT_THROW(cache.check_budget(13, 1), Error);
  EXPECT_NO_THROW(cache.check_budget_per_segment(4, 3));
  EXPECT_THROW(cache.check_budget_per_segment(5, 2), Error);

  SegmentId s = cache.create_root();
  for (int t = 0; t < 12; ++t) cache.append_token(s);
  EXPECT_THROW(cache.append_token(s), Error);  // the 13th token needs a 4th block
  EXPECT_EQ(cache.tokens(s), 12);              // the failed append changed nothing
  EXPECT_EQ(cache.bytes_in_use(), 3 * block);
  EXPECT_LE(cache.bytes_reserved(), budget);
  EXPECT_THROW(cache.check_budget(1, 1), Error);
  EXPECT_THROW(cache.copy_path(s), Error);
  EXPECT_EQ(cache.n_live_segments(), 1);
  EXPECT_EQ(cache.bytes_in_use(), 3 * block);
}

TEST(KvCache, AppendTokensIsAllOrNothing) {
  std::mt19937 rng(6);
  KvLayout L = small_layout(KvType::f32, 4);
  KvCache cache(L, 3 * stride_of(L));
  SegmentId s = cache.create_root();
  cache.append_token(s);
  std::vector<KvCache::Slot> slots;
  EXPECT_THROW(cache.append_tokens(s, 12, slots), Error);  // 13 tokens need 4 blocks
  EXPECT_EQ(cache.tokens(s), 1);
  EXPECT_EQ(cache.n_blocks(s), 1);
  cache.append_tokens(s, 11, slots);  // exactly fills 3 blocks
  ASSERT_EQ(slots.size(), 11u);
  for (int i = 0; i < 11; ++i) {
    KvCache::Slot want = cache.slot(s, i + 1);
    EXPECT_EQ(slots[std::size_t(i)].block, want.block) << i;
    EXPECT_EQ(slots[std::size_t(i)].index_in_block, want.index_in_block) << i;
  }
  TokenRows rows = write_random_token(cache, slots[6], rng);
  expect_rows_eq(read_token_via_view(cache, s, 7), rows, "token 7");
  // A moved cache keeps its blocks where they were.
  KvCache moved = std::move(cache);
  expect_rows_eq(read_token_via_view(moved, s, 7), rows, "token 7 after move");
  EXPECT_EQ(moved.bytes_in_use(), 3 * stride_of(L));
}

// Calls f(split) for every way to write `total` as an ordered sum of n
// non-negative parts.
template <class F>
void for_each_split(int total, int n, std::vector<int>& split, const F& f) {
  if (int(split.size()) == n - 1) {
    split.push_back(total);
    f(split);
    split.pop_back();
    return;
  }
  for (int first = 0; first <= total; ++first) {
    split.push_back(first);
    for_each_split(total - first, n, split, f);
    split.pop_back();
  }
}

TEST(KvCache, CheckBudgetIsSafeForAnySplit) {
  // For EVERY way to spread T tokens over n fresh segments (blocks of 4
  // tokens) that check_budget admits, appending them must succeed: uneven
  // splits (5+1: 3 blocks) need more than even ones (3+3: 2 blocks).
  KvLayout L = small_layout(KvType::f32, 4);
  int admitted_splits = 0;
  for (int capacity = 1; capacity <= 6; ++capacity) {
    for (int n = 1; n <= 4; ++n) {
      for (int total = 0; total <= 14; ++total) {
        KvCache probe(L, std::size_t(capacity) * stride_of(L));
        bool admitted = true;
        try {
          probe.check_budget(total, n);
        } catch (const Error&) {
          admitted = false;
        }
        if (!admitted) continue;
        std::vector<int> prefix;
        for_each_split(total, n, prefix, [&](const std::vector<int>& split) {
          ++admitted_splits;
          KvCache cache(L, std::size_t(capacity) * stride_of(L));
          for (int count : split) {
            SegmentId s = cache.create_root();
            for (int t = 0; t < count; ++t) {
              ASSERT_NO_THROW(cache.append_token(s))
                  << "capacity " << capacity << " blocks, split " << ::testing::PrintToString(split);
            }
          }
        });
      }
    }
  }
  EXPECT_GT(admitted_splits, 1000);
}

TEST(KvCache, MisuseIsAnErrorNamingTheSegment) {
  KvCache cache(small_layout(), 1 << 20);
  SegmentId root = cache.create_root();
  cache.append_token(root);
  SegmentId leaf = cache.fork(root);
  try {
    cache.append_token(root);
    FAIL() << "appending to a forked segment must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("segment " + std::to_string(root)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("frozen"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.tokens(root), 1);
  EXPECT_THROW(cache.release(root), Error);  // not a leaf
  EXPECT_THROW(cache.tokens(12345), Error);
  EXPECT_THROW(cache.fork(-1), Error);
  EXPECT_THROW(cache.view(leaf, 3), Error);  // 3 layers: 0..2
  EXPECT_THROW(cache.slot(root, 1), Error);
  KvCache::Slot slot = cache.slot(root, 0);
  EXPECT_THROW(cache.k_row(slot, 0, 2), Error);  // 2 KV heads: 0..1
  EXPECT_THROW(cache.check_budget(-1, 1), Error);
  cache.release(leaf);
  EXPECT_THROW(cache.release(leaf), Error);       // already released
  EXPECT_THROW(cache.append_token(root), Error);  // freed with its last child
  // A released id stays invalid after its table entry is reused by a new segment.
  SegmentId reused = cache.create_root();
  EXPECT_NE(reused, leaf);
  EXPECT_NE(reused, root);
  EXPECT_FALSE(cache.is_live(leaf));
  EXPECT_FALSE(cache.is_live(root));
  EXPECT_THROW(cache.append_token(leaf), Error);
  EXPECT_THROW(cache.append_token(root), Error);
  EXPECT_NO_THROW(cache.append_token(reused));
}

}  // namespace
}  // namespace bifurcate::kv
