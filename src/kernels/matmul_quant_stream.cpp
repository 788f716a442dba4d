// Batch 1 on AVX-512 (K-quants; with VBMI also Q4_0, Q4_1, Q5_0, Q5_1): one
// weight row at a time, each superblock unpacked in registers and
// multiplied at once (no panel store and reload). The operations per
// superblock are the panel tile's (quant_tile_int_scales, or quant_tile for
// the 32-block types, with MB = 1) in the same order, and the integer part
// is exact, so the results are bit-identical to it.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

#include "kernels/attention_simd.h"
#include "kernels/matmul_quant.h"
#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
namespace {

using gguf::GgmlType;
using simd::kAll16;

// Bytes ahead, as the direct path's row streams (kStreamAhead): on this
// host's DRAM 2 KiB measured best for the whole model (8 KiB: +17 % step
// time for Q4_K_M; none: +60 %; docs/perf-notes.md Q14).
constexpr int64_t kPrefetchAhead = 2048;
constexpr __mmask32 kAll32 = 0xFFFFFFFF;

__m512i join(__m256i lo, __m256i hi) {
  return _mm512_maskz_shuffle_i64x2(__mmask8(0xFF), _mm512_castsi256_si512(lo), _mm512_castsi256_si512(hi), 0x44);
}

// Lanes 0-15 take int16 lane a of v, lanes 16-31 lane b (a chunk's two
// 32-element sub-blocks); `quad` form: lanes 8g..8g+7 take lane q + g.
__m512i spread_pairs(__m512i v, int a, int b) {
  const __m512i index = join(_mm256_set1_epi16(int16_t(a)), _mm256_set1_epi16(int16_t(b)));
  return _mm512_maskz_permutexvar_epi16(kAll32, index, v);
}
__m512i spread_quads(__m512i v, int q) {
  const __m512i index = _mm512_add_epi16(
      _mm512_set1_epi16(int16_t(q)),
      _mm512_setr_epi64(0, 0, 0x0001000100010001, 0x0001000100010001, 0x0002000200020002, 0x0002000200020002,
                        0x0003000300030003, 0x0003000300030003));
  return _mm512_maskz_permutexvar_epi16(kAll32, index, v);
}

// acc + the superblock's dot: iacc = sum over chunks of maddubs(levels, x)
// times the group scales; then acc += cvt(iacc) * (d * dx); acc += offsets
// . group sums.
struct Superblock {
  __m512i levels[4];
  __m512i scales16;  // int16 lanes: Q4_K/Q5_K sub-block scales 0..7; Q6_K group scales 0..15
  bool per_sub_block;
  float d;
  __m512 offsets;  // per group
};

[[gnu::always_inline]] inline __m512 add_superblock(const Superblock& w, const int8_t* xq, float dx, const float* group_sums, __m512 acc) {
  __m512i isum = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    const __m512i x = _mm512_load_si512(xq + 64 * c);
    const __m512i scale = w.per_sub_block ? spread_pairs(w.scales16, 2 * c, 2 * c + 1) : spread_quads(w.scales16, 4 * c);
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w.levels[c], x), scale);
  }
  acc = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, isum), _mm512_set1_ps(w.d * dx), acc);
  return _mm512_fmadd_ps(w.offsets, _mm512_loadu_ps(group_sums), acc);
}

// Q4_K / Q5_K scales and mins: the word rearrangement of k_scales
// (matmul_quant_unpack.cpp), in registers.
template <class Block>
[[gnu::always_inline]] inline void k_scales(const Block& b, Superblock& w) {
  uint32_t s[3];
  std::memcpy(s, b.scales, 12);
  constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  const uint32_t m47 = ((s[2] >> 4) & kLow4) | (((s[1] >> 6) & kLow2) << 4);
  const uint32_t m03 = s[1] & kLow6;
  const uint32_t sc47 = (s[2] & kLow4) | (((s[0] >> 6) & kLow2) << 4);
  const uint32_t sc03 = s[0] & kLow6;
  const __m128i packed = _mm_setr_epi32(int(sc03), int(sc47), int(m03), int(m47));
  w.scales16 = _mm512_maskz_cvtepu8_epi16(kAll32, _mm256_setr_m128i(packed, _mm_setzero_si128()));
  w.per_sub_block = true;
  w.d = f16_to_f32(b.d);
  const __m512 mins = _mm512_maskz_cvtepi32_ps(kAll16, _mm512_maskz_cvtepu8_epi32(kAll16, _mm_unpackhi_epi8(packed, packed)));
  w.offsets = _mm512_mul_ps(mins, _mm512_set1_ps(-f16_to_f32(b.dmin)));
}

