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
// From batch 16 on, with AMX (kernels/amx.h), tiles of 16 batch rows x 16
// weight rows make the integer sums instead (the AMX section below).
// The row's result differs from the decode path's (batch <= 4) only in the
// order of f32 additions and in the offsets (exact integers here).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/amx.h"
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

// level8/level32: group g's integer sum starts at -level * (sum of its q),
// entry g * kStride of `start` (G = 32: the pair's sum in the even entry).
// xs: the batch row's superblock, (b * x.n_sb + sb).
template <int G, LaneOffsets kOffsets>
void group_starts(const QuantizedX& x, int64_t xs, int32_t (&start)[kGroups]) {
  constexpr int kLevel = kOffsets == LaneOffsets::level8 ? 8 : 32;
  __m512i q = _mm512_loadu_si512(x.group_qsums + xs * kGroups);
  if constexpr (G == 32) q = _mm512_add_epi32(q, _mm512_maskz_srli_epi64(kAll8, q, 32));
  _mm512_store_si512(start, _mm512_mullo_epi32(q, _mm512_set1_epi32(-kLevel)));
}

// The end of a superblock for one batch row: `part` (the group sums times
// their scales) plus Q4_K's mins, times dx, into acc, plus the f32 offsets.
template <int G, LaneOffsets kOffsets, class Panel>
[[gnu::always_inline]] inline __m512 finish_superblock(const Panel& p, const QuantizedX& x, int64_t xs,
                                                       __m512 part, __m512 acc) {
  constexpr int kGroupsPerSb = kSuperblock / G, kStride = G / kGroup;
  if constexpr (kOffsets == LaneOffsets::int_mins) {
    // sum_g m_g * (sum of q over g): exact in int32 (8 x 63 x 4064 < 2^22).
    const int16_t* pairs = x.pair_qsums + xs * (kGroups / 2);
    __m512i mins = _mm512_setzero_si512();
    for (int j = 0; j < kGroups / 4; ++j) {
      int32_t two;
      std::memcpy(&two, pairs + 2 * j, 4);
      mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512(p.min_pairs[j]), _mm512_set1_epi32(two));
    }
    part = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, mins), _mm512_load_ps(p.neg_dmin), part);
  }
  acc = _mm512_fmadd_ps(part, _mm512_set1_ps(x.scale[xs]), acc);
  if constexpr (kOffsets == LaneOffsets::floats) {
    const float* sums = kStride == 2 ? x.pair_sums + xs * kGroupsPerSb : x.group_sums + xs * kGroups;
#pragma GCC unroll 16
    for (int g = 0; g < kGroupsPerSb; ++g)
      acc = _mm512_fmadd_ps(_mm512_load_ps(p.offset[g * kStride]), _mm512_set1_ps(sums[g]), acc);
  }
  return acc;
}

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
  __m512 acc[MB];
  for (int b = 0; b < MB; ++b) acc[b] = accumulate ? _mm512_maskz_loadu_ps(rows, y + b * ldy) : _mm512_setzero_ps();
  const int64_t x_stride = x.n_sb * kSuperblock;
  for (int64_t s = 0; s < n_sb; ++s) {
    const int64_t sb = sb0 + s;
    const LaneSuperblock& p = panel[s];
    const int8_t* xq[MB];
    for (int b = 0; b < MB; ++b) xq[b] = x.q + (b0 + b) * x_stride + sb * kSuperblock;
    alignas(64) int32_t start[kLevelOffset ? MB : 1][kGroups];
    if constexpr (kLevelOffset) {
      for (int b = 0; b < MB; ++b) group_starts<G, kOffsets>(x, (b0 + b) * x.n_sb + sb, start[b]);
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
    for (int b = 0; b < MB; ++b) acc[b] = finish_superblock<G, kOffsets>(p, x, (b0 + b) * x.n_sb + sb, part[b], acc[b]);
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

// ---- AMX (amx.h): the group sums of 16 batch rows x 16 weight rows per tdpbsud ----
// The panel's levels are already in AMX's B layout (a 64-byte row per 4
// elements, 4 bytes per weight row), and x's rows are A's rows, so a
// tdpbsud (signed x times unsigned levels) makes a group's int32 sums for
// up to 16 x 16 pairs, the same integers as the vpdpbusd chains. The sums go
// through memory (tilestored) to the same per-group conversion and FMA as
// lane_tile's, in the same order: the result is bit-identical.
// Tile registers: C0..C3 (mb x 16 int32 sums: two pairs of groups in
// flight), A0/A1 (mb batch rows x G bytes of x), B0/B1 (G/4 rows x 64 bytes
// of levels); configured per block of mb batch rows.
enum : int { kC0 = 0, kA0 = 4, kB0 = 6 };
constexpr int kAmxRows = 16;  // batch rows per tile

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Loads the tile configuration for groups of G elements and mb batch rows
// (ldtilecfg also zeroes the tiles); *configured_rows remembers the last.
void configure_tiles(int G, int mb, int* configured_rows) {
  if (*configured_rows == mb) return;
  *configured_rows = mb;
  TileConfig cfg;
  const auto set = [&cfg](int t, int rows, int colsb) {
    cfg.rows[t] = uint8_t(rows);
    cfg.colsb[t] = uint16_t(colsb);
  };
  for (int t = 0; t < 4; ++t) set(kC0 + t, mb, 64);
  for (int t = 0; t < 2; ++t) {
    set(kA0 + t, mb, G);
    set(kB0 + t, G / 4, 64);
  }
  asm volatile("ldtilecfg %0" : : "m"(cfg));
}
template <int T>
[[gnu::always_inline]] inline void tile_load(const void* base, int64_t stride) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c2" : : "r"(base), "r"(stride), "i"(T) : "memory");
}
template <int T>
[[gnu::always_inline]] inline void tile_store(void* base, int64_t stride) {
  asm volatile("tilestored %%tmm%c2, (%0,%1,1)" : : "r"(base), "r"(stride), "i"(T) : "memory");
}
// C += A (signed bytes) x B (unsigned bytes; kSigned: signed).
template <int C, int A, int B, bool kSigned>
[[gnu::always_inline]] inline void tile_dp_into() {
  if constexpr (kSigned) {
    asm volatile("tdpbssd %%tmm%c2, %%tmm%c1, %%tmm%c0" : : "i"(C), "i"(A), "i"(B));
  } else {
    asm volatile("tdpbsud %%tmm%c2, %%tmm%c1, %%tmm%c0" : : "i"(C), "i"(A), "i"(B));
  }
}
template <int T>
[[gnu::always_inline]] inline void tile_zero() {
  asm volatile("tilezero %%tmm%c0" : : "i"(T));
}

// Pair `pair` (groups 2 pair, 2 pair + 1) of superblock p times the batch
// rows of xq (x_stride apart), into tiles C(2 P), C(2 P + 1).
template <int G, int P>
[[gnu::always_inline]] inline void amx_pair_products(const LaneSuperblock& p, const int8_t* xq, int64_t x_stride,
                                                     int pair) {
  const int g = 2 * pair;
  tile_load<kA0>(xq + g * G, x_stride);
  tile_load<kB0>(p.levels[g * G / 4], 64);
  tile_load<kA0 + 1>(xq + (g + 1) * G, x_stride);
  tile_load<kB0 + 1>(p.levels[(g + 1) * G / 4], 64);
  tile_zero<kC0 + 2 * P>();
  tile_dp_into<kC0 + 2 * P, kA0, kB0, false>();
  tile_zero<kC0 + 2 * P + 1>();
  tile_dp_into<kC0 + 2 * P + 1, kA0 + 1, kB0 + 1, false>();
}
// out[j][b][r]: the sums of tiles C(2 P + j), batch row b, lane r.
template <int P>
[[gnu::always_inline]] inline void amx_pair_store(int32_t (*out)[kAmxRows][kLaneRows]) {
  tile_store<kC0 + 2 * P>(out[0], 64);
  tile_store<kC0 + 2 * P + 1>(out[1], 64);
}

// lane_tile's work for batch rows b0 .. b0 + mb (mb = 16, or < 16 with
// kTail) with the group sums from AMX, pipelined over pairs of groups
// (across superblocks too): the products and stores of pair i + 1 are
// issued before the conversions and FMAs of pair i. (A deeper pipeline,
// storing pair i after issuing pair i + 1's products, measured slower: the
// tile registers are not renamed, so the next loads wait for the products.)
// part[] stays in registers; the accumulators in a stack block.
template <int G, LaneOffsets kOffsets, bool kTail>
void amx_block(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t b0, int mb, int64_t sb0,
               float* y, int64_t ldy, __mmask16 rows, bool accumulate, PanelPrefetch& prefetch) {
  constexpr int kGroupsPerSb = kSuperblock / G, kStride = G / kGroup, kPairs = kGroupsPerSb / 2;
  constexpr bool kLevelOffset = kOffsets == LaneOffsets::level8 || kOffsets == LaneOffsets::level32;
  alignas(64) float acc[kAmxRows][kLaneRows];
  alignas(64) int32_t slots[2][2][kAmxRows][kLaneRows];
  alignas(64) int32_t start[kLevelOffset ? kAmxRows : 1][kGroups];
  for (int b = 0; b < mb; ++b)
    _mm512_store_ps(acc[b], accumulate ? _mm512_maskz_loadu_ps(rows, y + b * ldy) : _mm512_setzero_ps());
  const int64_t x_stride = x.n_sb * kSuperblock;
  const int8_t* xq0 = x.q + b0 * x_stride + sb0 * kSuperblock;
  const int64_t n_steps = n_sb * kPairs;  // even: kPairs is 4 or 8
  __m512 part[kAmxRows];
  for (__m512& v : part) v = _mm512_setzero_ps();  // (set per superblock below; g++ 12 cannot see that)
  const auto products = [&](auto parity, int64_t i) {
    if (i < n_steps)
      amx_pair_products<G, decltype(parity)::value>(panel[i / kPairs], xq0 + i / kPairs * kSuperblock, x_stride,
                                                     int(i % kPairs));
  };
  const auto convert = [&](int64_t i) {  // pair i's vector work, from slot i & 1
    const int64_t s = i / kPairs, sb = sb0 + s;
    const int pair = int(i % kPairs);
    const LaneSuperblock& p = panel[s];
    prefetch.step();
    if (pair == 0) {
#pragma GCC unroll 16
      for (int b = 0; b < kAmxRows; ++b) {
        part[b] = _mm512_setzero_ps();
        if (kLevelOffset && (!kTail || b < mb)) group_starts<G, kOffsets>(x, (b0 + b) * x.n_sb + sb, start[b]);
      }
    }
    const int32_t(*sums)[kAmxRows][kLaneRows] = slots[i & 1];
    for (int j = 0; j < 2; ++j) {
      const int g = 2 * pair + j;
      const __m512 scale = _mm512_load_ps(p.scale[g * kStride]);
#pragma GCC unroll 16
      for (int b = 0; b < kAmxRows; ++b) {
        if (kTail && b >= mb) break;
        __m512i sum = _mm512_load_si512(sums[j][b]);
        if constexpr (kLevelOffset) sum = _mm512_add_epi32(sum, _mm512_set1_epi32(start[b][g * kStride]));
        part[b] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, sum), scale, part[b]);
      }
    }
    if (pair == kPairs - 1) {
#pragma GCC unroll 16
      for (int b = 0; b < kAmxRows; ++b) {
        if (kTail && b >= mb) break;
        const int64_t xs = (b0 + b) * x.n_sb + sb;
        _mm512_store_ps(acc[b], finish_superblock<G, kOffsets>(p, x, xs, part[b], _mm512_load_ps(acc[b])));
      }
    }
  };
  using Even = std::integral_constant<int, 0>;
  using Odd = std::integral_constant<int, 1>;
  products(Even{}, 0);
  amx_pair_store<0>(slots[0]);
  for (int64_t i = 0; i < n_steps; i += 2) {
    products(Odd{}, i + 1);
    amx_pair_store<1>(slots[1]);
    convert(i);
    if (i + 2 < n_steps) {
      products(Even{}, i + 2);
      amx_pair_store<0>(slots[0]);
    }
    convert(i + 1);
  }
  for (int b = 0; b < mb; ++b) _mm512_mask_storeu_ps(y + b * ldy, rows, _mm512_load_ps(acc[b]));
}

