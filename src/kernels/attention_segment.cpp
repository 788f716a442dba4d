#include "kernels/attention_segment.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/attention_microkernels.h"
#include "kernels/attention_simd.h"
#include "kernels/attention_state.h"
#include "util/f16.h"

namespace bifurcate::kernels {
namespace {

constexpr int kTile = kSegmentTileTokens;
constexpr int kRowBlock = 4;  // query rows per register block
static_assert(micro::kScoreStride == kTile, "score rows are one tile long");

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

  void issue(std::size_t lines) {
    const std::size_t stop = std::min(issued_ + lines, total_lines());
    for (; issued_ < stop; ++issued_)
      simd::prefetch(issued_ < lines_each_ ? k_ + 64 * issued_ : v_ + 64 * (issued_ - lines_each_));
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

// Calls fn.template operator()<R>() with R = rows (1..kRowBlock) as a constant.
template <class Fn>
void with_row_count(int rows, Fn&& fn) {
  switch (rows) {
    case 1: fn.template operator()<1>(); break;
    case 2: fn.template operator()<2>(); break;
    case 3: fn.template operator()<3>(); break;
    default: fn.template operator()<4>(); break;
  }
}

// Online softmax for one row over one tile: turns the row's scores into
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

bool block_active(const StackedQueries& queries, int r0, int rows, int tile_first) {
  if (queries.key_end == nullptr) return true;
  for (int r = r0; r < r0 + rows; ++r)
    if (queries.key_end[r] > tile_first) return true;
  return false;
}

// Scores, softmax and P.V of every stacked row against one converted tile; the
// next tile's prefetch is spread evenly over the row blocks.
void process_tile(const Tile& tile, const StackedQueries& queries, SegmentScratch& s, NextTilePrefetch& prefetch) {
  const int n_rows = queries.n_rows, ld = tile.ld;
  const int n_blocks = std::max(1, (n_rows + kRowBlock - 1) / kRowBlock);
  const std::size_t lines_per_block = (prefetch.total_lines() + std::size_t(n_blocks) - 1) / std::size_t(n_blocks);
  for (int r0 = 0; r0 < n_rows; r0 += kRowBlock) {
    prefetch.issue(lines_per_block);
    const int rows = std::min(kRowBlock, n_rows - r0);
    float* scores = s.scores.data() + std::size_t(r0) * kTile;
    if (!block_active(queries, r0, rows, tile.first)) continue;
    with_row_count(rows, [&]<int R>() {
      micro::score_rows<R>(s.q.data() + std::size_t(r0) * ld, tile.k, ld, tile.n, scores);
    });
    for (int r = r0; r < r0 + rows; ++r) {
      float* row_scores = s.scores.data() + std::size_t(r) * kTile;
      if (queries.key_end != nullptr) {  // causal limit: keys at or past key_end are invisible
        int visible = std::clamp(queries.key_end[r] - tile.first, 0, tile.n);
        std::fill(row_scores + visible, row_scores + tile.n, kEmptyLse);
      }
      softmax_row(row_scores, tile.n, &s.row_max[r], &s.row_sum[r], s.acc.data() + std::size_t(r) * ld, ld);
    }
    with_row_count(rows, [&]<int R>() {
      micro::accumulate_rows<R>(scores, tile.v, ld, tile.n, s.acc.data() + std::size_t(r0) * ld);
    });
  }
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
  const std::size_t lines_per_key = (prefetch.total_lines() + std::size_t(src.n) - 1) / std::size_t(src.n);
  int t = 0;
  for (; t + 8 <= src.n; t += 8) {
    prefetch.issue(8 * lines_per_key);
    micro::score_single_8(s.q.data(), keys + std::size_t(t) * k, k, scores + t);
  }
  for (; t < src.n; ++t) scores[t] = micro::score_single_1(s.q.data(), keys + std::size_t(t) * k, k);
  prefetch.issue(prefetch.total_lines());
  softmax_row(scores, src.n, &s.row_max[0], &s.row_sum[0], s.acc.data(), k);
  micro::accumulate_single(scores, reinterpret_cast<const uint16_t*>(src.v), k, src.n, s.acc.data());
}

void prepare_scratch(const AttentionShape& shape, const StackedQueries& queries, SegmentScratch& s) {
  const int k = shape.head_size, ld = padded_size(k), n_rows = queries.n_rows;
  s.q.resize(std::size_t(n_rows) * ld);
  s.acc.resize(std::size_t(n_rows) * ld);
  s.scores.resize(std::size_t(n_rows) * kTile);
  s.row_max.resize(std::size_t(n_rows));
  s.row_sum.resize(std::size_t(n_rows));
  s.k_tile.resize(std::size_t(kTile) * ld);
  s.v_tile.resize(std::size_t(kTile) * ld);
  for (int r = 0; r < n_rows; ++r) {
    float* q = s.q.data() + std::size_t(r) * ld;
    for (int d = 0; d < k; ++d) q[d] = shape.scale * queries.rows[r][d];
    std::fill(q + k, q + ld, 0.0f);
  }
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  std::fill(s.row_max.begin(), s.row_max.end(), kEmptyLse);
  std::fill(s.row_sum.begin(), s.row_sum.end(), 0.0f);
}

}  // namespace

void attend_segment(const AttentionShape& shape, const SegmentKeys& keys,
                    const StackedQueries& queries, float* out, float* lse, SegmentScratch& s) {
  assert(shape.head_size >= 1 && queries.n_rows >= 0 && keys.begin <= keys.end);
  prepare_scratch(shape, queries, s);
  int last_visible = keys.end;  // no row sees keys at or past this position
  if (queries.key_end != nullptr) {
    last_visible = 0;
    for (int r = 0; r < queries.n_rows; ++r) last_visible = std::max(last_visible, queries.key_end[r]);
    last_visible = std::min(last_visible, keys.end);
  }
  const std::size_t row_bytes = std::size_t(shape.head_size) * kv_type_bytes(shape.kv_type);
  const bool single = single_row_path(shape, queries);
  TileWalk walk(shape, keys, last_visible);
  for (TileSource tile = walk.next(), next; tile.n > 0; tile = next) {
    next = walk.next();
    NextTilePrefetch prefetch(next, row_bytes);
    if (single) {
      process_tile_single(tile, shape.head_size, s, prefetch);
    } else {
      process_tile(load_tile(shape, tile, s), queries, s, prefetch);
    }
  }
  const int k = shape.head_size, ld = padded_size(k);
  for (int r = 0; r < queries.n_rows; ++r) {
    float* o = out + std::size_t(r) * k;
    const float* acc = s.acc.data() + std::size_t(r) * ld;
    if (s.row_sum[r] == 0.0f) {  // saw no key: the empty state
      std::fill(o, o + k, 0.0f);
      lse[r] = kEmptyLse;
      continue;
    }
    const float inv = 1.0f / s.row_sum[r];
    for (int d = 0; d < k; ++d) o[d] = acc[d] * inv;
    lse[r] = s.row_max[r] + std::log(s.row_sum[r]);
  }
}

}  // namespace bifurcate::kernels
