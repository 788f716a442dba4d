// Getting a superblock of 16 weight rows into the interleaved form of
// matmul_quant_lanes.h: generically (each row unpacked, then 16x16 32-bit
// transposes) or, for Q4_K, Q6_K and Q4_0, straight from the blocks.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/matmul_quant_lanes.h"
#include "tensor/quant_blocks.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
namespace {

// All-ones masks: the masked (maskz) forms below are the plain instructions
// without g++ 12's false "used uninitialized" errors (as matmul_simd.h).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;
constexpr __mmask32 kAll32 = 0xFFFFFFFF;

// In-register transpose of a 16 x 16 matrix of 32-bit elements: afterwards
// v[i] lane r is what v[r] lane i was.
[[gnu::always_inline]] inline void transpose16(__m512i (&v)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_epi32(kAll16, v[i], v[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_epi32(kAll16, v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_maskz_unpacklo_epi64(kAll8, t[i], t[i + 2]);
    v[i + 1] = _mm512_maskz_unpackhi_epi64(kAll8, t[i], t[i + 2]);
    v[i + 2] = _mm512_maskz_unpacklo_epi64(kAll8, t[i + 1], t[i + 3]);
    v[i + 3] = _mm512_maskz_unpackhi_epi64(kAll8, t[i + 1], t[i + 3]);
  }
  // Now v[4a + j] holds, in each 128-bit lane q, elements 4q..4q+3 of
  // column j of rows 4a..4a+3 (per 128-bit lane: rows 4a..4a+3, column 4q+j).
  for (int a = 0; a < 4; a += 2) {
    for (int j = 0; j < 4; ++j) {
      t[4 * a + j] = _mm512_maskz_shuffle_i32x4(kAll16, v[4 * a + j], v[4 * a + 4 + j], 0x88);
      t[4 * a + 4 + j] = _mm512_maskz_shuffle_i32x4(kAll16, v[4 * a + j], v[4 * a + 4 + j], 0xDD);
    }
  }
  for (int j = 0; j < 8; ++j) {
    v[j] = _mm512_maskz_shuffle_i32x4(kAll16, t[j], t[j + 8], 0x88);
    v[j + 8] = _mm512_maskz_shuffle_i32x4(kAll16, t[j], t[j + 8], 0xDD);
  }
}

// The 16 group scales of one unpacked row as floats.
__m512 row_scales(const UnpackedSuperblock& s, bool int_scales) {
  if (!int_scales) return _mm512_load_ps(s.scale);
  const __m512i wide = _mm512_maskz_cvtepi16_epi32(kAll16, _mm256_load_si256(reinterpret_cast<const __m256i*>(s.int_scale)));
  return _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(kAll16, wide), _mm512_set1_ps(s.d));
}


// v[d] lane r = 32-bit word d of the 64 bytes at `at` in lane r's block.
[[gnu::always_inline]] inline void load_transposed(const RowBlocks& b, int at, __m512i (&v)[16]) {
  for (int r = 0; r < kLaneRows; ++r) v[r] = _mm512_loadu_si512(b.rows[r] + at);
  transpose16(v);
}
__m512i gather_word(const RowBlocks& b, int at) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), kAll16, b.offsets, b.rows[0] + at, 1);
}
// The f16 in the low (or, high = true, high) half of each lane as f32.
__m512 half_to_float(__m512i v, bool high) {
  if (high) v = _mm512_maskz_srli_epi32(kAll16, v, 16);
  return _mm512_maskz_cvtph_ps(kAll16, _mm512_maskz_cvtepi32_epi16(kAll16, v));
}
// Byte `i` of each lane, unsigned or sign-extended, as f32.
__m512 byte_to_float(__m512i v, int i, bool is_signed) {
  const __m512i top = _mm512_maskz_slli_epi32(kAll16, v, unsigned(24 - 8 * i));
  const __m512i value = is_signed ? _mm512_maskz_srai_epi32(kAll16, top, 24) : _mm512_maskz_srli_epi32(kAll16, top, 24);
  return _mm512_maskz_cvtepi32_ps(kAll16, value);
}

// vpshufb controls for build_q4_k's int16 mins: pick[h] widens bytes 2h and
// 2h + 1 of each dword to the two int16 halves of that dword (within 128-bit
// lanes: dword p of a lane is bytes 4p..4p+3). A constant, not rebuilt per
// superblock.
struct MinPairPick {
  alignas(64) uint32_t pick[2][16];
};
constexpr MinPairPick make_min_pair_pick() {
  MinPairPick t{};
  for (uint32_t i = 0; i < 16; ++i) {
    const uint32_t p = 4 * (i % 4);
    for (uint32_t h = 0; h < 2; ++h) t.pick[h][i] = (p + 2 * h) | 0x8000u | (p + 2 * h + 1) << 16 | 0x80000000u;
  }
  return t;
}
constexpr MinPairPick kMinPairPick = make_min_pair_pick();

