// Batches of more than 4 rows (decode B >= 8, prefill) on the integer path
// with AVX512-VNNI: 16 weight rows in the 16 lanes of one register.
//
// The panel tile (matmul_quant.cpp) keeps a row's levels along the lanes, so
// every (batch row, weight row) pair ends each superblock with a vector to
// convert, scale and later reduce: ~4 vector ops per 8 of dot product. Here
// a superblock of 16 rows is interleaved once (LaneSuperblock: each 32-bit
// lane holds 4 consecutive levels of one row), so one vpdpbusd multiplies
// 4 levels of 16 rows by 4 int8 activations of one batch row broadcast from
// memory, and the group scales, the activation scale and the offsets are
// applied to 16 rows at once:
//   per group of G elements: G/4 vpdpbusd into a zeroed int32 sum (exact:
//     |sum| <= G * 63 * 127), one conversion and one FMA by the 16 rows'
//     group scales into the superblock's f32 partial;
//   per superblock: one FMA by dx, one FMA per group of the offsets with the
//     activation group sums.
// A register tile is 8 batch rows x 16 weight rows; the interleaved panel
// (4 superblocks, 24 KiB) stays in L1 while every batch tile passes over it.
// The row's result differs from the decode path's (batch <= 4) only in the
// order of f32 additions.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/matmul_quant.h"
#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"

namespace bifurcate::kernels::detail {

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
namespace {

using gguf::GgmlType;

constexpr int kLaneRows = 16;          // weight rows per register
constexpr int64_t kLaneSuperblocks = 4;  // superblocks per interleaved panel
constexpr int kBatchTile = 8;          // batch rows per register tile
// All-ones masks: the masked (maskz) forms below are the plain instructions
// without g++ 12's false "used uninitialized" errors (as matmul_simd.h).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;

// One superblock of 16 weight rows, interleaved: levels[k4][r] holds the
// levels of elements 4 k4 .. 4 k4 + 3 of row r (one byte each); scale and
// offset per 16-element group, one lane per row.
struct alignas(64) LaneSuperblock {
  uint32_t levels[kSuperblock / 4][kLaneRows];
  float scale[kGroups][kLaneRows];
  float offset[kGroups][kLaneRows];
};

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

// The K-quants' superblocks are interleaved straight from their blocks (the
// generic unpack-then-transpose above measured over half of a batch-8
// Q4_K matmul): each row's packed level bytes are transposed as they are
// (a 32-bit lane of packed nibbles holds 4 consecutive elements of two
// groups), split into levels afterwards, and the scales are decoded for 16
// rows at once from gathered scale words.
struct RowBlocks {
  const uint8_t* rows[kLaneRows];  // superblock sb's block of each lane's row
  __m512i offsets;                 // the same as byte offsets from rows[0]
};

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
  const __m512 d = half_to_float(dm, false), neg_dmin = _mm512_sub_ps(_mm512_setzero_ps(), half_to_float(dm, true));
  for (int j = 0; j < 8; ++j) {  // sub-block j: the per-16 tables' entry 2j (G = 32 reads only those)
    _mm512_store_ps(out.scale[2 * j], _mm512_mul_ps(byte_to_float(j < 4 ? sc03 : sc47, j % 4, false), d));
    _mm512_store_ps(out.offset[2 * j], _mm512_mul_ps(byte_to_float(j < 4 ? m03 : m47, j % 4, false), neg_dmin));
  }
}

void build_q6_k(const RowBlocks& b, LaneSuperblock& out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const auto shifted = [](__m512i v, int by) {
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
        _mm512_store_si512(out.levels[32 * half + 8 * i + e], _mm512_or_si512(nibble, top));
      }
    }
  }
  constexpr int kScales = offsetof(tensor::BlockQ6_K, scales);
  const __m512 d = half_to_float(gather_word(b, kScales + 14), true);  // scales[14..15], then d
  const __m512 neg32 = _mm512_set1_ps(-32.0f);
  for (int w = 0; w < 4; ++w) {
    const __m512i four = gather_word(b, kScales + 4 * w);
    for (int i = 0; i < 4; ++i) {
      const __m512 scale = _mm512_mul_ps(byte_to_float(four, i, true), d);
      _mm512_store_ps(out.scale[4 * w + i], scale);
      _mm512_store_ps(out.offset[4 * w + i], _mm512_mul_ps(scale, neg32));
    }
  }
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
  const __m512 minus8 = _mm512_set1_ps(-8.0f);
  for (int k = 0; k < 8; ++k) {
    const __m512 d = half_to_float(gather_word(b, kBlock * k), false);
    _mm512_store_ps(out.scale[2 * k], d);
    _mm512_store_ps(out.offset[2 * k], _mm512_mul_ps(d, minus8));
  }
}
#endif

