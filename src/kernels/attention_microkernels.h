// The one-row (GEMV) inner loops of the segment attention kernel
// (attention_segment.cpp is the only user; stacked rows: attention_lanes.h).
// K and V are read straight from f16 memory with the conversion fused into
// the FMA operands (no f32 tile is written), 8 keys or 64 columns at a time
// so 8 FMA chains hide the FMA latency.
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <cstddef>
#include <cstdint>

#include "kernels/attention_simd.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::micro {

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

// acc[col..col+8DV) += sum_t p[t] v_t[col..col+8DV) over n f16 value rows of k elements;
// every8() after each 8 keys.
template <int DV, class Every8>
void accumulate_single_block(const float* p, const uint16_t* values, int k, int n, int col, float* acc, Every8&& every8) {
  __m256 a[DV];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < DV; ++j) a[j] = _mm256_load_ps(acc + col + 8 * j);
  const uint16_t* v = values + col;
  for (int t = 0; t < n; ++t, v += k) {
    if (t % 8 == 7) every8();
    const __m256 pb = _mm256_broadcast_ss(p + t);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < DV; ++j) a[j] = _mm256_fmadd_ps(pb, simd::load_f16(v + 8 * j), a[j]);
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < DV; ++j) _mm256_store_ps(acc + col + 8 * j, a[j]);
}

// Columns in blocks of 64 (8 chains), then the 8..56-column rest in one block;
// every8() after each 8 keys of each 64-column block (the caller's prefetch pacing).
template <class Every8>
void accumulate_single(const float* p, const uint16_t* values, int k, int n, float* acc, Every8&& every8) {
  int col = 0;
  auto none = [] {};
  for (; col + 64 <= k; col += 64) accumulate_single_block<8>(p, values, k, n, col, acc, every8);
  switch ((k - col) / 8) {
    case 1: accumulate_single_block<1>(p, values, k, n, col, acc, none); break;
    case 2: accumulate_single_block<2>(p, values, k, n, col, acc, none); break;
    case 3: accumulate_single_block<3>(p, values, k, n, col, acc, none); break;
    case 4: accumulate_single_block<4>(p, values, k, n, col, acc, none); break;
    case 5: accumulate_single_block<5>(p, values, k, n, col, acc, none); break;
    case 6: accumulate_single_block<6>(p, values, k, n, col, acc, none); break;
    case 7: accumulate_single_block<7>(p, values, k, n, col, acc, none); break;
    default: break;
  }
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::micro
