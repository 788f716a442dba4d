// Per-type unpacking of weight superblocks into the common form of
// matmul_quant.h (levels 0..63, a float scale and offset per 16 elements).
// AVX2 only (the baseline of every build): unpacking is a small share of the
// work and runs once per weight superblock whatever the batch.
#include <immintrin.h>

#include <cstring>

#include "kernels/matmul_quant.h"
#include "tensor/quant_blocks.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;
using tensor::kQK_K;

const __m256i kLow4 = _mm256_set1_epi8(0x0F);

// Zeroes what a short superblock (n_valid < 256) leaves unset.
void clear_tail(int n_valid, UnpackedSuperblock& out) {
  if (n_valid >= kSuperblock) return;
  std::memset(out.levels + n_valid, 0, size_t(kSuperblock - n_valid));
  for (int g = n_valid / kGroup; g < kGroups; ++g) out.scale[g] = out.offset[g] = 0.0f;
}

// 16 packed bytes -> 32 levels: low nibbles are elements 0..15, high 16..31.
__m256i split_nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, kLow4);
}

// Bit j of the little-endian 32-bit qh as 0x10 in byte j (the Q5 fifth bit).
__m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i select = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

void store32(uint8_t* dst, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), v); }

// The 32-element block types: block k of the superblock fills groups 2k and 2k+1.
template <class Block, class Decode>
void unpack_blocks(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out, Decode decode) {
  const Block* blocks = reinterpret_cast<const Block*>(row) + sb * (kSuperblock / 32);
  for (int k = 0; k < n_valid / 32; ++k) {
    float scale, offset;
    store32(out.levels + 32 * k, decode(blocks[k], scale, offset));
    out.scale[2 * k] = out.scale[2 * k + 1] = scale;
    out.offset[2 * k] = out.offset[2 * k + 1] = offset;
  }
  clear_tail(n_valid, out);
}

void unpack_q4_0(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out) {
  unpack_blocks<tensor::BlockQ4_0>(row, sb, n_valid, out, [](const tensor::BlockQ4_0& b, float& s, float& o) {
    s = f16_to_f32(b.d);
    o = -8.0f * s;
    return split_nibbles(b.qs);
  });
}

void unpack_q4_1(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out) {
  unpack_blocks<tensor::BlockQ4_1>(row, sb, n_valid, out, [](const tensor::BlockQ4_1& b, float& s, float& o) {
    s = f16_to_f32(b.d);
    o = f16_to_f32(b.m);
    return split_nibbles(b.qs);
  });
}

void unpack_q5_0(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out) {
  unpack_blocks<tensor::BlockQ5_0>(row, sb, n_valid, out, [](const tensor::BlockQ5_0& b, float& s, float& o) {
    s = f16_to_f32(b.d);
    o = -16.0f * s;
    return _mm256_or_si256(split_nibbles(b.qs), fifth_bits(b.qh));
  });
}

void unpack_q5_1(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out) {
  unpack_blocks<tensor::BlockQ5_1>(row, sb, n_valid, out, [](const tensor::BlockQ5_1& b, float& s, float& o) {
    s = f16_to_f32(b.d);
    o = f16_to_f32(b.m);
    return _mm256_or_si256(split_nibbles(b.qs), fifth_bits(b.qh));
  });
}

// 16 bytes (one per 16-element group) times f -> out[0..16).
void store_group_floats(__m128i bytes, bool is_signed, float f, float* out) {
  const __m256 lo = _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes));
  const __m256 hi = _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8))
                                                 : _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)));
  const __m256 fv = _mm256_set1_ps(f);
  _mm256_store_ps(out, _mm256_mul_ps(lo, fv));
  _mm256_store_ps(out + 8, _mm256_mul_ps(hi, fv));
}

