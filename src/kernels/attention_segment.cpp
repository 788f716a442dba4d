#include "kernels/attention_segment.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/attention_lanes.h"
#include "kernels/attention_microkernels.h"
#include "kernels/attention_rows.h"
#include "kernels/attention_simd.h"
#include "kernels/attention_state.h"
#include "util/f16.h"
#include "kernels/isa_entry_points.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE {
namespace {

constexpr int kTile = kSegmentTileTokens;
// Up to this many stacked rows take the head-dims-in-lanes kernel (attention_rows.h); more
// take Lanes16, whose broadcast K loads amortise its tile conversion over 16-row groups.
[[maybe_unused]] constexpr int kRowsPathMaxRows = 16;  // AVX-512 paths only

int padded_size(int head_size) { return (head_size + 7) / 8 * 8; }

// Rows [first, first + n) of one KV head of a segment, as stored: K and V rows
// of head_size elements of the segment's KvType, contiguous inside one chunk.
struct TileSource {
  const char* k = nullptr;
  const char* v = nullptr;
  int n = 0;
  int first = 0;
};

// Walks a segment's key range [begin, end) in tiles of at most kTile keys that
// never cross a chunk boundary.
class TileWalk {
 public:
  TileWalk(const AttentionShape& shape, const SegmentKeys& keys, int end)
      : chunks_(keys.chunks),
        head_offset_(std::size_t(keys.kv_head) * keys.head_stride),
        row_bytes_(std::size_t(shape.head_size) * kv_type_bytes(shape.kv_type)),
        position_(keys.begin),
        end_(end) {}

  // The next tile; n == 0 once the range is done.
  TileSource next() {
    while (chunk_ < chunks_.size() && chunk_first_ < end_) {
      const KvChunk& chunk = chunks_[chunk_];
      const int lo = std::max(position_, chunk_first_), hi = std::min(chunk_first_ + chunk.tokens, end_);
      if (lo < hi) {
        const int n = std::min(kTile, hi - lo);
        const std::size_t offset = head_offset_ + std::size_t(lo - chunk_first_) * row_bytes_;
        position_ = lo + n;
        return {static_cast<const char*>(chunk.k) + offset, static_cast<const char*>(chunk.v) + offset, n, lo};
      }
      chunk_first_ += chunk.tokens;
      ++chunk_;
    }
    return {};
  }

 private:
  std::span<const KvChunk> chunks_;
  std::size_t head_offset_;
  std::size_t row_bytes_;
  int position_;
  int end_;
  std::size_t chunk_ = 0;
  int chunk_first_ = 0;  // segment position of chunk_'s first token
};

// Software prefetch of the NEXT tile's K then V bytes, issued a few lines at a
// time while the current tile computes, so the DRAM reads overlap arithmetic
// instead of stalling the next tile's first loads.
class NextTilePrefetch {
 public:
  NextTilePrefetch(const TileSource& next, std::size_t row_bytes)
      : k_(next.k), v_(next.v), lines_each_((std::size_t(next.n) * row_bytes + 63) / 64) {}

  std::size_t total_lines() const { return 2 * lines_each_; }

  // Two plain loops (K lines, then V lines): a select per line made this
  // loop cost as many instructions as the one-row kernel's arithmetic.
  void issue(std::size_t lines) {
    const std::size_t stop = std::min(issued_ + lines, total_lines());
    for (const std::size_t k_stop = std::min(stop, lines_each_); issued_ < k_stop; ++issued_)
      simd::prefetch(k_ + 64 * issued_);
    for (; issued_ < stop; ++issued_) simd::prefetch(v_ + 64 * (issued_ - lines_each_));
  }