template <int G, LaneOffsets kOffsets>
void amx_blocks_for_batch(const LaneSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t batch, int64_t sb0,
                          float* y, int64_t ldy, __mmask16 rows, bool accumulate, PanelPrefetch& prefetch,
                          int* configured_rows) {
  for (int64_t b0 = 0; b0 < batch; b0 += kAmxRows) {
    const int mb = int(std::min<int64_t>(kAmxRows, batch - b0));
    configure_tiles(G, mb, configured_rows);
    if (mb == kAmxRows) {
      amx_block<G, kOffsets, false>(panel, n_sb, x, b0, mb, sb0, y + b0 * ldy, ldy, rows, accumulate, prefetch);
    } else {
      amx_block<G, kOffsets, true>(panel, n_sb, x, b0, mb, sb0, y + b0 * ldy, ldy, rows, accumulate, prefetch);
    }
  }
}

int valid_in(int64_t sb, int64_t cols) { return int(std::min<int64_t>(kSuperblock, cols - sb * kSuperblock)); }

// Superblock sb's blocks of the 16 rows from g0 (lanes past the task's last
// row, n_rows, repeat it; their sums are not stored).
RowBlocks row_blocks(const uint8_t* base, int64_t row_bytes, int64_t sb_bytes, int64_t g0, int n_rows, int64_t sb) {
  RowBlocks blocks;
  alignas(64) int32_t offsets[kLaneRows];
  for (int r = 0; r < kLaneRows; ++r) {
    offsets[r] = int32_t(std::min(r, n_rows - 1) * row_bytes);
    blocks.rows[r] = base + g0 * row_bytes + offsets[r] + sb * sb_bytes;
  }
  blocks.offsets = _mm512_load_si512(offsets);
  return blocks;
}

