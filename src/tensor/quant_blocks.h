// Quantised block layouts, bit-exact with ggml's (ggml-common.h). Each block
// holds `block_size` weights of one row; a row is a plain array of blocks.
// Scales are IEEE half stored as raw uint16_t bits (see util/f16.h).
#pragma once

#include <cstdint>

namespace bifurcate::tensor {

inline constexpr int kQK8_0 = 32;  // elements per Q8_0 block
inline constexpr int kQK4_0 = 32;  // elements per Q4_0 block
inline constexpr int kQK_K = 256;  // elements per K-quant super-block

// value[j] = qs[j] * d
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 must match ggml's 34 bytes");

// Element j < 16 is the low nibble of qs[j], element j + 16 its high nibble;
// value = (nibble - 8) * d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 must match ggml's 18 bytes");

// value = nibble * d + m (element j < 16: low nibble of qs[j], else the high
// nibble of qs[j - 16], as Q4_0).
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 must match ggml's 20 bytes");

// 5-bit values: the low 4 bits as Q4_0's nibbles, bit 4 of element j is bit j
// of the little-endian 32-bit qh; value = (q - 16) * d.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 must match ggml's 22 bytes");

// As Q5_0 with value = q * d + m.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 must match ggml's 24 bytes");

// 8 sub-blocks of 32. Sub-block s has a 6-bit scale sc_s and 6-bit min m_s
// packed in `scales` (see scale_min_q4_k); value = d*sc_s*q - dmin*m_s with
// q a nibble. Nibbles: 64-element chunk c uses qs[32c .. 32c+32): low nibbles
// are sub-block 2c, high nibbles sub-block 2c+1.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K must match ggml's 144 bytes");

// Q4_K with a fifth bit: sub-block s's element l (l < 32) takes its low 4
// bits as Q4_K's nibble and bit 4 from bit s of qh[l]; q is 0..31.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K must match ggml's 176 bytes");

// 16 sub-blocks of 16 with signed 8-bit scales; q is 6 bits (low 4 in ql,
// high 2 in qh), value = d * scales[s] * (q - 32). Within each 128-element
// half h: element l + 32*i (l < 32, i < 4) takes its low nibble from
// ql[64h + l + 32*(i&1)] (low nibble for i < 2, high for i >= 2) and its high
// bits from bits 2i..2i+1 of qh[32h + l].
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K must match ggml's 210 bytes");

// Unpacks sub-block j's 6-bit scale and min from a Q4_K `scales` array:
// j < 4 keep them in the low 6 bits of bytes j and j+4; j >= 4 keep the low
// 4 bits in byte j+4 (scale low nibble, min high nibble) and the top 2 bits
// in the spare top bits of bytes j-4 (scale) and j (min).
inline void scale_min_q4_k(int j, const uint8_t* scales, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = uint8_t((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    min = uint8_t((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

}  // namespace bifurcate::tensor