 private:
  const char* k_;
  const char* v_;
  std::size_t lines_each_;
  std::size_t issued_ = 0;
};

// One tile of keys as f32 rows of stride ld (a multiple of 8; columns past
// head_size are zero). `first` is the segment position of row 0.
struct Tile {
  const float* k;
  const float* v;
  int ld;
  int n;
  int first;
  bool lone_last = false;  // paired tiles: the last pair has no second key
};

// Converts (or, for f32 rows already SIMD-friendly, points at) a tile's K and V rows.
Tile load_tile(const AttentionShape& shape, const TileSource& src, SegmentScratch& s) {
  const int k = shape.head_size, ld = padded_size(k), n = src.n;
  if (shape.kv_type == KvType::f32 && k == ld)
    return Tile{reinterpret_cast<const float*>(src.k), reinterpret_cast<const float*>(src.v), ld, n, src.first};
  auto convert = [&](const char* base, float* dst) {
    for (int t = 0; t < n; ++t) {
      float* row = dst + std::size_t(t) * ld;
      const std::size_t src_row = std::size_t(t) * k;
      if (shape.kv_type == KvType::f16) {
        f16_to_f32_row(reinterpret_cast<const uint16_t*>(base) + src_row, row, std::size_t(k));
      } else {
        std::memcpy(row, reinterpret_cast<const float*>(base) + src_row, sizeof(float) * k);
      }
      std::fill(row + k, row + ld, 0.0f);
    }
  };
  convert(src.k, s.k_tile.data());
  convert(src.v, s.v_tile.data());
  return Tile{s.k_tile.data(), s.v_tile.data(), ld, n, src.first};
}

#ifdef __AVX512F__
// A tile as lanes::Pairs16 reads it: pair p holds keys p and p + half
// interleaved, {x[p][0], x[p + half][0], x[p][1], ...} (rows of 2k floats);
// an odd tile's last pair gets zeros as its second key. Needs k % 8 == 0.
Tile load_tile_pairs(const AttentionShape& shape, const TileSource& src, SegmentScratch& s) {
  const int k = shape.head_size, half = (src.n + 1) / 2;
  const std::size_t row_bytes = std::size_t(k) * kv_type_bytes(shape.kv_type);
  auto load8 = [&](const char* row, int d) {
    if (row == nullptr) return _mm256_setzero_ps();
    return shape.kv_type == KvType::f16 ? simd::load_f16(reinterpret_cast<const uint16_t*>(row) + d)
                                        : _mm256_loadu_ps(reinterpret_cast<const float*>(row) + d);
  };
  auto load16 = [&](const char* row, int d) {
    if (row == nullptr) return _mm512_setzero_ps();
    return shape.kv_type == KvType::f16
               ? _mm512_maskz_cvtph_ps(simd::kAll16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                                         reinterpret_cast<const uint16_t*>(row) + d)))
               : _mm512_loadu_ps(reinterpret_cast<const float*>(row) + d);
  };
  const __m512i interleave_lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i interleave_hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  auto convert = [&](const char* base, float* dst) {
    for (int p = 0; p < half; ++p) {
      const char* a = base + std::size_t(p) * row_bytes;
      const char* b = p + half < src.n ? base + std::size_t(p + half) * row_bytes : nullptr;
      float* out = dst + std::size_t(p) * 2 * std::size_t(k);
      int d = 0;
      for (; d + 16 <= k; d += 16) {  // 16 of each row -> 32 interleaved floats
        const __m512 x = load16(a, d), y = load16(b, d);
        _mm512_store_ps(out + 2 * d, _mm512_permutex2var_ps(x, interleave_lo, y));
        _mm512_store_ps(out + 2 * d + 16, _mm512_permutex2var_ps(x, interleave_hi, y));
      }
      for (; d < k; d += 8) {
        const __m256 x = load8(a, d), y = load8(b, d);
        const __m256 lo = _mm256_unpacklo_ps(x, y), hi = _mm256_unpackhi_ps(x, y);  // per 128-bit lane
        _mm256_store_ps(out + 2 * d, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_store_ps(out + 2 * d + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
      }
    }
  };
  convert(src.k, s.k_tile.data());
  convert(src.v, s.v_tile.data());
  return Tile{s.k_tile.data(), s.v_tile.data(), 2 * k, half, src.first, src.n % 2 == 1};
}
#endif

// Online softmax for one row over one tile (the one-row path): turns the row's scores into
// probabilities relative to the new running max and rescales the row's state.
void softmax_row(float* scores, int n, float* row_max, float* row_sum, float* acc, int ld) {
  const int n8 = (n + 7) / 8 * 8;
  const float neg_inf = kEmptyLse;
  std::fill(scores + n, scores + n8, neg_inf);  // padded lanes contribute exp(-inf) = 0
  __m256 vmax = _mm256_set1_ps(neg_inf);
  for (int t = 0; t < n8; t += 8) vmax = _mm256_max_ps(vmax, _mm256_load_ps(scores + t));
  const float m_new = std::max(*row_max, simd::hmax(vmax));
  if (m_new == neg_inf) {  // every key so far masked: nothing to add
    std::fill(scores, scores + n8, 0.0f);
    return;
  }
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 vsum = _mm256_setzero_ps();
  for (int t = 0; t < n8; t += 8) {
    __m256 p = simd::exp(_mm256_sub_ps(_mm256_load_ps(scores + t), vm));
    _mm256_store_ps(scores + t, p);
    vsum = _mm256_add_ps(vsum, p);
  }
  if (m_new != *row_max) {
    const float alpha = std::exp(*row_max - m_new);  // 0 when the row had no keys yet
    const __m256 va = _mm256_set1_ps(alpha);
    for (int d = 0; d < ld; d += 8) _mm256_store_ps(acc + d, _mm256_mul_ps(va, _mm256_load_ps(acc + d)));
    *row_sum *= alpha;
  }
  *row_sum += simd::hsum(vsum);
  *row_max = m_new;
}

// Lane-group view of the stacked rows (attention_lanes.h): `groups` groups of L::kWidth rows.
template <class L>
struct LaneGroups {
  int groups;
  int k;
  std::size_t stride() const { return std::size_t(k) * L::kWidth; }  // floats of qt / ot per group
};

// Does any row of group g see a key at or past tile_first? (always, without causal limits)
template <class L>
bool group_active(const SegmentScratch& s, bool causal, int g, int tile_first) {
  if (!causal) return true;
  for (int lane = 0; lane < L::kWidth; ++lane)
    if (s.key_end[std::size_t(g) * L::kWidth + std::size_t(lane)] > float(tile_first)) return true;
  return false;
}

// Scores, softmax and P.V of groups [g, g + G) against one converted tile.
template <class L, int G, class Between>
void process_groups(const Tile& tile, LaneGroups<L> lg, bool causal, int g, SegmentScratch& s,
                    Between&& between_blocks) {
  const lanes::Groups<G> state_groups{lg.stride()}, score_groups{std::size_t(kTile) * L::kWidth};
  const float* qt = s.q.data() + std::size_t(g) * lg.stride();
  float* ot = s.acc.data() + std::size_t(g) * lg.stride();
  lanes::score_tile<L, G>(qt, state_groups, tile.k, tile.ld, tile.n, lg.k, s.scores.data(), score_groups,
                          between_blocks);
  for (int i = 0; i < G; ++i) {
    float* st = s.scores.data() + i * score_groups.stride;
    if (tile.lone_last) {  // the missing second key of the last pair: odd lanes see -inf
      float* last = st + std::size_t(tile.n - 1) * L::kWidth;
      for (int lane = 1; lane < L::kWidth; lane += 2) last[lane] = kEmptyLse;
    }
    const std::size_t lane0 = std::size_t(g + i) * L::kWidth;
    if (causal) lanes::mask_tile<L>(s.key_end.data() + lane0, tile.first, tile.n, st);
    lanes::softmax_tile<L>(st, tile.n, lg.k, s.row_max.data() + lane0, s.row_sum.data() + lane0,
                           ot + i * state_groups.stride);
  }
  lanes::accumulate_tile<L, G>(s.scores.data(), score_groups, tile.v, tile.ld, tile.n, lg.k, ot, state_groups,
                               between_blocks);
}

// Every active lane group against one converted tile, L::kPairGroups at a
// time where they are all active; the next tile's prefetch is spread evenly
// over the register blocks.
template <class L>
void process_tile_lanes(const Tile& tile, LaneGroups<L> lg, bool causal, SegmentScratch& s,
                        NextTilePrefetch& prefetch) {
  constexpr int kPair = L::kPairGroups;
  // A few lines after every register block: a burst of hundreds of prefetches
  // would fill the miss queue and stall the loads of the tile being computed.
  const std::size_t blocks = std::size_t(lg.groups / kPair) * std::size_t(lanes::blocks_per_tile<L, kPair>(tile.n, lg.k)) +
                             std::size_t(lg.groups % kPair) * std::size_t(lanes::blocks_per_tile<L, 1>(tile.n, lg.k));
  const std::size_t lines_per_block = (prefetch.total_lines() + blocks - 1) / blocks;
  auto between_blocks = [&] { prefetch.issue(lines_per_block); };
  auto active = [&](int g) { return group_active<L>(s, causal, g, tile.first); };
  int g = 0;
  if constexpr (kPair == 2) {
    for (; g + 2 <= lg.groups; g += 2) {
      if (active(g) && active(g + 1)) {
        process_groups<L, 2>(tile, lg, causal, g, s, between_blocks);
      } else {
        for (int i = g; i < g + 2; ++i)
          if (active(i)) process_groups<L, 1>(tile, lg, causal, i, s, between_blocks);
      }
    }
  }
  for (; g < lg.groups; ++g)
    if (active(g)) process_groups<L, 1>(tile, lg, causal, g, s, between_blocks);
  prefetch.issue(prefetch.total_lines());  // whatever inactive groups or short blocks left
}

// Lanes per stacked row: 2 for Pairs16 (one per key half), else 1.
template <class L>
constexpr int kLanesPerRow = L::kKeyStep;

// Transposes the scaled queries into lane groups and clears the running state.
// Pad lanes get q = 0 and (causal) key_end = 0, so they see no key at all.
template <class L>
LaneGroups<L> prepare_lanes(const AttentionShape& shape, const StackedQueries& queries, SegmentScratch& s) {
  const int k = shape.head_size, W = L::kWidth, rows_per_group = W / kLanesPerRow<L>;
  const LaneGroups<L> lg{(queries.n_rows + rows_per_group - 1) / rows_per_group, k};
  const std::size_t lanes_total = std::size_t(lg.groups) * std::size_t(W);
  s.q.resize(std::size_t(lg.groups) * lg.stride());
  s.acc.resize(s.q.size());
  s.scores.resize(std::size_t(kTile) * std::size_t(W) * L::kPairGroups);
  s.row_max.resize(lanes_total);
  s.row_sum.resize(lanes_total);
  s.key_end.resize(lanes_total);
  s.k_tile.resize(std::size_t(kTile) * std::size_t(padded_size(k)));
  s.v_tile.resize(s.k_tile.size());
  std::fill(s.q.begin(), s.q.end(), 0.0f);
  std::fill(s.key_end.begin(), s.key_end.end(), 0.0f);
  for (int r = 0; r < queries.n_rows; ++r) {
    const std::size_t lane0 = std::size_t(r % rows_per_group) * kLanesPerRow<L>;
    float* qt = s.q.data() + std::size_t(r / rows_per_group) * lg.stride() + lane0;
    for (int d = 0; d < k; ++d)
      for (int h = 0; h < kLanesPerRow<L>; ++h) qt[std::size_t(d) * W + std::size_t(h)] = shape.scale * queries.rows[r][d];
    if (queries.key_end != nullptr) s.key_end[std::size_t(r)] = float(queries.key_end[r]);  // (Pairs16: never causal)
  }
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  std::fill(s.row_max.begin(), s.row_max.end(), kEmptyLse);
  std::fill(s.row_sum.begin(), s.row_sum.end(), 0.0f);
  return lg;
}

// One row, f16 K/V, head_size a multiple of 8: the GEMV regime. K and V are
// read once straight from the KV memory (no f32 tile), which makes this
// memory-bound: the next tile is prefetched along with the score pass.
bool single_row_path(const AttentionShape& shape, const StackedQueries& queries) {
  return queries.n_rows == 1 && queries.key_end == nullptr && shape.kv_type == KvType::f16 &&
         shape.head_size % 8 == 0;
}

void process_tile_single(const TileSource& src, int k, SegmentScratch& s, NextTilePrefetch& prefetch) {
  const auto* keys = reinterpret_cast<const uint16_t*>(src.k);
  float* scores = s.scores.data();
  // The next tile's K and V, spread evenly over every 8 keys of the score pass
  // and of each 64-column P.V pass: bursts of 64 prefetches per 8 keys (all
  // in the score pass) left the loads waiting for miss buffers.
  const std::size_t passes = 1 + std::size_t(k / 64);
  const std::size_t lines_per_key =
      (prefetch.total_lines() + passes * std::size_t(src.n) - 1) / (passes * std::size_t(src.n));
  const auto every_8_keys = [&] { prefetch.issue(8 * lines_per_key); };
  int t = 0;
  for (; t + 8 <= src.n; t += 8) {
    every_8_keys();
    micro::score_single_8(s.q.data(), keys + std::size_t(t) * k, k, scores + t);
  }
  for (; t < src.n; ++t) scores[t] = micro::score_single_1(s.q.data(), keys + std::size_t(t) * k, k);
  softmax_row(scores, src.n, &s.row_max[0], &s.row_sum[0], s.acc.data(), k);
  micro::accumulate_single(scores, reinterpret_cast<const uint16_t*>(src.v), k, src.n, s.acc.data(), every_8_keys);
  prefetch.issue(prefetch.total_lines());
}

// The plain-row layout of the one-row and rows paths: q and acc (rows, k),
// scores (rows, kTile), running max / sum per row; queries scaled, state empty.
void prepare_plain_rows(const AttentionShape& shape, const StackedQueries& queries, SegmentScratch& s) {
  const int k = shape.head_size, R = queries.n_rows;
  const std::size_t row_floats = std::size_t(R) * std::size_t(k);
  s.q.resize(row_floats);
  s.acc.resize(row_floats);
  s.scores.resize(std::size_t(R) * kTile);
  s.row_max.resize(std::size_t(R));
  s.row_sum.resize(std::size_t(R));
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < k; ++d) s.q[std::size_t(r) * k + std::size_t(d)] = shape.scale * queries.rows[r][d];
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  std::fill(s.row_max.begin(), s.row_max.end(), kEmptyLse);
  std::fill(s.row_sum.begin(), s.row_sum.end(), 0.0f);
}

