// The stacked-rows (GEMM) regime of the segment attention kernel with HEAD
// DIMENSIONS in 512-bit vector lanes (attention_segment.cpp is the only user).
//
// K and V are read straight from the KV memory, row-major as stored (f16
// converted inside the FMA operands, f32 loaded): no converted tile is
// written, and every vector load feeds several FMAs. Per tile of n keys:
//   scores  4 rows x 4 keys per register block: 16 accumulators of q_i * key_j
//           over the head dimensions, then one 16-way horizontal reduction
//           (hsum16) gives the block's 16 scores in one vector;
//   softmax online, per row (softmax_row);
//   P.V     4 rows x 64 columns per register block: per key, 4 value loads and
//           4 probability broadcasts feed 16 FMAs.
// Each K/V vector is loaded once per 4-row block from L1 (the tile is a few KiB).
// Queries, scores and the unnormalised output are plain row-major arrays:
//   q[R][k] (scaled), s[R][lds] scores then probabilities, o[R][k].
// Needs AVX-512 and k % 16 == 0.
#pragma once

#include "kernels/isa_target.h"  // first: defines __AVX512F__ in the AVX-512 paths

#ifdef __AVX512F__
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/attention_simd.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::rows {

// 4 x 4 score blocks and 4-row x 64-column P.V blocks: 8 x 2 and 4 x 2 measured no faster.
inline constexpr int kRowBlock = 4;     // rows per register block
inline constexpr int kKeyBlock = 4;     // keys per score register block (kRowBlock * kKeyBlock = 16)
inline constexpr int kColumnBlock = 4;  // 16-column vectors per P.V register block
static_assert(kRowBlock * kKeyBlock == 16, "a score block is one 16-lane vector of scores");

// f(std::integral_constant<int, R>{}) for the run-time row count 1 <= rows <= kRowBlock.
template <class F, int... R>
void dispatch_rows(int rows, F&& f, std::integer_sequence<int, R...>) {
  ((rows == R + 1 ? (f(std::integral_constant<int, R + 1>{}), 0) : 0), ...);
}
template <class F>
void with_rows(int rows, F&& f) { dispatch_rows(rows, f, std::make_integer_sequence<int, kRowBlock>{}); }

// K/V rows of either element type (f16 converted).
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) { return simd::load_f16x16(p); }
using simd::hmax;
using simd::hsum;
using simd::max;