// The fused builder for `type`'s whole superblocks, or null (unpack, then interleave).
using BuildFn = void (*)(const RowBlocks&, LaneSuperblock&);
BuildFn fused_builder(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K: return build_q4_k;
    case GgmlType::Q6_K: return build_q6_k;
#ifdef __AVX512VBMI__
    case GgmlType::Q4_0: return build_q4_0;
#endif
    default: return nullptr;
  }
}

// y[b0 + b][16 rows] (+)= the panel's n_sb superblocks (from superblock sb0
// of the row) times batch rows b0 .. b0 + MB. G: elements per scale group
// (32 where pairs of 16-element groups share scale and offset, else 16).
template <int MB, int G>
void lane_tile(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t b0, int64_t sb0, float* y,
               int64_t ldy, __mmask16 rows, bool accumulate) {
  constexpr int kSteps = G / 4;                  // dwords per group
  constexpr int kGroupsPerSb = kSuperblock / G;  // groups per superblock
  constexpr int kStride = G / kGroup;            // group g's entry in the per-16 tables
  __m512 acc[MB];
  for (int b = 0; b < MB; ++b) acc[b] = accumulate ? _mm512_maskz_loadu_ps(rows, y + b * ldy) : _mm512_setzero_ps();
  const int64_t x_stride = x.n_sb * kSuperblock;
  for (int64_t s = 0; s < n_sb; ++s) {
    const int64_t sb = sb0 + s;
    const LaneSuperblock& p = panel[s];
    const int8_t* xq[MB];
    for (int b = 0; b < MB; ++b) xq[b] = x.q + (b0 + b) * x_stride + sb * kSuperblock;
    __m512 part[MB];
    for (int b = 0; b < MB; ++b) part[b] = _mm512_setzero_ps();
    for (int g = 0; g < kGroupsPerSb; ++g) {
      __m512i sum[MB];
      for (int b = 0; b < MB; ++b) sum[b] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int st = 0; st < kSteps; ++st) {
        const int k4 = g * kSteps + st;
        const __m512i w = _mm512_load_si512(p.levels[k4]);
        for (int b = 0; b < MB; ++b) {
          int32_t four;
          std::memcpy(&four, xq[b] + 4 * k4, 4);
          sum[b] = _mm512_dpbusd_epi32(sum[b], w, _mm512_set1_epi32(four));
        }
      }
      const __m512 scale = _mm512_load_ps(p.scale[g * kStride]);
      for (int b = 0; b < MB; ++b) part[b] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, sum[b]), scale, part[b]);
    }
    for (int b = 0; b < MB; ++b) {
      const int64_t xs = (b0 + b) * x.n_sb + sb;
      acc[b] = _mm512_fmadd_ps(part[b], _mm512_set1_ps(x.scale[xs]), acc[b]);
      const float* sums = kStride == 2 ? x.pair_sums + xs * kGroupsPerSb : x.group_sums + xs * kGroups;
#pragma GCC unroll 16
      for (int g = 0; g < kGroupsPerSb; ++g)
        acc[b] = _mm512_fmadd_ps(_mm512_load_ps(p.offset[g * kStride]), _mm512_set1_ps(sums[g]), acc[b]);
    }
  }
  for (int b = 0; b < MB; ++b) _mm512_mask_storeu_ps(y + b * ldy, rows, acc[b]);
}