// Walks the tiles of [keys.begin, end), prefetching one ahead, calling process(tile, prefetch).
template <class Process>
void for_each_tile(const AttentionShape& shape, const SegmentKeys& keys, int end, Process&& process) {
  const std::size_t row_bytes = std::size_t(shape.head_size) * kv_type_bytes(shape.kv_type);
  TileWalk walk(shape, keys, end);
  for (TileSource tile = walk.next(), next; tile.n > 0; tile = next) {
    next = walk.next();
    NextTilePrefetch prefetch(next, row_bytes);
    process(tile, prefetch);
  }
}

// Normalised output and LSE of row r from its running state; o(d) reads the accumulator.
template <class Acc>
void finish_row(float row_max, float row_sum, int k, Acc&& o, float* out, float* lse) {
  if (row_sum == 0.0f) {  // saw no key: the empty state
    std::fill(out, out + k, 0.0f);
    *lse = kEmptyLse;
    return;
  }
  const float inv = 1.0f / row_sum;
  for (int d = 0; d < k; ++d) out[d] = o(d) * inv;
  *lse = row_max + std::log(row_sum);
}

// finish_row for every row of the plain-row layout (prepare_plain_rows).
void finish_plain_rows(int k, int rows, const SegmentScratch& s, float* out, float* lse) {
  for (int r = 0; r < rows; ++r) {
    const float* o = s.acc.data() + std::size_t(r) * k;
    finish_row(s.row_max[std::size_t(r)], s.row_sum[std::size_t(r)], k, [&](int d) { return o[d]; },
               out + std::size_t(r) * k, lse + r);
  }
}