// The shuffles of hsum16, in their maskz spelling (see simd::kAll16).
inline __m512 unpacklo(__m512 a, __m512 b) { return _mm512_maskz_unpacklo_ps(simd::kAll16, a, b); }
inline __m512 unpackhi(__m512 a, __m512 b) { return _mm512_maskz_unpackhi_ps(simd::kAll16, a, b); }
inline __m512 unpacklo64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
inline __m512 unpackhi64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
// 128-bit lanes {a.0, a.2, b.0, b.2} plus {a.1, a.3, b.1, b.3}.
inline __m512 add_lane_pairs(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_maskz_shuffle_f32x4(simd::kAll16, a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_maskz_shuffle_f32x4(simd::kAll16, a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// {sum(v[0]), ..., sum(v[15])}: 16 horizontal sums in one vector, 45 adds and shuffles.
[[gnu::always_inline]] inline __m512 hsum16(const __m512 v[16]) {
  __m512 s1[8], s2[4], s3[2];
  for (int p = 0; p < 8; ++p)  // per 128-bit lane: {a0+a2, b0+b2, a1+a3, b1+b3}
    s1[p] = _mm512_add_ps(unpacklo(v[2 * p], v[2 * p + 1]), unpackhi(v[2 * p], v[2 * p + 1]));
  for (int q = 0; q < 4; ++q)  // per 128-bit lane: the partial sums of v[4q .. 4q + 3], in order
    s2[q] = _mm512_add_ps(unpacklo64(s1[2 * q], s1[2 * q + 1]), unpackhi64(s1[2 * q], s1[2 * q + 1]));
  for (int u = 0; u < 2; ++u)  // 128-bit lanes {x.0 + x.1, x.2 + x.3, y.0 + y.1, y.2 + y.3}
    s3[u] = add_lane_pairs(s2[2 * u], s2[2 * u + 1]);
  return add_lane_pairs(s3[0], s3[1]);  // 128-bit lane q: the full sums of v[4q .. 4q + 3]
}

// The 16 scores of rows i < R (lane kKeyBlock i + j: row i, key j) against n_keys
// (<= kKeyBlock) keys; missing keys repeat the last one, missing rows score 0.
template <int R, class T>
[[gnu::always_inline]] inline __m512 score_block(const float* q, const T* keys, int k, int n_keys) {
  const T* key[kKeyBlock];
  for (int j = 0; j < kKeyBlock; ++j) key[j] = keys + std::size_t(std::min(j, n_keys - 1)) * std::size_t(k);
  __m512 acc[16];
  _Pragma("GCC unroll 16")
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (int d = 0; d < k; d += 16) {
    __m512 kv[kKeyBlock];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < kKeyBlock; ++j) kv[j] = load16(key[j] + d);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < R; ++i) {
      __m512 qv = _mm512_loadu_ps(q + std::size_t(i) * std::size_t(k) + d);
      asm("" : "+v"(qv));  // one load per row, not one memory operand per FMA (load ports are the limit)
      _Pragma("GCC unroll 8")
      for (int j = 0; j < kKeyBlock; ++j) acc[kKeyBlock * i + j] = _mm512_fmadd_ps(qv, kv[j], acc[kKeyBlock * i + j]);
    }
  }
  return hsum16(acc);
}

// s[i][t] = q_i . key_t for all R rows and n keys (rows of lds floats), in blocks
// of kKeyBlock keys x kRowBlock rows; between_blocks() after each block.
template <class T, class Between>
[[gnu::flatten]] void score_tile(const float* q, int R, const T* keys, int k, int n, float* s, int lds, Between&& between_blocks) {
  for (int t = 0; t < n; t += kKeyBlock) {
    const int n_keys = std::min(kKeyBlock, n - t);
    const T* kt = keys + std::size_t(t) * std::size_t(k);
    for (int r = 0; r < R; r += kRowBlock, between_blocks()) {
      const float* qr = q + std::size_t(r) * std::size_t(k);
      alignas(64) float block[16];
      const int rows = std::min(kRowBlock, R - r);
      with_rows(rows, [&](auto rows_c) { _mm512_store_ps(block, score_block<rows_c()>(qr, kt, k, n_keys)); });
      for (int i = 0; i < rows; ++i) {
        float* dst = s + std::size_t(r + i) * std::size_t(lds) + std::size_t(t);
        if (n_keys == kKeyBlock) {
          std::memcpy(dst, block + kKeyBlock * i, sizeof(float) * kKeyBlock);  // one store per row
        } else {
          for (int j = 0; j < n_keys; ++j) dst[j] = block[kKeyBlock * i + j];
        }
      }
    }
  }
}

// Online softmax of one row over n (<= 64) scores: they become probabilities
// relative to the new running max m; o (k floats) and l are rescaled when m grows.
// A row that has seen only -inf keeps m = -inf, l = 0. The 512-bit twin of the
// one-row path's softmax_row: with it the 8- and 16-row cases ran 4-5 % faster.
inline void softmax_row(float* s, int n, float* m, float* l, float* o, int k) {
  const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
  const int vectors = (n + 15) / 16;
  auto present = [n](int v) { return __mmask16(n - 16 * v >= 16 ? 0xFFFF : (1u << (n - 16 * v)) - 1); };
  __m512 mx = neg_inf;
  for (int v = 0; v < vectors; ++v) mx = max(mx, _mm512_mask_loadu_ps(neg_inf, present(v), s + 16 * v));
  const float m_new = std::max(*m, hmax(mx));
  if (m_new == -__builtin_inff()) {
    for (int t = 0; t < n; ++t) s[t] = 0.0f;
    return;
  }
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 sum = _mm512_setzero_ps();
  for (int v = 0; v < vectors; ++v) {
    const __m512 e = _mm512_maskz_mov_ps(present(v), simd::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(present(v), s + 16 * v), vm)));
    _mm512_mask_storeu_ps(s + 16 * v, present(v), e);
    sum = _mm512_add_ps(sum, e);
  }
  float l_new = hsum(sum);
  if (m_new != *m) {
    const float alpha = std::exp(*m - m_new);  // 0 when the row had no keys yet
    const __m512 va = _mm512_set1_ps(alpha);
    for (int d = 0; d < k; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(va, _mm512_loadu_ps(o + d)));
    l_new += alpha * *l;
  } else {
    l_new += *l;
  }
  *l = l_new;
  *m = m_new;
}