// Q4_K / Q5_K: sub-block s (32 elements, groups 2s and 2s+1) has scale d*sc_s
// and offset -dmin*m_s. The 12 packed bytes are rearranged with 32-bit word
// operations into sc_0..sc_7 (words 0-1) and m_0..m_7 (words 2-3); the bit
// layout is scale_min_q4_k's.
template <class Block>
void k_scales(const Block& b, UnpackedSuperblock& out) {
  uint32_t w[4];
  std::memcpy(w, b.scales, 12);
  constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  w[3] = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);  // m_4..m_7
  const uint32_t mins_low = w[1] & kLow6;                         // m_0..m_3
  w[1] = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);         // sc_4..sc_7
  w[2] = mins_low;
  w[0] &= kLow6;  // sc_0..sc_3
  // Built in registers: a 16-byte load of the four words just stored would
  // miss store forwarding (measured 30 % of a batch-1 Q4_K matmul).
  const __m128i packed = _mm_setr_epi32(int(w[0]), int(w[1]), int(w[2]), int(w[3]));
  // Each sub-block's byte twice: one per 16-element group.
  const __m128i scales = _mm_unpacklo_epi8(packed, packed);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out.int_scale), _mm256_cvtepu8_epi16(scales));
  out.d = f16_to_f32(b.d);
  store_group_floats(_mm_unpackhi_epi8(packed, packed), false, -f16_to_f32(b.dmin), out.offset);
}

void unpack_q4_k(const uint8_t* row, int64_t sb, int /*n_valid*/, UnpackedSuperblock& out) {
  const auto& b = reinterpret_cast<const tensor::BlockQ4_K*>(row)[sb];
  for (int c = 0; c < 4; ++c) {  // 32 bytes: low nibbles sub-block 2c, high 2c+1
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    store32(out.levels + 64 * c, _mm256_and_si256(v, kLow4));
    store32(out.levels + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), kLow4));
  }
  k_scales(b, out);
}

void unpack_q5_k(const uint8_t* row, int64_t sb, int /*n_valid*/, UnpackedSuperblock& out) {
  const auto& b = reinterpret_cast<const tensor::BlockQ5_K*>(row)[sb];
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  const __m256i one = _mm256_set1_epi8(1);
  for (int c = 0; c < 4; ++c) {  // sub-block s takes bit s of qh[l] as bit 4
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
    store32(out.levels + 64 * c, _mm256_or_si256(_mm256_and_si256(v, kLow4), _mm256_slli_epi16(h0, 4)));
    store32(out.levels + 64 * c + 32,
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), kLow4), _mm256_slli_epi16(h1, 4)));
  }
  k_scales(b, out);
}

// Q6_K: levels 0..63 (stored q), group g scale d*sc_g, offset -32 d sc_g.
void unpack_q6_k(const uint8_t* row, int64_t sb, int /*n_valid*/, UnpackedSuperblock& out) {
  const auto& b = reinterpret_cast<const tensor::BlockQ6_K*>(row)[sb];
  const __m256i mask_hi = _mm256_set1_epi8(0x30);
  for (int half = 0; half < 2; ++half) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
    uint8_t* y = out.levels + 128 * half;
    // Element l + 32 i: bits 2i..2i+1 of qh[l] become bits 4..5.
    store32(y, _mm256_or_si256(_mm256_and_si256(ql0, kLow4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), mask_hi)));
    store32(y + 32,
            _mm256_or_si256(_mm256_and_si256(ql1, kLow4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), mask_hi)));
    store32(y + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), kLow4),
                                    _mm256_and_si256(qh, mask_hi)));
    store32(y + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), kLow4),
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), mask_hi)));
  }
  const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  const float d = f16_to_f32(b.d);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out.int_scale), _mm256_cvtepi8_epi16(scales));
  out.d = d;
  store_group_floats(scales, true, -32.0f * d, out.offset);
}

}  // namespace

bool has_int_scales(GgmlType type) {
  return type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q6_K;
}

UnpackFn quant_unpacker(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return unpack_q4_0;
    case GgmlType::Q4_1: return unpack_q4_1;
    case GgmlType::Q5_0: return unpack_q5_0;
    case GgmlType::Q5_1: return unpack_q5_1;
    case GgmlType::Q4_K: return unpack_q4_k;
    case GgmlType::Q5_K: return unpack_q5_k;
    case GgmlType::Q6_K: return unpack_q6_k;
    default: return nullptr;
  }
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