template <class L>
void attend_lanes(const AttentionShape& shape, const SegmentKeys& keys, const StackedQueries& queries, int end,
                  float* out, float* lse, SegmentScratch& s) {
  const LaneGroups<L> lg = prepare_lanes<L>(shape, queries, s);
  const bool causal = queries.key_end != nullptr;
  for_each_tile(shape, keys, end, [&](const TileSource& tile, NextTilePrefetch& prefetch) {
#ifdef __AVX512F__
    if constexpr (kLanesPerRow<L> == 2) {
      process_tile_lanes<L>(load_tile_pairs(shape, tile, s), lg, causal, s, prefetch);
      return;
    }
#endif
    process_tile_lanes<L>(load_tile(shape, tile, s), lg, causal, s, prefetch);
  });
  const int k = shape.head_size, W = L::kWidth, rows_per_group = W / kLanesPerRow<L>;
  for (int r = 0; r < queries.n_rows; ++r) {
    const std::size_t lane0 = std::size_t(r % rows_per_group) * kLanesPerRow<L>;
    const std::size_t group = std::size_t(r / rows_per_group);
    const float* ot = s.acc.data() + group * lg.stride() + lane0;
    const float* m = s.row_max.data() + group * W + lane0;
    const float* l = s.row_sum.data() + group * W + lane0;
    // A row's lanes hold disjoint key sets: merge their (m, l, o) relative to the larger max.
    float row_max = kEmptyLse;
    for (int h = 0; h < kLanesPerRow<L>; ++h) row_max = std::max(row_max, m[h]);
    float weight[kLanesPerRow<L>], row_sum = 0.0f;
    for (int h = 0; h < kLanesPerRow<L>; ++h) {
      weight[h] = m[h] == kEmptyLse ? 0.0f : std::exp(m[h] - row_max);
      row_sum += weight[h] * l[h];
    }
    finish_row(row_max, row_sum, k, [&](int d) {
      float o = 0.0f;
      for (int h = 0; h < kLanesPerRow<L>; ++h) o += weight[h] * ot[std::size_t(d) * W + std::size_t(h)];
      return o;
    }, out + std::size_t(r) * k, lse + r);
  }
}