// The next panel's prefetch: the next superblocks of the rows from g0, or the
// first of the next 16 rows; spread over `steps` calls of step().
PanelPrefetch next_panel_prefetch(const uint8_t* base, int64_t row_bytes, int64_t sb_bytes, int64_t n_sb_row,
                                  int64_t g0, int64_t sb0, int64_t r_end, int64_t steps) {
  PanelPrefetch prefetch;
  const int64_t next_g0 = sb0 + kLaneSuperblocks < n_sb_row ? g0 : g0 + kLaneRows;
  const int64_t next_sb0 = next_g0 == g0 ? sb0 + kLaneSuperblocks : 0;
  if (next_g0 < r_end) {
    prefetch.row0 = base + next_g0 * row_bytes;
    prefetch.row_bytes = row_bytes;
    prefetch.n_rows = int(std::min<int64_t>(kLaneRows, r_end - next_g0));
    prefetch.begin = prefetch.at = next_sb0 * sb_bytes;
    prefetch.end = std::min(row_bytes, (next_sb0 + kLaneSuperblocks) * sb_bytes);
    const int64_t lines = prefetch.n_rows * ((prefetch.end - prefetch.begin + 63) / 64);
    prefetch.per_group = int((lines + steps - 1) / steps);
  }
  return prefetch;
}