void build_q4_k(const RowBlocks& b, LaneSuperblock& out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  constexpr int kQs = offsetof(tensor::BlockQ4_K, qs);
  for (int half = 0; half < 2; ++half) {
    __m512i v[16];
    load_transposed(b, kQs + 64 * half, v);
    for (int d = 0; d < 16; ++d) {  // qs word 16 half + d: chunk c, low nibbles group k4 16c + e, high 16c + 8 + e
      const int c = 2 * half + d / 8, e = d % 8;
      _mm512_store_si512(out.levels[16 * c + e], _mm512_and_si512(v[d], low4));
      _mm512_store_si512(out.levels[16 * c + 8 + e], _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, v[d], 4), low4));
    }
  }
  // scale_min_q4_k's layout, as k_scales (matmul_quant_unpack.cpp) with one row per lane.
  const __m512i dm = gather_word(b, 0), s0 = gather_word(b, 4), s1 = gather_word(b, 8), s2 = gather_word(b, 12);
  const __m512i low6 = _mm512_set1_epi8(0x3F), low2 = _mm512_set1_epi8(0x03);
  const auto high2 = [&](__m512i w) {
    return _mm512_maskz_slli_epi32(kAll16, _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, w, 6), low2), 4);
  };
  const __m512i sc03 = _mm512_and_si512(s0, low6), m03 = _mm512_and_si512(s1, low6);
  const __m512i sc47 = _mm512_or_si512(_mm512_and_si512(s2, low4), high2(s0));
  const __m512i m47 = _mm512_or_si512(_mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, s2, 4), low4), high2(s1));
  const __m512 d = half_to_float(dm, false);
  for (int j = 0; j < 8; ++j)  // sub-block j: the per-16 table's entry 2j (G = 32 reads only those)
    _mm512_store_ps(out.scale[2 * j], _mm512_mul_ps(byte_to_float(j < 4 ? sc03 : sc47, j % 4, false), d));
  // LaneOffsets::int_mins: bytes m_2j, m_2j+1 of each lane widened to int16.
  for (int j = 0; j < 4; ++j)
    _mm512_store_si512(out.min_pairs[j],
                       _mm512_shuffle_epi8(j < 2 ? m03 : m47, _mm512_load_si512(kMinPairPick.pick[j % 2])));
  _mm512_store_ps(out.neg_dmin, _mm512_sub_ps(_mm512_setzero_ps(), half_to_float(dm, true)));
}

// Q6_K's levels (0..63), emitted as q4_k_levels does.
template <class Emit>
[[gnu::always_inline]] inline void q6_k_levels(const RowBlocks& b, Emit&& emit) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const auto shifted = [&](__m512i v, int by) {  // [&]: a captureless lambda's function-pointer thunk is compiled outside the pragma's target
    return by >= 0 ? _mm512_maskz_slli_epi32(kAll16, v, unsigned(by)) : _mm512_maskz_srli_epi32(kAll16, v, unsigned(-by));
  };
  __m512i qh[16];
  load_transposed(b, offsetof(tensor::BlockQ6_K, qh), qh);
  for (int half = 0; half < 2; ++half) {
    __m512i ql[16];
    load_transposed(b, offsetof(tensor::BlockQ6_K, ql) + 64 * half, ql);
    for (int e = 0; e < 8; ++e) {  // elements 128 half + 4e + 32 i, i = 0..3 (unpack_q6_k's order)
      const __m512i lo = ql[e], hi = ql[8 + e], h = qh[8 * half + e];
      const __m512i low_nibbles[2] = {lo, hi};
      for (int i = 0; i < 4; ++i) {
        const __m512i nibble = i < 2 ? _mm512_and_si512(low_nibbles[i], low4)
                                     : _mm512_and_si512(shifted(low_nibbles[i - 2], -4), low4);
        const __m512i top = _mm512_and_si512(shifted(h, 4 - 2 * i), bits45);
        emit(32 * half + 8 * i + e, _mm512_or_si512(nibble, top));
      }
    }
  }
}
constexpr int kQ6kScales = offsetof(tensor::BlockQ6_K, scales);
__m512 q6_k_d(const RowBlocks& b) { return half_to_float(gather_word(b, kQ6kScales + 14), true); }  // scales[14..15], then d