#ifdef __AVX512F__
// Stacked rows with head dimensions in lanes (attention_rows.h): K and V read
// straight from the KV memory, no converted tile. Non-causal, k % 16 == 0.
bool rows_path(const AttentionShape& shape, const StackedQueries& queries) {
  return queries.key_end == nullptr && shape.head_size % 16 == 0 && queries.n_rows <= kRowsPathMaxRows;
}

template <class T>
void attend_rows(const AttentionShape& shape, const SegmentKeys& keys, const StackedQueries& queries, int end,
                 float* out, float* lse, SegmentScratch& s) {
  const int k = shape.head_size, R = queries.n_rows;
  prepare_plain_rows(shape, queries, s);
  for_each_tile(shape, keys, end, [&](const TileSource& tile, NextTilePrefetch& prefetch) {
    const std::size_t blocks = std::size_t(rows::blocks_per_tile(R, tile.n, k));
    const std::size_t lines_per_block = (prefetch.total_lines() + blocks - 1) / blocks;
    auto between_blocks = [&] { prefetch.issue(lines_per_block); };
    rows::score_tile(s.q.data(), R, reinterpret_cast<const T*>(tile.k), k, tile.n, s.scores.data(), kTile,
                     between_blocks);
    for (int r = 0; r < R; ++r)
      rows::softmax_row(s.scores.data() + std::size_t(r) * kTile, tile.n, &s.row_max[std::size_t(r)],
                        &s.row_sum[std::size_t(r)], s.acc.data() + std::size_t(r) * k, k);
    rows::accumulate_tile(s.scores.data(), R, kTile, reinterpret_cast<const T*>(tile.v), k, tile.n, s.acc.data(),
                          between_blocks);
    prefetch.issue(prefetch.total_lines());
  });
  finish_plain_rows(k, R, s, out, lse);
}
#endif

}  // namespace

