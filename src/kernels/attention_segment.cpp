#include "kernels/attention_segment.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/attention_simd.h"
#include "kernels/attention_state.h"
#include "util/f16.h"

namespace bifurcate::kernels {
namespace {

constexpr int kTile = kSegmentTileTokens;
constexpr int kRowBlock = 4;  // query rows per register block

int padded_size(int head_size) { return (head_size + 7) / 8 * 8; }

// One tile of keys as f32 rows of stride ld (a multiple of 8; columns past
// head_size are zero). `first` is the segment position of row 0.
struct Tile {
  const float* k;
  const float* v;
  int ld;
  int n;
  int first;
};

// Converts (or, for f32 rows already SIMD-friendly, points at) rows
// [row0, row0 + n) of one chunk's K and V for one KV head.
Tile load_tile(const AttentionShape& shape, const KvChunk& chunk, std::size_t head_offset, int row0,
               int n, int first, SegmentScratch& s) {
  const int k = shape.head_size, ld = padded_size(k);
  const char* k_base = static_cast<const char*>(chunk.k) + head_offset;
  const char* v_base = static_cast<const char*>(chunk.v) + head_offset;
  if (shape.kv_type == KvType::f32 && k == ld) {
    const float* kf = reinterpret_cast<const float*>(k_base) + std::size_t(row0) * k;
    const float* vf = reinterpret_cast<const float*>(v_base) + std::size_t(row0) * k;
    return Tile{kf, vf, ld, n, first};
  }
  auto convert = [&](const char* base, float* dst) {
    for (int t = 0; t < n; ++t) {
      float* row = dst + std::size_t(t) * ld;
      std::size_t src_row = std::size_t(row0 + t) * k;
      if (shape.kv_type == KvType::f16) {
        f16_to_f32_row(reinterpret_cast<const uint16_t*>(base) + src_row, row, std::size_t(k));
      } else {
        std::memcpy(row, reinterpret_cast<const float*>(base) + src_row, sizeof(float) * k);
      }
      std::fill(row + k, row + ld, 0.0f);
    }
  };
  convert(k_base, s.k_tile.data());
  convert(v_base, s.v_tile.data());
  return Tile{s.k_tile.data(), s.v_tile.data(), ld, n, first};
}

// scores[r][c] = q_r . k_c for R stacked rows and C consecutive keys; rows of q
// and keys have stride ld, scores rows stride kTile.
template <int R, int C>
void score_block(const float* q, const float* keys, int ld, float* scores) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int d = 0; d < ld; d += 8) {
    __m256 kv[C];
    for (int c = 0; c < C; ++c) kv[c] = _mm256_loadu_ps(keys + c * ld + d);
    for (int r = 0; r < R; ++r) {
      __m256 qv = _mm256_load_ps(q + r * ld + d);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int c = 0; c < C; ++c) {
    alignas(16) float sums[4];
    _mm_store_ps(sums, simd::hsum4(acc[0][c], R > 1 ? acc[R > 1 ? 1 : 0][c] : zero,
                                   R > 2 ? acc[R > 2 ? 2 : 0][c] : zero,
                                   R > 3 ? acc[R > 3 ? 3 : 0][c] : zero));
    for (int r = 0; r < R; ++r) scores[r * kTile + c] = sums[r];
  }
}

template <int R>
void score_rows(const float* q, const Tile& tile, float* scores) {
  int t = 0;
  for (; t + 2 <= tile.n; t += 2) score_block<R, 2>(q, tile.k + std::size_t(t) * tile.ld, tile.ld, scores + t);
  if (t < tile.n) score_block<R, 1>(q, tile.k + std::size_t(t) * tile.ld, tile.ld, scores + t);
}

// acc[r][:] += sum_t p[r][t] * v[t][:] for R rows, DV vectors of columns starting at `col`.
template <int R, int DV>
void accumulate_block(const float* p, const Tile& tile, int col, float* acc, int ld_acc) {
  __m256 a[R][DV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < DV; ++j) a[r][j] = _mm256_load_ps(acc + r * ld_acc + col + 8 * j);
  const float* v = tile.v + col;
  for (int t = 0; t < tile.n; ++t, v += tile.ld) {
    __m256 vv[DV];
    for (int j = 0; j < DV; ++j) vv[j] = _mm256_loadu_ps(v + 8 * j);
    for (int r = 0; r < R; ++r) {
      __m256 pb = _mm256_broadcast_ss(p + r * kTile + t);
      for (int j = 0; j < DV; ++j) a[r][j] = _mm256_fmadd_ps(pb, vv[j], a[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < DV; ++j) _mm256_store_ps(acc + r * ld_acc + col + 8 * j, a[r][j]);
}

template <int R>
void accumulate_rows(const float* p, const Tile& tile, float* acc) {
  int col = 0;
  for (; col + 16 <= tile.ld; col += 16) accumulate_block<R, 2>(p, tile, col, acc, tile.ld);
  if (col < tile.ld) accumulate_block<R, 1>(p, tile, col, acc, tile.ld);
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

// Scores, softmax and P.V of every stacked row against one tile.
void process_tile(const Tile& tile, const StackedQueries& queries, SegmentScratch& s) {
  const int n_rows = queries.n_rows, ld = tile.ld;
  for (int r0 = 0; r0 < n_rows; r0 += kRowBlock) {
    const int rows = std::min(kRowBlock, n_rows - r0);
    float* scores = s.scores.data() + std::size_t(r0) * kTile;
    if (!block_active(queries, r0, rows, tile.first)) continue;
    with_row_count(rows, [&]<int R>() { score_rows<R>(s.q.data() + std::size_t(r0) * ld, tile, scores); });
    for (int r = r0; r < r0 + rows; ++r) {
      float* row_scores = s.scores.data() + std::size_t(r) * kTile;
      if (queries.key_end != nullptr) {  // causal limit: keys at or past key_end are invisible
        int visible = std::clamp(queries.key_end[r] - tile.first, 0, tile.n);
        std::fill(row_scores + visible, row_scores + tile.n, kEmptyLse);
      }
      softmax_row(row_scores, tile.n, &s.row_max[r], &s.row_sum[r], s.acc.data() + std::size_t(r) * ld, ld);
    }
    with_row_count(rows, [&]<int R>() { accumulate_rows<R>(scores, tile, s.acc.data() + std::size_t(r0) * ld); });
  }
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
  const std::size_t head_offset = std::size_t(keys.kv_head) * keys.head_stride;
  int chunk_first = 0;  // segment position of the current chunk's first token
  for (const KvChunk& chunk : keys.chunks) {
    const int lo = std::max(chunk_first, keys.begin);
    const int hi = std::min(chunk_first + chunk.tokens, last_visible);
    for (int t0 = lo; t0 < hi; t0 += kTile) {
      const int n = std::min(kTile, hi - t0);
      Tile tile = load_tile(shape, chunk, head_offset, t0 - chunk_first, n, t0, s);
      process_tile(tile, queries, s);
    }
    chunk_first += chunk.tokens;
    if (chunk_first >= last_visible) break;
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