// The nibble split in 512-bit registers: chunk c's 32 bytes broadcast to
// both halves (a load, no ALU op), shifted right by 0 (lanes 0-15: low
// nibbles, elements 0-31) or 4 (lanes 16-31: high nibbles, elements 32-63)
// bits and masked; the registers equal join(low, high) of the 256-bit form.
// Two vector ALU ops per chunk instead of four (512-bit ops issue on two
// ports; a cache-resident stream runs 10-30 % faster: docs/perf-notes.md Q13).
inline __m512i halves_shift(int lo_bits, int hi_bits) {
  return join(_mm256_set1_epi16(int16_t(lo_bits)), _mm256_set1_epi16(int16_t(hi_bits)));
}
__m512i broadcast32(const uint8_t* p) {
  return _mm512_maskz_broadcast_i64x4(__mmask8(0xFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// (a & low) | b, one vpternlogd (truth table (A & C) | B).
__m512i and_or(__m512i a, __m512i low, __m512i b) { return _mm512_ternarylogic_epi32(a, b, low, 0xEC); }

[[gnu::always_inline]] inline void load_q4_k(const tensor::BlockQ4_K& b, Superblock& w) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), nibble_shift = halves_shift(0, 4);
  for (int c = 0; c < 4; ++c) w.levels[c] = _mm512_and_si512(_mm512_srlv_epi16(broadcast32(b.qs + 32 * c), nibble_shift), low4);
  k_scales(b, w);
}

// Q5_K: the fifth bit of chunk c's low (high) half is bit 2c (2c + 1) of qh,
// moved to bit 4 with one variable shift of qh broadcast to both halves.
[[gnu::always_inline]] inline void load_q5_k(const tensor::BlockQ5_K& b, Superblock& w) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10), nibble_shift = halves_shift(0, 4);
  const __m512i qh = broadcast32(b.qh);
  for (int c = 0; c < 4; ++c) {
    const __m512i nibbles = _mm512_srlv_epi16(broadcast32(b.qs + 32 * c), nibble_shift);
    // bit 2c -> 4 and bit 2c + 1 -> 4: left by 4 - 2c and 3 - 2c, or right by the negation.
    const __m512i fifth = c < 2 ? _mm512_sllv_epi16(qh, halves_shift(4 - 2 * c, 3 - 2 * c))
                                : _mm512_srlv_epi16(qh, halves_shift(2 * c - 4, 2 * c - 3));
    w.levels[c] = and_or(nibbles, low4, _mm512_and_si512(fifth, bit4));
  }
  k_scales(b, w);
}

// Q6_K: half h's 64 ql bytes are chunk 2h's low nibbles and chunk 2h + 1's
// high nibbles; its 32 qh bytes, broadcast to both register halves, give
// chunk 2h bits 0-1 (lanes 0-15) and 2-3 (lanes 16-31), chunk 2h + 1 bits
// 4-5 and 6-7, each moved to bits 4-5 by one variable shift.
[[gnu::always_inline]] inline void load_q6_k(const tensor::BlockQ6_K& b, Superblock& w) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
  const __m512i shift_even = halves_shift(4, 2), shift_odd = halves_shift(0, 2);
  for (int half = 0; half < 2; ++half) {
    const __m512i ql = _mm512_loadu_si512(b.ql + 64 * half);
    const __m512i qh = broadcast32(b.qh + 32 * half);
    w.levels[2 * half] = and_or(ql, low4, _mm512_and_si512(_mm512_sllv_epi16(qh, shift_even), hi2));
    w.levels[2 * half + 1] =
        and_or(_mm512_srli_epi16(ql, 4), low4, _mm512_and_si512(_mm512_srlv_epi16(qh, shift_odd), hi2));
  }
  const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  w.scales16 = _mm512_maskz_cvtepi8_epi16(kAll32, _mm256_setr_m128i(scales, _mm_setzero_si128()));
  w.per_sub_block = false;
  w.d = f16_to_f32(b.d);
  const __m512 sc = _mm512_maskz_cvtepi32_ps(kAll16, _mm512_maskz_cvtepi8_epi32(kAll16, scales));
  w.offsets = _mm512_mul_ps(sc, _mm512_set1_ps(-32.0f * w.d));
}