template <int G, LaneOffsets kOffsets>
void multiply_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                    int64_t r_end, bool amx) {
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
  int configured_rows = 0;  // AMX: the tile configuration's batch rows (0: none loaded)
  for (int64_t g0 = r_begin; g0 < r_end; g0 += kLaneRows) {
    const int n_rows = int(std::min<int64_t>(kLaneRows, r_end - g0));
    const __mmask16 rows = __mmask16((1u << n_rows) - 1);
    for (int64_t sb0 = 0; sb0 < x.n_sb; sb0 += kLaneSuperblocks) {
      const int64_t n_sb = std::min(kLaneSuperblocks, x.n_sb - sb0);
      for (int64_t s = 0; s < n_sb; ++s) {
        const int64_t sb = sb0 + s;
        const int n_valid = valid_in(sb, w.cols);
        if (build != nullptr && n_valid == kSuperblock) {
          build(row_blocks(base, row_bytes, sb_bytes, g0, n_rows, sb), panel[s]);
          continue;
        }
        for (int r = 0; r < kLaneRows; ++r) {
          // Lanes past the task's last row repeat it; their sums are not stored.
          const uint8_t* row = base + (g0 + std::min(r, n_rows - 1)) * row_bytes;
          unpack(row, sb, n_valid, stage[r]);
        }
        interleave(stage, int_scales, panel[s]);
      }
      const int64_t steps_per_sb = amx ? kSuperblock / G / 2 : kSuperblock / G;  // prefetch.step() calls
      const int64_t tile_rows = amx ? kAmxRows : kBatchTile;
      PanelPrefetch prefetch = next_panel_prefetch(base, row_bytes, sb_bytes, x.n_sb, g0, sb0, r_end,
                                                   (batch + tile_rows - 1) / tile_rows * n_sb * steps_per_sb);
      if (amx) {
        amx_blocks_for_batch<G, kOffsets>(panel, n_sb, x, batch, sb0, y + g0, w.rows, rows, sb0 > 0, prefetch,
                                          &configured_rows);
      } else {
        tiles_for_batch<G, kOffsets>(panel, n_sb, x, batch, sb0, y + g0, w.rows, rows, sb0 > 0, prefetch);
      }
    }
  }
  if (configured_rows > 0) asm volatile("tilerelease");
}

