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
// dot_scaled(w, x, s, acc): the K-quants' integer-scale form, acc + each
// vpmaddubsw pair sum times its group's int16 scale (vpdpwssd with VNNI):
// exact, |pair| <= 2 * 63 * 127 and |scale| <= 128 keep a superblock's sum
// far inside int32.
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <immintrin.h>

#include "kernels/matmul_simd.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::simd {

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
  // Integer group scales: acc + (w . x per int16 pair) * scale of its group.
  // vpmaddubsw pairs: 8 per 16-element group.
  static IV zero_i() { return _mm256_setzero_si256(); }
  static IV dot_scaled(IV w, IV x, IV scale16, IV acc) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), scale16));
  }
  // The int16 scales of chunk c's 2 groups, each over its 8 pair lanes.
  static IV expand_i16(const int16_t* scale, int c) {
    int32_t two;
    __builtin_memcpy(&two, scale + 2 * c, 4);
    return _mm256_shuffle_epi8(_mm256_set1_epi32(two),
                               _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3,
                                                2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
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
  static IV zero_i() { return _mm512_setzero_si512(); }
  static IV dot_scaled(IV w, IV x, IV scale16, IV acc) {
#ifdef __AVX512VNNI__
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(w, x), scale16);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), scale16));
#endif
  }
  // The int16 scales of chunk c's 4 groups, each over its 8 pair lanes.
  static IV expand_i16(const int16_t* scale, int c) {
    const __m512i four = _mm512_zextsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scale + 4 * c)));
    const __m512i index = _mm512_setr_epi64(0, 0, 0x0001000100010001, 0x0001000100010001, 0x0002000200020002,
                                            0x0002000200020002, 0x0003000300030003, 0x0003000300030003);
    return _mm512_maskz_permutexvar_epi16(__mmask32(0xFFFFFFFF), index, four);
  }
};
#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::simd
