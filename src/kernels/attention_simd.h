// The few AVX2/FMA helpers the attention kernels need, kept in one place
// (sampling's whole-vocabulary passes use them too: sampling/vocab_math.cpp).
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <immintrin.h>

#include <cstdint>

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::simd {

// exp(x) for 8 floats, Cephes expf polynomial after Cody-Waite range reduction
// (about 1 ulp). Inputs below -87 (including -inf) give exactly 0, inputs above
// 88.3 saturate; every caller (attention, sampling) passes x <= 0.
inline __m256 exp(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.0f);
  __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lowest), _mm256_set1_ps(88.3f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}

#ifdef __AVX512F__
// All-ones mask: the maskz forms below are the plain instructions, spelled so
// to avoid g++ 12's false "used uninitialized" errors in the unmasked ones.
inline constexpr __mmask16 kAll16 = 0xFFFF;

// The same polynomial for 16 floats.
inline __m512 exp(__m512 x) {
  const __m512 lowest = _mm512_set1_ps(-87.0f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lowest, _CMP_LT_OQ);
  x = _mm512_maskz_min_ps(kAll16, _mm512_maskz_max_ps(kAll16, x, lowest), _mm512_set1_ps(88.3f));
  __m512 n = _mm512_maskz_roundscale_ps(kAll16, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_maskz_slli_epi32(
      kAll16, _mm512_add_epi32(_mm512_maskz_cvtps_epi32(kAll16, n), _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
  return _mm512_maskz_mov_ps(_knot_mask16(underflow), y);
}
#endif

// The four horizontal sums {sum(a), sum(b), sum(c), sum(d)}.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 ab = _mm256_hadd_ps(a, b);
  __m256 cd = _mm256_hadd_ps(c, d);
  __m256 s = _mm256_hadd_ps(ab, cd);  // low and high lanes each hold partial sums of a, b, c, d
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// {sum(a[0]), ..., sum(a[7])}: eight horizontal sums in one vector.
inline __m256 hsum8(const __m256 a[8]) {
  __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  // Each 128-bit lane now holds partial sums of a0..a3 (s0123) or a4..a7 (s4567).
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// 8 f16 values at p (any alignment) as f32.
inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#ifdef __AVX512F__
// The 512-bit forms the matmul (simd::Avx512) and the stacked-rows attention share.
inline __m512 load_f16x16(const uint16_t* p) {
  return _mm512_maskz_cvtph_ps(kAll16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 max(__m512 a, __m512 b) { return _mm512_maskz_max_ps(kAll16, a, b); }
template <int Half>
__m256 half(__m512 v) { return _mm512_maskz_extractf32x8_ps(0xFF, v, Half); }
// Low half plus high half, then the 8-lane reduction.
inline float hmax(__m512 v) { return hmax(_mm256_max_ps(half<0>(v), half<1>(v))); }
inline float hsum(__m512 v) { return hsum(_mm256_add_ps(half<0>(v), half<1>(v))); }
#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::simd
