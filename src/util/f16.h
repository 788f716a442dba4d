// IEEE half and bfloat16 conversions (F16C hardware path; round-to-nearest-even).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace bifurcate {

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f32_to_f16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return uint16_t(bits >> 16);
}

// Bulk conversions; n may be any size.
void f16_to_f32_row(const uint16_t* src, float* dst, std::size_t n);
void f32_to_f16_row(const float* src, uint16_t* dst, std::size_t n);

}  // namespace bifurcate