// ---- AMX over folded superblocks (FoldedSuperblock: Q6_K) ----
// Per superblock and block of mb <= 16 batch rows: 4 K-steps of 64 elements,
// each a tdpbsud of x by lo and a tdpbssd of x by hi (signed) into two int32
// tiles; stored, then per batch row c = 64 hi + lo (exact:
// |c| <= 256 x 127 x 4096 < 2^31), part = c * d, and the end of lane_tile's
// superblock (finish_superblock). Tiles: C0/C1 (lo, hi) and C2/C3 on
// alternate superblocks, A0/A1 (mb x 64 bytes of x), B0/B1 (lo, hi rows).
// The vector work of superblock s - 1 runs after the products of s are issued.
template <int P>
[[gnu::always_inline]] inline void folded_products(const FoldedSuperblock& p, const int8_t* xq, int64_t x_stride,
                                                   int32_t (*out)[kAmxRows][kLaneRows]) {
  tile_zero<kC0 + 2 * P>();
  tile_zero<kC0 + 2 * P + 1>();
  for (int kk = 0; kk < kSuperblock / 64; kk += 2) {
    tile_load<kA0>(xq + 64 * kk, x_stride);
    tile_load<kB0>(p.lo[16 * kk], 64);
    tile_load<kB0 + 1>(p.hi[16 * kk], 64);
    tile_dp_into<kC0 + 2 * P, kA0, kB0, false>();
    tile_dp_into<kC0 + 2 * P + 1, kA0, kB0 + 1, true>();
    tile_load<kA0 + 1>(xq + 64 * (kk + 1), x_stride);
    tile_load<kB0>(p.lo[16 * (kk + 1)], 64);
    tile_load<kB0 + 1>(p.hi[16 * (kk + 1)], 64);
    tile_dp_into<kC0 + 2 * P, kA0 + 1, kB0, false>();
    tile_dp_into<kC0 + 2 * P + 1, kA0 + 1, kB0 + 1, true>();
  }
  tile_store<kC0 + 2 * P>(out[0], 64);
  tile_store<kC0 + 2 * P + 1>(out[1], 64);
}