template <int G>
void tiles_for_batch(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t batch, int64_t sb0,
                     float* y, int64_t ldy, __mmask16 rows, bool accumulate) {
  int64_t b0 = 0;
  for (; b0 + kBatchTile <= batch; b0 += kBatchTile)
    lane_tile<kBatchTile, G>(panel, n_sb, x, b0, sb0, y + b0 * ldy, ldy, rows, accumulate);
  float* yb = y + b0 * ldy;
  switch (batch - b0) {
    case 1: lane_tile<1, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 2: lane_tile<2, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 3: lane_tile<3, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 4: lane_tile<4, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 5: lane_tile<5, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 6: lane_tile<6, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    case 7: lane_tile<7, G>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate); break;
    default: break;
  }
}

int valid_in(int64_t sb, int64_t cols) { return int(std::min<int64_t>(kSuperblock, cols - sb * kSuperblock)); }

template <int G>
void multiply_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                    int64_t r_end) {
  const UnpackFn unpack = quant_unpacker(w.type);
  const bool int_scales = has_int_scales(w.type);
  const BuildFn build = fused_builder(w.type);
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const int64_t sb_bytes = kSuperblock / traits.block_size * traits.type_size;
  const auto* base = static_cast<const uint8_t*>(w.data);
  // Scratch on the stack (31 KiB): no per-thread buffers to manage.
  UnpackedSuperblock stage[kLaneRows];
  LaneSuperblock panel[kLaneSuperblocks];
  for (int64_t g0 = r_begin; g0 < r_end; g0 += kLaneRows) {
    const int n_rows = int(std::min<int64_t>(kLaneRows, r_end - g0));
    const __mmask16 rows = __mmask16((1u << n_rows) - 1);
    for (int64_t sb0 = 0; sb0 < x.n_sb; sb0 += kLaneSuperblocks) {
      const int64_t n_sb = std::min(kLaneSuperblocks, x.n_sb - sb0);
      for (int64_t s = 0; s < n_sb; ++s) {
        const int64_t sb = sb0 + s;
        const int n_valid = valid_in(sb, w.cols);
        if (build != nullptr && n_valid == kSuperblock) {
          RowBlocks blocks;
          alignas(64) int32_t offsets[kLaneRows];
          for (int r = 0; r < kLaneRows; ++r) {
            // Lanes past the task's last row repeat it; their sums are not stored.
            offsets[r] = int32_t(std::min(r, n_rows - 1) * row_bytes);
            blocks.rows[r] = base + g0 * row_bytes + offsets[r] + sb * sb_bytes;
            const uint8_t* ahead = blocks.rows[r] + kLaneSuperblocks * sb_bytes;
            for (int64_t line = 0; line < sb_bytes; line += 64)
              _mm_prefetch(reinterpret_cast<const char*>(ahead + line), _MM_HINT_T0);
          }
          blocks.offsets = _mm512_load_si512(offsets);
          build(blocks, panel[s]);
          continue;
        }
        for (int r = 0; r < kLaneRows; ++r) {
          // Lanes past the task's last row repeat it; their sums are not stored.
          const uint8_t* row = base + (g0 + std::min(r, n_rows - 1)) * row_bytes;
          const uint8_t* ahead = row + (sb + kLaneSuperblocks) * sb_bytes;
          for (int64_t line = 0; line < sb_bytes; line += 64)
            _mm_prefetch(reinterpret_cast<const char*>(ahead + line), _MM_HINT_T0);
          unpack(row, sb, n_valid, stage[r]);
        }
        interleave(stage, int_scales, panel[s]);
      }
      tiles_for_batch<G>(panel, n_sb, x, batch, sb0, y + g0, w.rows, rows, sb0 > 0);
    }
  }
}

}  // namespace

bool multiply_rows_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end) {
  if (quant_unpacker(w.type) == nullptr) return false;
  // Q6_K has a scale per 16 elements; every other type shares one per 32.
  if (w.type == GgmlType::Q6_K)
    multiply_lanes<16>(w, x, batch, y, r_begin, r_end);
  else
    multiply_lanes<32>(w, x, batch, y, r_begin, r_end);
  return true;
}

#else

bool multiply_rows_lanes(const WeightMatrix&, const QuantizedX&, int64_t, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace bifurcate::kernels::detail
