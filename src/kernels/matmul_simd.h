// The few vector operations the matmul kernels and sampling's vocabulary
// passes (sampling/vocab_math.cpp) use, for AVX2 (8 lanes, 16 registers) and
// AVX-512 (16 lanes, 32 registers). Kernels are templates over one of these,
// so both instruction sets share one source; each path compiles its own copy
// (isa_target.h).
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <immintrin.h>

#include <cstdint>

#include "kernels/attention_simd.h"  // hsum, load_f16x16, kAll16: shared with attention

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::simd {

struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kRegisters = 16;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(V v) { return simd::hsum(v); }
  // Sampling's vocabulary passes.
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }  // a NaN in a yields b
  static V exp(V v) { return simd::exp(v); }  // x <= 0 (attention_simd.h)
  static float hmax(V v) { return simd::hmax(v); }
  // All-ones lanes where v is NaN, accumulated into `seen` (any_set tests it).
  static V mark_nan(V seen, V v) { return _mm256_or_ps(seen, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }
  static bool any_set(V marks) { return _mm256_movemask_ps(marks) != 0; }
};

#ifdef __AVX512F__
// The all-ones masked (maskz) intrinsics below (kAll16, from
// attention_simd.h) are the plain instructions; they avoid g++ 12's false
// "used uninitialized" errors in the unmasked intrinsics.
struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kRegisters = 32;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_f16(const uint16_t* p) { return load_f16x16(p); }
  static V load_i8(const int8_t* p) {
    const __m512i q =
        _mm512_maskz_cvtepi8_epi32(kAll16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_maskz_cvtepi32_ps(kAll16, q);
  }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(V v) { return simd::hsum(v); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};
#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::simd
