// Register-blocked inner loops of the segment attention kernel
// (attention_segment.cpp is the only user). Two regimes:
//
//  * stacked rows (GEMM): K and V tiles already converted to f32 rows of
//    stride ld (a multiple of 8, zero-padded); blocks of R <= 4 query rows.
//    Scores use 4 rows x 3 keys = 12 independent FMA chains with 7 loads per
//    12 FMAs; P.V uses 4 rows x 24 columns, the same ratio.
//  * one row (GEMV): K and V read straight from f16 memory with the
//    conversion fused into the FMA operands (no f32 tile is written), 8 keys
//    or 64 columns at a time so 8 FMA chains hide the FMA latency.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/attention_simd.h"

namespace bifurcate::kernels::micro {

inline constexpr int kScoreStride = 64;  // floats between score rows (= kSegmentTileTokens)

// scores[r * kScoreStride + c] = q_r . k_c for R stacked rows and C consecutive keys;
// rows of q and keys have stride ld.
template <int R, int C>
void score_block(const float* q, const float* keys, int ld, float* scores) {
  __m256 acc[R][C];
  _Pragma("GCC unroll 16")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 16")
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int d = 0; d < ld; d += 8) {
    __m256 kv[C];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < C; ++c) kv[c] = _mm256_loadu_ps(keys + c * ld + d);
    _Pragma("GCC unroll 16")
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_load_ps(q + r * ld + d);
      _Pragma("GCC unroll 16")
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  _Pragma("GCC unroll 16")
  for (int c = 0; c < C; ++c) {
    alignas(16) float sums[4];
    _mm_store_ps(sums, simd::hsum4(acc[0][c], R > 1 ? acc[R > 1 ? 1 : 0][c] : zero,
                                   R > 2 ? acc[R > 2 ? 2 : 0][c] : zero,
                                   R > 3 ? acc[R > 3 ? 3 : 0][c] : zero));
    _Pragma("GCC unroll 16")
    for (int r = 0; r < R; ++r) scores[r * kScoreStride + c] = sums[r];
  }
}

// Scores of R rows against n f32 keys of stride ld.
template <int R>
void score_rows(const float* q, const float* keys, int ld, int n, float* scores) {
  int t = 0;
  for (; t + 3 <= n; t += 3) score_block<R, 3>(q, keys + std::size_t(t) * ld, ld, scores + t);
  if (n - t == 2) score_block<R, 2>(q, keys + std::size_t(t) * ld, ld, scores + t);
  if (n - t == 1) score_block<R, 1>(q, keys + std::size_t(t) * ld, ld, scores + t);
}

// acc[r][col..col+8DV) += sum_t p[r][t] v[t][col..col+8DV) for R rows and n values of stride ld.
template <int R, int DV>
void accumulate_block(const float* p, const float* values, int ld, int n, int col, float* acc) {
  __m256 a[R][DV];
  _Pragma("GCC unroll 16")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 16")
    for (int j = 0; j < DV; ++j) a[r][j] = _mm256_load_ps(acc + r * ld + col + 8 * j);
  const float* v = values + col;
  for (int t = 0; t < n; ++t, v += ld) {
    __m256 vv[DV];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < DV; ++j) vv[j] = _mm256_loadu_ps(v + 8 * j);
    _Pragma("GCC unroll 16")
    for (int r = 0; r < R; ++r) {
      const __m256 pb = _mm256_broadcast_ss(p + r * kScoreStride + t);
      _Pragma("GCC unroll 16")
      for (int j = 0; j < DV; ++j) a[r][j] = _mm256_fmadd_ps(pb, vv[j], a[r][j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 16")
    for (int j = 0; j < DV; ++j) _mm256_store_ps(acc + r * ld + col + 8 * j, a[r][j]);
}

template <int R>
void accumulate_rows(const float* p, const float* values, int ld, int n, float* acc) {
  int col = 0;
  for (; col + 24 <= ld; col += 24) accumulate_block<R, 3>(p, values, ld, n, col, acc);
  if (ld - col == 16) accumulate_block<R, 2>(p, values, ld, n, col, acc);
  if (ld - col == 8) accumulate_block<R, 1>(p, values, ld, n, col, acc);
}

// ---------------------------------------------------------------------------
// One query row against f16 rows of k elements (k a multiple of 8).

// scores[t] = q . key_t for t in [first, first + 8): eight FMA chains, one horizontal reduction.
inline void score_single_8(const float* q, const uint16_t* keys, int k, float* scores) {
  __m256 acc[8];
  _Pragma("GCC unroll 16")
  for (__m256& a : acc) a = _mm256_setzero_ps();
  for (int d = 0; d < k; d += 8) {
    const __m256 qv = _mm256_load_ps(q + d);
    _Pragma("GCC unroll 16")
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_fmadd_ps(qv, simd::load_f16(keys + std::size_t(c) * k + d), acc[c]);
  }
  _mm256_storeu_ps(scores, simd::hsum8(acc));
}

inline float score_single_1(const float* q, const uint16_t* key, int k) {
  __m256 acc = _mm256_setzero_ps();
  for (int d = 0; d < k; d += 8) acc = _mm256_fmadd_ps(_mm256_load_ps(q + d), simd::load_f16(key + d), acc);
  return simd::hsum(acc);
}

// acc[col..col+8DV) += sum_t p[t] v_t[col..col+8DV) over n f16 value rows of k elements.
template <int DV>
void accumulate_single_block(const float* p, const uint16_t* values, int k, int n, int col, float* acc) {
  __m256 a[DV];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < DV; ++j) a[j] = _mm256_load_ps(acc + col + 8 * j);
  const uint16_t* v = values + col;
  for (int t = 0; t < n; ++t, v += k) {
    const __m256 pb = _mm256_broadcast_ss(p + t);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < DV; ++j) a[j] = _mm256_fmadd_ps(pb, simd::load_f16(v + 8 * j), a[j]);
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < DV; ++j) _mm256_store_ps(acc + col + 8 * j, a[j]);
}

// Columns in blocks of 64 (8 chains), then the 8..56-column rest in one block.
inline void accumulate_single(const float* p, const uint16_t* values, int k, int n, float* acc) {
  int col = 0;
  for (; col + 64 <= k; col += 64) accumulate_single_block<8>(p, values, k, n, col, acc);
  switch ((k - col) / 8) {
    case 1: accumulate_single_block<1>(p, values, k, n, col, acc); break;
    case 2: accumulate_single_block<2>(p, values, k, n, col, acc); break;
    case 3: accumulate_single_block<3>(p, values, k, n, col, acc); break;
    case 4: accumulate_single_block<4>(p, values, k, n, col, acc); break;
    case 5: accumulate_single_block<5>(p, values, k, n, col, acc); break;
    case 6: accumulate_single_block<6>(p, values, k, n, col, acc); break;
    case 7: accumulate_single_block<7>(p, values, k, n, col, acc); break;
    default: break;
  }
}

}  // namespace bifurcate::kernels::micro