void folded_block(const FoldedSuperblock* panel, int64_t n_sb, const QuantizedX& x, int64_t b0, int mb, int64_t sb0,
                  float* y, int64_t ldy, __mmask16 rows, bool accumulate, PanelPrefetch& prefetch) {
  alignas(64) float acc[kAmxRows][kLaneRows];
  alignas(64) int32_t slots[2][2][kAmxRows][kLaneRows];
  for (int b = 0; b < mb; ++b)
    _mm512_store_ps(acc[b], accumulate ? _mm512_maskz_loadu_ps(rows, y + b * ldy) : _mm512_setzero_ps());
  const int64_t x_stride = x.n_sb * kSuperblock;
  const int8_t* xq0 = x.q + b0 * x_stride + sb0 * kSuperblock;
  const auto convert = [&](int64_t s) {
    const FoldedSuperblock& p = panel[s];
    const int32_t(*sums)[kAmxRows][kLaneRows] = slots[s & 1];
    const __m512 d = _mm512_load_ps(p.d);
    for (int b = 0; b < mb; ++b) {
      prefetch.step();
      const __m512i hi = _mm512_maskz_slli_epi32(kAll16, _mm512_load_si512(sums[1][b]), 6);
      const __m512i c = _mm512_add_epi32(hi, _mm512_load_si512(sums[0][b]));
      const __m512 part = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(kAll16, c), d);
      const int64_t xs = (b0 + b) * x.n_sb + sb0 + s;
      _mm512_store_ps(acc[b], finish_superblock<16, LaneOffsets::level32>(p, x, xs, part, _mm512_load_ps(acc[b])));
    }
  };
  for (int64_t s = 0; s < n_sb; ++s) {
    if (s % 2 == 0) {
      folded_products<0>(panel[s], xq0 + s * kSuperblock, x_stride, slots[0]);
    } else {
      folded_products<1>(panel[s], xq0 + s * kSuperblock, x_stride, slots[1]);
    }
    if (s > 0) convert(s - 1);
  }
  convert(n_sb - 1);
  for (int b = 0; b < mb; ++b) _mm512_mask_storeu_ps(y + b * ldy, rows, _mm512_load_ps(acc[b]));
}

// multiply_lanes for the types with a folded builder, whole superblocks only.
void multiply_folded(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                     int64_t r_end, FoldedBuildFn build) {
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const int64_t sb_bytes = kSuperblock / traits.block_size * traits.type_size;
  const auto* base = static_cast<const uint8_t*>(w.data);
  FoldedSuperblock panel[kLaneSuperblocks];  // 34 KiB on the stack
  int configured_rows = 0;
  for (int64_t g0 = r_begin; g0 < r_end; g0 += kLaneRows) {
    const int n_rows = int(std::min<int64_t>(kLaneRows, r_end - g0));
    const __mmask16 rows = __mmask16((1u << n_rows) - 1);
    for (int64_t sb0 = 0; sb0 < x.n_sb; sb0 += kLaneSuperblocks) {
      const int64_t n_sb = std::min(kLaneSuperblocks, x.n_sb - sb0);
      for (int64_t s = 0; s < n_sb; ++s) build(row_blocks(base, row_bytes, sb_bytes, g0, n_rows, sb0 + s), panel[s]);
      PanelPrefetch prefetch =
          next_panel_prefetch(base, row_bytes, sb_bytes, x.n_sb, g0, sb0, r_end, n_sb * batch);  // a step per row and sb
      for (int64_t b0 = 0; b0 < batch; b0 += kAmxRows) {
        const int mb = int(std::min<int64_t>(kAmxRows, batch - b0));
        configure_tiles(64, mb, &configured_rows);
        folded_block(panel, n_sb, x, b0, mb, sb0, y + g0 + b0 * w.rows, w.rows, rows, sb0 > 0, prefetch);
      }
    }
  }
  if (configured_rows > 0) asm volatile("tilerelease");
}

}  // namespace

bool multiply_rows_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end) {
  if (quant_unpacker(w.type) == nullptr) return false;
  const bool amx = batch >= kAmxMinBatch && amx_enabled();
  const FoldedBuildFn folded = folded_builder(w.type);
  if (amx && folded != nullptr && w.cols % kSuperblock == 0) {
    multiply_folded(w, x, batch, y, r_begin, r_end, folded);
    return true;
  }
  // Q6_K has a scale per 16 elements; every other type shares one per 32.
  switch (lane_offsets(w.type)) {
    case LaneOffsets::level32: multiply_lanes<16, LaneOffsets::level32>(w, x, batch, y, r_begin, r_end, amx); break;
    case LaneOffsets::level8: multiply_lanes<32, LaneOffsets::level8>(w, x, batch, y, r_begin, r_end, amx); break;
    case LaneOffsets::int_mins: multiply_lanes<32, LaneOffsets::int_mins>(w, x, batch, y, r_begin, r_end, amx); break;
    case LaneOffsets::floats: multiply_lanes<32, LaneOffsets::floats>(w, x, batch, y, r_begin, r_end, amx); break;
  }
  return true;
}

#else

bool multiply_rows_lanes(const WeightMatrix&, const QuantizedX&, int64_t, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