template <class Block, void (*Load)(const Block&, Superblock&)>
void rows(const WeightMatrix& w, const QuantizedX& x, float* y, int64_t r_begin, int64_t r_end) {
  const int64_t n_sb = w.cols / tensor::kQK_K;
  const auto* first = static_cast<const Block*>(w.data) + r_begin * n_sb;
  for (int64_t r = 0; r < r_end - r_begin; ++r) {
    const Block* row = first + r * n_sb;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < n_sb; ++sb) {
      const char* ahead = reinterpret_cast<const char*>(row + sb) + kPrefetchAhead;
      for (int64_t line = 0; line < int64_t(sizeof(Block)); line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
      Superblock s;
      Load(row[sb], s);
      acc = add_superblock(s, x.q + sb * kSuperblock, x.scale[sb], x.group_sums + sb * kGroups, acc);
    }
    y[r_begin + r] = simd::hsum(acc);
  }
}

#ifdef __AVX512VBMI__
// The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1): a superblock is 8
// blocks of {f16 d, [f16 m], [32 fifth bits], 16 nibble bytes}. Per
// superblock the (at most 192) bytes are read in three 64-byte registers,
// the 8 blocks' nibble bytes made contiguous and their f16 scales collected
// with byte/word permutes; per 64-element chunk (blocks 2c, 2c + 1) the
// levels are the nibbles split in registers, ORed with the fifth bits. The
// operations per chunk and superblock are quant_tile's (matmul_quant.cpp)
// with MB = 1, in its order, so batch 1 equals the panel tiles bit for bit.
template <class Block>
struct BlockLayout {
  static constexpr int kBytes = sizeof(Block);
  static constexpr int kQs = offsetof(Block, qs);
  static constexpr bool kHasMin = requires(Block b) { b.m; };
  static constexpr bool kHasQh = requires(Block b) { b.qh; };
  static int min_offset() {
    if constexpr (kHasMin) return offsetof(Block, m);
    return 0;
  }
  static int qh_offset() {
    if constexpr (kHasQh) return offsetof(Block, qh);
    return 0;
  }
};

// Word/byte permute indexes of one layout: element i of the result takes
// byte (word) `at(i)` of the pair (lo, hi) of 64-byte registers loaded at
// `base` and base + 64.
template <class Index>
__m512i byte_index(Index at, int base) {
  alignas(64) uint8_t idx[64];
  for (int i = 0; i < 64; ++i) idx[i] = uint8_t(at(i) - base);
  return _mm512_load_si512(idx);
}
template <class Index>
__m512i word_index(Index at, int base) {
  alignas(64) uint16_t idx[32];
  for (int i = 0; i < 32; ++i) idx[i] = uint16_t((at(i) - base) / 2);
  return _mm512_load_si512(idx);
}