void build_q6_k(const RowBlocks& b, LaneSuperblock& out) {
  q6_k_levels(b, [&out](int k4, __m512i v) { _mm512_store_si512(out.levels[k4], v); });
  const __m512 d = q6_k_d(b);
  for (int w = 0; w < 4; ++w) {  // offsets: LaneOffsets::level32
    const __m512i four = gather_word(b, kQ6kScales + 4 * w);
    for (int i = 0; i < 4; ++i) _mm512_store_ps(out.scale[4 * w + i], _mm512_mul_ps(byte_to_float(four, i, true), d));
  }
}

// ---- Folded superblocks (FoldedSuperblock): w = (level - 32) * int scale, split 64 hi + lo ----
// Per group and lane: the vpmaddubsw multipliers (the int scale s as bytes
// {s, 0, s, 0}: products of levels 0 and 2; {0, s, 0, s}: 1 and 3) and
// 32 s in both int16 halves.
struct alignas(64) FoldScales {
  uint32_t even[kGroups][kLaneRows], odd[kGroups][kLaneRows], offset[kGroups][kLaneRows];
};
// s: one int scale per lane (int32, sign-extended).
void set_fold_scales(FoldScales& f, int g, __m512i s) {
  const __m512i byte = _mm512_and_si512(s, _mm512_set1_epi32(0xFF));
  const __m512i even = _mm512_or_si512(byte, _mm512_maskz_slli_epi32(kAll16, byte, 16));
  _mm512_store_si512(f.even[g], even);
  _mm512_store_si512(f.odd[g], _mm512_maskz_slli_epi32(kAll16, even, 8));
  const __m512i t = _mm512_and_si512(_mm512_maskz_slli_epi32(kAll16, s, 5), _mm512_set1_epi32(0xFFFF));
  _mm512_store_si512(f.offset[g], _mm512_or_si512(t, _mm512_maskz_slli_epi32(kAll16, t, 16)));
}
// vpermt2b control: output bytes 4l .. 4l + 3 = the low bytes of int16 lane
// 2l of `even`, 2l of `odd`, 2l + 1 of `even`, 2l + 1 of `odd` (w of levels 0-3).
struct LowBytePick {
  alignas(64) uint8_t index[64];
};
constexpr LowBytePick make_low_byte_pick() {
  LowBytePick t{};
  for (int l = 0; l < 16; ++l) {
    t.index[4 * l + 0] = uint8_t(4 * l);
    t.index[4 * l + 1] = uint8_t(64 + 4 * l);
    t.index[4 * l + 2] = uint8_t(4 * l + 2);
    t.index[4 * l + 3] = uint8_t(64 + 4 * l + 2);
  }
  return t;
}
constexpr LowBytePick kLowBytePick = make_low_byte_pick();

// Stores levels v (elements 4 k4 .. 4 k4 + 3 of group g) folded: w = v * s - 32 s
// (exact in int16: |w| <= 32 * 128), lo = w & 63, hi = w >> 6 (arithmetic).
[[gnu::always_inline]] inline void fold(const FoldScales& f, int g, int k4, __m512i v, FoldedSuperblock& out) {
  __m512i even = _mm512_maddubs_epi16(v, _mm512_load_si512(f.even[g]));
  __m512i odd = _mm512_maddubs_epi16(v, _mm512_load_si512(f.odd[g]));
  even = _mm512_sub_epi16(even, _mm512_load_si512(f.offset[g]));
  odd = _mm512_sub_epi16(odd, _mm512_load_si512(f.offset[g]));
  const __m512i pick = _mm512_load_si512(kLowBytePick.index);
  const __m512i lo = _mm512_maskz_permutex2var_epi8(~__mmask64(0), even, pick, odd);
  _mm512_store_si512(out.lo[k4], _mm512_and_si512(lo, _mm512_set1_epi8(0x3F)));
  _mm512_store_si512(out.hi[k4], _mm512_maskz_permutex2var_epi8(~__mmask64(0), _mm512_maskz_srai_epi16(kAll32, even, 6), pick,
                                                                 _mm512_maskz_srai_epi16(kAll32, odd, 6)));
}

void build_q6_k_folded(const RowBlocks& b, FoldedSuperblock& out) {
  FoldScales f;
  for (int w = 0; w < 4; ++w) {  // groups 4w .. 4w + 3: 16 elements, k4 4g .. 4g + 3
    const __m512i four = gather_word(b, kQ6kScales + 4 * w);
    for (int i = 0; i < 4; ++i)
      set_fold_scales(f, 4 * w + i, _mm512_maskz_srai_epi32(kAll16, _mm512_maskz_slli_epi32(kAll16, four, unsigned(24 - 8 * i)), 24));
  }
  q6_k_levels(b, [&](int k4, __m512i v) { fold(f, k4 / 4, k4, v, out); });
  _mm512_store_ps(out.d, q6_k_d(b));
}

