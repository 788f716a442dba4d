// Batch 1 of the K-quants on AVX-512: one weight row at a time, each
// superblock unpacked in registers and multiplied at once (no panel store
// and reload). The operations per superblock are the panel tile's
// (quant_tile_int_scales with MB = 1) in the same order, and the integer
// part is exact, so the results are bit-identical to it.
#include <immintrin.h>

#include <cstring>

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

constexpr int64_t kPrefetchAhead = 8192;  // bytes, as the panel path's row streams
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

[[gnu::always_inline]] inline void load_q4_k(const tensor::BlockQ4_K& b, Superblock& w) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    w.levels[c] = join(_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
  }
  k_scales(b, w);
}

void load_q5_k(const tensor::BlockQ5_K& b, Superblock& w) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int c = 0; c < 4; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
    w.levels[c] = join(_mm256_or_si256(_mm256_and_si256(v, low4), _mm256_slli_epi16(h0, 4)),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), _mm256_slli_epi16(h1, 4)));
  }
  k_scales(b, w);
}

void load_q6_k(const tensor::BlockQ6_K& b, Superblock& w) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), hi2 = _mm256_set1_epi8(0x30);
  for (int half = 0; half < 2; ++half) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
    const __m256i y0 = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
    const __m256i y1 = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
    const __m256i y2 =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, hi2));
    const __m256i y3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
    w.levels[2 * half] = join(y0, y1);
    w.levels[2 * half + 1] = join(y2, y3);
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

}  // namespace

bool multiply_row_stream(const WeightMatrix& w, const QuantizedX& x, float* y, int64_t r_begin, int64_t r_end) {
  switch (w.type) {
    case GgmlType::Q4_K: rows<tensor::BlockQ4_K, load_q4_k>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q5_K: rows<tensor::BlockQ5_K, load_q5_k>(w, x, y, r_begin, r_end); return true;
    case GgmlType::Q6_K: rows<tensor::BlockQ6_K, load_q6_k>(w, x, y, r_begin, r_end); return true;
    default: return false;
  }
}

#else

bool multiply_row_stream(const WeightMatrix&, const QuantizedX&, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