template <class Block, int kLevelOffset>  // kLevelOffset: -8 (Q4_0), -16 (Q5_0) or 0 (the types with m)
void rows_32(const WeightMatrix& w, const QuantizedX& x, float* y, int64_t r_begin, int64_t r_end) {
  using L = BlockLayout<Block>;
  constexpr int kSbBytes = 8 * L::kBytes;
  // Nibble bytes: blocks 0-3 from registers (0, 64), blocks 4-7 from (64, 128).
  const __m512i qs_lo = byte_index([](int i) { return L::kBytes * (i / 16) + L::kQs + i % 16; }, 0);
  const __m512i qs_hi = byte_index([](int i) { return L::kBytes * (4 + i / 16) + L::kQs + i % 16; }, 64);
  // f16 d (and m) of block k in word k: blocks 0-3 from (0, 64), 4-7 from (64, 128).
  const auto half_index = [](int field) {
    return std::pair{word_index([=](int i) { return L::kBytes * (i % 4) + field; }, 0),
                     word_index([=](int i) { return L::kBytes * (4 + i % 4) + field; }, 64)};
  };
  const auto [d_lo, d_hi] = half_index(0);
  const auto [m_lo, m_hi] = half_index(L::min_offset());
  // Chunk c's 128-bit lanes: nibble bytes of block 2c, 2c, 2c + 1, 2c + 1,
  // shifted right by 0, 4, 0, 4 bits (low nibbles are elements 0-15).
  const __m512i nibble_shift = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                                 0x0004000400040004, 0x0004000400040004);
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  const __mmask64 tail_bytes = (~__mmask64(0)) >> (64 - (kSbBytes - 128));
  const int64_t n_sb = x.n_sb;
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  for (int64_t r = r_begin; r < r_end; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * row_bytes;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < n_sb; ++sb) {
      const uint8_t* p = row + sb * kSbBytes;
      for (int line = 0; line < kSbBytes; line += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + line), _MM_HINT_T0);
      // A short last superblock: bytes past the row's end read as zero, so
      // their levels, scales and offsets are 0, as the unpacker's clear_tail.
      const int valid_bytes = int(std::min<int64_t>(kSbBytes, row_bytes - sb * kSbBytes));
      const auto mask_from = [&](int at) -> __mmask64 {
        const int n = std::clamp(valid_bytes - at, 0, 64);
        return n == 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1;
      };
      const __m512i b0 = _mm512_maskz_loadu_epi8(mask_from(0), p);
      const __m512i b1 = _mm512_maskz_loadu_epi8(mask_from(64), p + 64);
      const __m512i b2 = _mm512_maskz_loadu_epi8(mask_from(128) & tail_bytes, p + 128);
      const __m512i qs[2] = {_mm512_maskz_permutex2var_epi8(~__mmask64(0), b0, qs_lo, b1),
                             _mm512_maskz_permutex2var_epi8(~__mmask64(0), b1, qs_hi, b2)};
      const auto halves = [&](__m512i lo_index, __m512i hi_index) {  // 8 f16 -> 8 f32 (lanes 0-7)
        const __m512i lo = _mm512_maskz_permutex2var_epi16(__mmask32(0xF), b0, lo_index, b1);
        const __m512i both = _mm512_or_si512(lo, _mm512_maskz_permutex2var_epi16(__mmask32(0xF0), b1, hi_index, b2));
        return _mm512_maskz_cvtph_ps(kAll16, _mm512_maskz_extracti64x4_epi64(__mmask8(0xF), both, 0));
      };
      const __m512 d8 = halves(d_lo, d_hi);
      // The per-16 scale and offset tables of the unpacker: group g is block g / 2.
      const __m512i group_block = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
      const __m512 offsets = L::kHasMin ? _mm512_maskz_permutexvar_ps(kAll16, group_block, halves(m_lo, m_hi))
                                        : _mm512_mul_ps(_mm512_set1_ps(float(kLevelOffset)),
                                                        _mm512_maskz_permutexvar_ps(kAll16, group_block, d8));
      uint64_t fifth[4] = {};
      if constexpr (L::kHasQh) {
        for (int c = 0; c < 4; ++c) {
          uint32_t qh[2] = {};
          for (int k = 0; k < 2; ++k)
            if (L::kBytes * (2 * c + k) < valid_bytes) std::memcpy(&qh[k], p + L::kBytes * (2 * c + k) + L::qh_offset(), 4);
          fifth[c] = uint64_t(qh[0]) | uint64_t(qh[1]) << 32;
        }
      }
      __m512 part = _mm512_setzero_ps();
      for (int c = 0; c < 4; ++c) {
        // Lanes: block 2c low, 2c high, 2c + 1 low, 2c + 1 high nibbles.
        const __m512i pair = c % 2 == 0 ? _mm512_maskz_shuffle_i64x2(__mmask8(0xFF), qs[c / 2], qs[c / 2], 0x50)
                                        : _mm512_maskz_shuffle_i64x2(__mmask8(0xFF), qs[c / 2], qs[c / 2], 0xFA);
        __m512i levels = _mm512_and_si512(_mm512_maskz_srlv_epi16(kAll32, pair, nibble_shift), low4);
        if constexpr (L::kHasQh) levels = _mm512_or_si512(levels, _mm512_maskz_mov_epi8(fifth[c], bit4));
        const __m512i xq = _mm512_load_si512(x.q + sb * kSuperblock + 64 * c);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels, xq);
        const __m512i scale_index = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c,
                                                      2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                      2 * c + 1, 2 * c + 1, 2 * c + 1);
        const __m512 scale = _mm512_maskz_permutexvar_ps(kAll16, scale_index, d8);
        part = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, dot), scale, part);
      }
      acc = _mm512_fmadd_ps(part, _mm512_set1_ps(x.scale[sb]), acc);
      acc = _mm512_fmadd_ps(offsets, _mm512_loadu_ps(x.group_sums + sb * kGroups), acc);
    }
    y[r] = simd::hsum(acc);
  }
}
#endif

}  // namespace

bool multiply_row_stream(const WeightMatrix& w, const QuantizedX& x, float* y, int64_t r_begin, int64_t r_end) {
  switch (w.type) {
    case GgmlType::Q4_K: rows<tensor::BlockQ4_K, load_q4_k>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q5_K: rows<tensor::BlockQ5_K, load_q5_k>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q6_K: rows<tensor::BlockQ6_K, load_q6_k>(w, x, y, r_begin, r_end); return true;
#ifdef __AVX512VBMI__
    case GgmlType::Q4_0: rows_32<tensor::BlockQ4_0, -8>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q4_1: rows_32<tensor::BlockQ4_1, 0>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q5_0: rows_32<tensor::BlockQ5_0, -16>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q5_1: rows_32<tensor::BlockQ5_1, 0>(w, x, y, r_begin, r_end); return true;
#endif
    default: return false;
  }
}

#else

bool multiply_row_stream(const WeightMatrix&, const QuantizedX&, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