#ifdef __AVX512VBMI__
// Q4_0: 8 blocks of {f16 d, 16 bytes of nibbles} (18 bytes); block k's low
// nibbles are elements 32k..32k+15, its high ones 32k+16..32k+31. Each row's
// 128 nibble bytes are first made contiguous (vpermt2b), then transposed.
// Whole superblocks only (the caller unpacks a short last one generically).
void build_q4_0(const RowBlocks& b, LaneSuperblock& out) {
  constexpr int kBlock = sizeof(tensor::BlockQ4_0), kQs = offsetof(tensor::BlockQ4_0, qs);
  alignas(64) uint8_t index[2][64];  // half h: byte 16j + i is nibble byte i of block 4h + j
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 16; ++i) index[h][16 * j + i] = uint8_t(kBlock * (4 * h + j) + kQs + i - 64 * h);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int h = 0; h < 2; ++h) {
    const __m512i idx = _mm512_load_si512(index[h]);
    __m512i v[16];
    for (int r = 0; r < kLaneRows; ++r) {
      const uint8_t* at = b.rows[r] + 64 * h;
      // The second half's second source is the superblock's last 16 bytes (144 = 128 + 16).
      const __m512i second = h == 0 ? _mm512_loadu_si512(at + 64) : _mm512_maskz_loadu_epi8(0xFFFF, at + 64);
      v[r] = _mm512_maskz_permutex2var_epi8(~__mmask64(0), _mm512_loadu_si512(at), idx, second);
    }
    transpose16(v);
    for (int d = 0; d < 16; ++d) {  // block k = 4h + d/4, word e = d % 4: k4 8k + e (low), 8k + 4 + e (high)
      const int k = 4 * h + d / 4, e = d % 4;
      _mm512_store_si512(out.levels[8 * k + e], _mm512_and_si512(v[d], low4));
      _mm512_store_si512(out.levels[8 * k + 4 + e], _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, v[d], 4), low4));
    }
  }
  for (int k = 0; k < 8; ++k)  // offsets: LaneOffsets::level8
    _mm512_store_ps(out.scale[2 * k], half_to_float(gather_word(b, kBlock * k), false));
}
#endif

}  // namespace

void interleave(const UnpackedSuperblock (&rows)[kLaneRows], bool int_scales, LaneSuperblock& out) {
  __m512i v[16];
  for (int j = 0; j < kSuperblock / 64; ++j) {
    for (int r = 0; r < kLaneRows; ++r) v[r] = _mm512_load_si512(rows[r].levels + 64 * j);
    transpose16(v);
    for (int i = 0; i < 16; ++i) _mm512_store_si512(out.levels[16 * j + i], v[i]);
  }
  for (int r = 0; r < kLaneRows; ++r) v[r] = _mm512_castps_si512(row_scales(rows[r], int_scales));
  transpose16(v);
  for (int g = 0; g < kGroups; ++g) _mm512_store_si512(out.scale[g], v[g]);
  for (int r = 0; r < kLaneRows; ++r) v[r] = _mm512_castps_si512(_mm512_load_ps(rows[r].offset));
  transpose16(v);
  for (int g = 0; g < kGroups; ++g) _mm512_store_si512(out.offset[g], v[g]);
}

LaneOffsets lane_offsets(gguf::GgmlType type) {
  switch (type) {
    case gguf::GgmlType::Q4_K: return LaneOffsets::int_mins;  // always built by build_q4_k (whole superblocks)
    case gguf::GgmlType::Q6_K: return LaneOffsets::level32;
    case gguf::GgmlType::Q4_0: return LaneOffsets::level8;
    default: return LaneOffsets::floats;
  }
}

BuildFn fused_builder(gguf::GgmlType type) {
  switch (type) {
    case gguf::GgmlType::Q4_K: return build_q4_k;
    case gguf::GgmlType::Q6_K: return build_q6_k;
#ifdef __AVX512VBMI__
    case gguf::GgmlType::Q4_0: return build_q4_0;
#endif
    default: return nullptr;
  }
}

FoldedBuildFn folded_builder(gguf::GgmlType type) {
  switch (type) {
    case gguf::GgmlType::Q6_K: return build_q6_k_folded;
    default: return nullptr;
  }
}

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