// o[i][col .. col + 16 DV) += sum_t p[i][t] v_t[col ..] for i < R rows, over n value
// rows; between() after every 8 keys.
template <int R, int DV, class T, class Between>
void accumulate_block(const float* p, int lds, const T* values, int k, int n, int col, float* o, Between&& between) {
  __m512 acc[R][DV];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < R; ++i)
    _Pragma("GCC unroll 8")
    for (int j = 0; j < DV; ++j) acc[i][j] = _mm512_loadu_ps(o + std::size_t(i) * std::size_t(k) + col + 16 * j);
  const T* v = values + col;
  for (int t = 0; t < n; ++t, v += k) {
    if (t % 8 == 7) between();
    __m512 vv[DV];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < DV; ++j) vv[j] = load16(v + 16 * j);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < R; ++i) {
      const __m512 pb = _mm512_set1_ps(p[std::size_t(i) * std::size_t(lds) + std::size_t(t)]);
      _Pragma("GCC unroll 8")
      for (int j = 0; j < DV; ++j) acc[i][j] = _mm512_fmadd_ps(pb, vv[j], acc[i][j]);
    }
  }
  _Pragma("GCC unroll 8")
  for (int i = 0; i < R; ++i)
    _Pragma("GCC unroll 8")
    for (int j = 0; j < DV; ++j) _mm512_storeu_ps(o + std::size_t(i) * std::size_t(k) + col + 16 * j, acc[i][j]);
}

template <int R, class T, class Between>
void accumulate_columns(const float* p, int lds, const T* values, int k, int n, int col, float* o, Between&& b) {
  const int vectors = std::min(kColumnBlock, (k - col) / 16);
  if constexpr (kColumnBlock >= 4) if (vectors == 4) return accumulate_block<R, 4>(p, lds, values, k, n, col, o, b);
  if constexpr (kColumnBlock >= 3) if (vectors == 3) return accumulate_block<R, 3>(p, lds, values, k, n, col, o, b);
  if constexpr (kColumnBlock >= 2) if (vectors == 2) return accumulate_block<R, 2>(p, lds, values, k, n, col, o, b);
  accumulate_block<R, 1>(p, lds, values, k, n, col, o, b);
}

// o[R][k] += P[R][n] . V[n][k], in blocks of kRowBlock rows x 16 kColumnBlock columns;
// between_blocks() after every 8 keys of each.
template <class T, class Between>
void accumulate_tile(const float* p, int R, int lds, const T* values, int k, int n, float* o, Between&& between_blocks) {
  for (int r = 0; r < R; r += kRowBlock) {
    const float* pr = p + std::size_t(r) * std::size_t(lds);
    float* orow = o + std::size_t(r) * std::size_t(k);
    for (int col = 0; col < k; col += 16 * kColumnBlock) {
      with_rows(std::min(kRowBlock, R - r),
                [&](auto rows_c) { accumulate_columns<rows_c()>(pr, lds, values, k, n, col, orow, between_blocks); });
    }
  }
}

// Calls of between_blocks() per tile (score_tile: one per key block and row
// block; accumulate_tile: one per 8 keys of each register block), for spreading
// prefetches evenly: bursts of ~22 lines (one per register block) were 6-10 % slower.
inline int blocks_per_tile(int R, int n, int k) {
  const int row_blocks = (R + kRowBlock - 1) / kRowBlock, column_blocks = (k + 16 * kColumnBlock - 1) / (16 * kColumnBlock);
  return row_blocks * ((n + kKeyBlock - 1) / kKeyBlock + column_blocks * (n / 8));
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::rows
#endif
