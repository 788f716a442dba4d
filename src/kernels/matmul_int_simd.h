// The integer dot products of the quantized matmul path (matmul_quant.cpp),
// one struct per instruction set, so the tile is written once:
//   dot(w, x): unsigned 8-bit w times signed 8-bit x, each 32-bit lane the
//              sum of 4 adjacent products (exact: |sum| <= 4 * 63 * 127).
//   Avx2:    vpmaddubsw + vpmaddwd (pairs saturate at int16: levels <= 63
//            keep 2 * 63 * 127 in range).
//   Avx512:  vpdpbusd (AVX512-VNNI) where built with it, else the same
//            maddubs + maddwd pair in 512 bits.
// expand(scale, c): the per-16-element scales of chunk c as a per-lane vector
// (4 lanes of 4 elements per group).
#pragma once

#include <immintrin.h>

#include "kernels/matmul_simd.h"

namespace bifurcate::kernels::simd {

struct IntAvx2 : Avx2 {
  using IV = __m256i;
  static constexpr int kBytes = 32;  // levels per chunk (2 groups)
  static constexpr int kMaxBatchTile = 2;  // 16 registers: 2 x 2 x (sum + part) accumulators
  static IV load_bytes(const void* p) { return _mm256_load_si256(static_cast<const __m256i*>(p)); }
  static IV dot(IV w, IV x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)); }
  static V to_float(IV v) { return _mm256_cvtepi32_ps(v); }
  static V expand(const float* scale, int c) {
    const __m128 two = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(scale + 2 * c)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
  // acc + sum over the 16 groups of a[g] * b[g].
  static V fmadd_groups(const float* a, const float* b, V acc) {
    acc = fmadd(load(a), load(b), acc);
    return fmadd(load(a + 8), load(b + 8), acc);
  }
};

#ifdef __AVX512F__
struct IntAvx512 : Avx512 {
  using IV = __m512i;
  static constexpr int kBytes = 64;  // levels per chunk (4 groups)
  static constexpr int kMaxBatchTile = 4;  // 32 registers: 4 x 2 x (sum + part) accumulators
  static IV load_bytes(const void* p) { return _mm512_load_si512(p); }
  static IV dot(IV w, IV x) {
#ifdef __AVX512VNNI__
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), _mm512_set1_epi16(1));
#endif
  }
  static V to_float(IV v) { return _mm512_maskz_cvtepi32_ps(kAll16, v); }
  static V expand(const float* scale, int c) {
    const __m512 four = _mm512_zextps128_ps512(_mm_load_ps(scale + 4 * c));
    return _mm512_maskz_permutexvar_ps(kAll16, _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                        four);
  }
  static V fmadd_groups(const float* a, const float* b, V acc) { return fmadd(load(a), load(b), acc); }
};
#endif

}  // namespace bifurcate::kernels::simd