void attend_segment(const AttentionShape& shape, const SegmentKeys& keys,
                    const StackedQueries& queries, float* out, float* lse, SegmentScratch& s) {
  assert(shape.head_size >= 1 && queries.n_rows >= 0 && keys.begin <= keys.end);
  int end = keys.end;  // no row sees keys at or past this position
  if (queries.key_end != nullptr) {
    end = 0;
    for (int r = 0; r < queries.n_rows; ++r) end = std::max(end, queries.key_end[r]);
    end = std::min(end, keys.end);
  }
  if (single_row_path(shape, queries)) {
    prepare_plain_rows(shape, queries, s);
    for_each_tile(shape, keys, end, [&](const TileSource& tile, NextTilePrefetch& prefetch) {
      process_tile_single(tile, shape.head_size, s, prefetch);
    });
    finish_plain_rows(shape.head_size, 1, s, out, lse);
    return;
  }
#ifdef __AVX512F__
  if (rows_path(shape, queries)) {
    if (shape.kv_type == KvType::f16) {
      attend_rows<uint16_t>(shape, keys, queries, end, out, lse, s);
    } else {
      attend_rows<float>(shape, keys, queries, end, out, lse, s);
    }
    return;
  }
  // 512-bit lanes: 16 rows per group, or up to 8 rows twice over (key halves).
  if (queries.n_rows > lanes::Lanes8::kWidth) {
    attend_lanes<lanes::Lanes16>(shape, keys, queries, end, out, lse, s);
    return;
  }
  if (queries.key_end == nullptr && shape.head_size % 8 == 0) {
    attend_lanes<lanes::Pairs16>(shape, keys, queries, end, out, lse, s);
    return;
  }
#endif
  attend_lanes<lanes::Lanes8>(shape, keys, queries, end, out, lse, s);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE
