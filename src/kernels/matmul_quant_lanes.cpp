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
//   per group of G elements: G/4 vpdpbusd into an int32 sum (exact:
//     |sum| <= G * 63 * 127) that starts at zero or, for Q4_0 / Q6_K, at
//     the group's offset in levels times its sum of q; one conversion and
//     one FMA by the 16 rows' group scales into the superblock's f32 partial;
//   per superblock: one FMA by dx, plus the offsets the sums did not take
//     (LaneOffsets: Q4_K's mins as 4 vpdpwssd, else one FMA per group).
// A register tile is 8 batch rows x 16 weight rows; the interleaved panel
// (4 superblocks, 25 KiB) stays in L1 while every batch tile passes over it,
// and the next panel's weights are prefetched a few lines per group.
// The row's result differs from the decode path's (batch <= 4) only in the
// order of f32 additions and in the offsets (exact integers here).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul_quant.h"
#include "kernels/matmul_quant_lanes.h"
#include "tensor/dtype.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
namespace {

using gguf::GgmlType;

constexpr int64_t kLaneSuperblocks = 4;  // superblocks per interleaved panel
constexpr int kBatchTile = 8;            // batch rows per register tile
constexpr __mmask16 kAll16 = 0xFFFF;     // the maskz forms: g++ 12's false "uninitialized" errors otherwise
constexpr __mmask8 kAll8 = 0xFF;

// sum + the 4 levels of each lane of w times the 4 activation bytes at
// `four` (broadcast): vpdpbusd with an embedded {1to16} broadcast, one fused
// load+multiply uop. g++ 12 does not fold _mm512_set1_epi32 of a load into
// vpdpbusd (it emits vpbroadcastd + vpdpbusd: twice the code bytes and uops);
// the folded form measured ~12 % more vpdpbusd per second in a loop of
// 8 chains.
[[gnu::always_inline]] inline __m512i dpbusd_broadcast(__m512i sum, __m512i w, const int8_t* four) {
  asm("vpdpbusd %1%{1to16%}, %2, %0" : "+v"(sum) : "m"(*reinterpret_cast<const int8_t(*)[4]>(four)), "v"(w));
  return sum;
}

// The next panel's weight lines (16 rows x a byte range of each), prefetched
// a few lines per group of the tiles over the current panel, so the requests
// are spread over the compute instead of issued in a burst.
struct PanelPrefetch {
  const uint8_t* row0 = nullptr;  // null: nothing left
  int64_t row_bytes = 0, begin = 0, end = 0, at = 0;
  int row = 0, n_rows = 0, per_group = 0;
  void step() {
    for (int i = 0; i < per_group && row0 != nullptr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(row0 + row * row_bytes + at), _MM_HINT_T0);
      at += 64;
      if (at >= end) {
        at = begin;
        if (++row == n_rows) row0 = nullptr;
      }
    }
  }
};

// y[b0 + b][16 rows] (+)= the panel's n_sb superblocks (from superblock sb0
// of the row) times batch rows b0 .. b0 + MB. G: elements per scale group
// (32 where pairs of 16-element groups share scale and offset, else 16);
// kOffsets: how the offsets are applied (LaneOffsets).
template <int MB, int G, LaneOffsets kOffsets>
void lane_tile(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t b0, int64_t sb0, float* y,
               int64_t ldy, __mmask16 rows, bool accumulate, PanelPrefetch& prefetch) {
  constexpr int kSteps = G / 4;                  // dwords per group
  constexpr int kGroupsPerSb = kSuperblock / G;  // groups per superblock
  constexpr int kStride = G / kGroup;            // group g's entry in the per-16 tables
  constexpr bool kLevelOffset = kOffsets == LaneOffsets::level8 || kOffsets == LaneOffsets::level32;
  constexpr int kLevel = kOffsets == LaneOffsets::level8 ? 8 : 32;
  __m512 acc[MB];
  for (int b = 0; b < MB; ++b) acc[b] = accumulate ? _mm512_maskz_loadu_ps(rows, y + b * ldy) : _mm512_setzero_ps();
  const int64_t x_stride = x.n_sb * kSuperblock;
  for (int64_t s = 0; s < n_sb; ++s) {
    const int64_t sb = sb0 + s;
    const LaneSuperblock& p = panel[s];
    const int8_t* xq[MB];
    for (int b = 0; b < MB; ++b) xq[b] = x.q + (b0 + b) * x_stride + sb * kSuperblock;
    // level8/level32: group g's integer sum starts at -level * (sum of its q),
    // entry g * kStride (G = 32: the pair's sum in the even entry).
    alignas(64) int32_t start[kLevelOffset ? MB : 1][kGroups];
    if constexpr (kLevelOffset) {
      for (int b = 0; b < MB; ++b) {
        __m512i q = _mm512_loadu_si512(x.group_qsums + ((b0 + b) * x.n_sb + sb) * kGroups);
        if constexpr (G == 32) q = _mm512_add_epi32(q, _mm512_maskz_srli_epi64(kAll8, q, 32));
        _mm512_store_si512(start[b], _mm512_mullo_epi32(q, _mm512_set1_epi32(-kLevel)));
      }
    }
    __m512 part[MB];
    for (int b = 0; b < MB; ++b) part[b] = _mm512_setzero_ps();
    for (int g = 0; g < kGroupsPerSb; ++g) {
      prefetch.step();
      __m512i sum[MB];
      for (int b = 0; b < MB; ++b)
        sum[b] = kLevelOffset ? _mm512_set1_epi32(start[b][g * kStride]) : _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int st = 0; st < kSteps; ++st) {
        const int k4 = g * kSteps + st;
        const __m512i w = _mm512_load_si512(p.levels[k4]);
        for (int b = 0; b < MB; ++b) sum[b] = dpbusd_broadcast(sum[b], w, xq[b] + 4 * k4);
      }
      const __m512 scale = _mm512_load_ps(p.scale[g * kStride]);
      for (int b = 0; b < MB; ++b) part[b] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, sum[b]), scale, part[b]);
    }
    for (int b = 0; b < MB; ++b) {
      const int64_t xs = (b0 + b) * x.n_sb + sb;
      if constexpr (kOffsets == LaneOffsets::int_mins) {
        // sum_g m_g * (sum of q over g): exact in int32 (8 x 63 x 4064 < 2^22).
        const int16_t* pairs = x.pair_qsums + xs * (kGroups / 2);
        __m512i mins = _mm512_setzero_si512();
        for (int j = 0; j < kGroups / 4; ++j) {
          int32_t two;
          std::memcpy(&two, pairs + 2 * j, 4);
          mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512(p.min_pairs[j]), _mm512_set1_epi32(two));
        }
        part[b] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, mins), _mm512_load_ps(p.neg_dmin), part[b]);
      }
      acc[b] = _mm512_fmadd_ps(part[b], _mm512_set1_ps(x.scale[xs]), acc[b]);
      if constexpr (kOffsets == LaneOffsets::floats) {
        const float* sums = kStride == 2 ? x.pair_sums + xs * kGroupsPerSb : x.group_sums + xs * kGroups;
#pragma GCC unroll 16
        for (int g = 0; g < kGroupsPerSb; ++g)
          acc[b] = _mm512_fmadd_ps(_mm512_load_ps(p.offset[g * kStride]), _mm512_set1_ps(sums[g]), acc[b]);
      }
    }
  }
  for (int b = 0; b < MB; ++b) _mm512_mask_storeu_ps(y + b * ldy, rows, acc[b]);
}

template <int G, LaneOffsets kOffsets>
void tiles_for_batch(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t batch, int64_t sb0,
                     float* y, int64_t ldy, __mmask16 rows, bool accumulate, PanelPrefetch& prefetch) {
  int64_t b0 = 0;
  for (; b0 + kBatchTile <= batch; b0 += kBatchTile)
    lane_tile<kBatchTile, G, kOffsets>(panel, n_sb, x, b0, sb0, y + b0 * ldy, ldy, rows, accumulate, prefetch);
  float* yb = y + b0 * ldy;
  switch (batch - b0) {
    case 1: lane_tile<1, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 2: lane_tile<2, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 3: lane_tile<3, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 4: lane_tile<4, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 5: lane_tile<5, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 6: lane_tile<6, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    case 7: lane_tile<7, G, kOffsets>(panel, n_sb, x, b0, sb0, yb, ldy, rows, accumulate, prefetch); break;
    default: break;
  }
}

int valid_in(int64_t sb, int64_t cols) { return int(std::min<int64_t>(kSuperblock, cols - sb * kSuperblock)); }

template <int G, LaneOffsets kOffsets>
void multiply_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                    int64_t r_end) {
  const UnpackFn unpack = quant_unpacker(w.type);
  const bool int_scales = has_int_scales(w.type);
  const BuildFn build = fused_builder(w.type);
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const int64_t sb_bytes = kSuperblock / traits.block_size * traits.type_size;
  const auto* base = static_cast<const uint8_t*>(w.data);
  // Scratch on the stack (32 KiB): no per-thread buffers to manage.
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
          }
          blocks.offsets = _mm512_load_si512(offsets);
          build(blocks, panel[s]);
          continue;
        }
        for (int r = 0; r < kLaneRows; ++r) {
          // Lanes past the task's last row repeat it; their sums are not stored.
          const uint8_t* row = base + (g0 + std::min(r, n_rows - 1)) * row_bytes;
          unpack(row, sb, n_valid, stage[r]);
        }
        interleave(stage, int_scales, panel[s]);
      }
      // The next panel: the next superblocks of these rows, or the first of the next 16 rows.
      PanelPrefetch prefetch;
      const int64_t next_g0 = sb0 + kLaneSuperblocks < x.n_sb ? g0 : g0 + kLaneRows;
      const int64_t next_sb0 = next_g0 == g0 ? sb0 + kLaneSuperblocks : 0;
      if (next_g0 < r_end) {
        prefetch.row0 = base + next_g0 * row_bytes;
        prefetch.row_bytes = row_bytes;
        prefetch.n_rows = int(std::min<int64_t>(kLaneRows, r_end - next_g0));
        prefetch.begin = prefetch.at = next_sb0 * sb_bytes;
        prefetch.end = std::min(row_bytes, (next_sb0 + kLaneSuperblocks) * sb_bytes);
        const int64_t lines = prefetch.n_rows * ((prefetch.end - prefetch.begin + 63) / 64);
        const int64_t groups = (batch + kBatchTile - 1) / kBatchTile * n_sb * (kSuperblock / G);
        prefetch.per_group = int((lines + groups - 1) / groups);
      }
      tiles_for_batch<G, kOffsets>(panel, n_sb, x, batch, sb0, y + g0, w.rows, rows, sb0 > 0, prefetch);
    }
  }
}
}  // namespace

bool multiply_rows_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end) {
  if (quant_unpacker(w.type) == nullptr) return false;
  // Q6_K has a scale per 16 elements; every other type shares one per 32.
  switch (lane_offsets(w.type)) {
    case LaneOffsets::level32: multiply_lanes<16, LaneOffsets::level32>(w, x, batch, y, r_begin, r_end); break;
    case LaneOffsets::level8: multiply_lanes<32, LaneOffsets::level8>(w, x, batch, y, r_begin, r_end); break;
    case LaneOffsets::int_mins: multiply_lanes<32, LaneOffsets::int_mins>(w, x, batch, y, r_begin, r_end); break;
    case LaneOffsets::floats: multiply_lanes<32, LaneOffsets::floats>(w, x, batch, y, r_begin, r_end); break;
  }
  return true;
}

#else

bool multiply_rows_lanes(const WeightMatrix&, const QuantizedX&, int64_t, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
