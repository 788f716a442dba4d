// The interleaved panel of matmul_quant_lanes.cpp (16 weight rows in the
// lanes of a register) and how a superblock of 16 rows gets into it
// (matmul_quant_lanes_build.cpp). Private to kernels/; AVX512-VNNI builds only.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/matmul_quant.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

#if defined(__AVX512F__) && defined(__AVX512VNNI__)

inline constexpr int kLaneRows = 16;  // weight rows per register

// One superblock of 16 weight rows, interleaved: levels[k4][r] holds the
// levels of elements 4 k4 .. 4 k4 + 3 of row r (one byte each); scale and
// offset per 16-element group, one lane per row. How the tile applies the
// offsets depends on the type (LaneOffsets): Q4_K's come as integer mins.
struct alignas(64) LaneSuperblock {
  uint32_t levels[kSuperblock / 4][kLaneRows];
  float scale[kGroups][kLaneRows];
  float offset[kGroups][kLaneRows];  // LaneOffsets::floats only
  // LaneOffsets::int_mins (Q4_K): lane r of min_pairs[j] holds the int16
  // mins m_2j, m_2j+1 of row r; its offsets are -dmin * m (neg_dmin lane r).
  int32_t min_pairs[kGroups / 4][kLaneRows];
  float neg_dmin[kLaneRows];
};

// How a type's offsets are applied in the tile:
//  - floats: offset[g] times the activation group sums, in f32 (Q4_1, Q5_0,
//    Q5_1, Q5_K: the generic unpack);
//  - level8 / level32: the offset is -8 (Q4_0) or -32 (Q6_K) levels times the
//    group scale, so each group's integer sum starts at -8 or -32 times the
//    group's sum of q: exact and no f32 work;
//  - int_mins (Q4_K): sum_g m_g * (sum of q over g) as 4 vpdpwssd of int16
//    pairs, scaled by -dmin once per superblock.
enum class LaneOffsets { floats, level8, level32, int_mins };
LaneOffsets lane_offsets(gguf::GgmlType type);

// Interleaves 16 rows' unpacked superblocks (any type with an unpacker).
void interleave(const UnpackedSuperblock (&rows)[kLaneRows], bool int_scales, LaneSuperblock& out);

// One superblock's blocks in 16 rows, for the builders that interleave
// straight from the blocks (the generic unpack-then-transpose measured over
// half of a batch-8 Q4_K matmul): each row's packed level bytes are
// transposed as they are (a 32-bit lane of packed nibbles holds 4
// consecutive elements of two groups), split into levels afterwards, and the
// scales are decoded for 16 rows at once from gathered scale words.
struct RowBlocks {
  const uint8_t* rows[kLaneRows];  // superblock sb's block of each lane's row
  __m512i offsets;                 // the same as byte offsets from rows[0]
};

// The builder that interleaves `type`'s whole superblocks straight from their
// blocks (Q4_K, Q6_K, Q4_0 with VBMI), or null: unpack, then interleave.
using BuildFn = void (*)(const RowBlocks&, LaneSuperblock&);
BuildFn fused_builder(gguf::GgmlType type);

// AMX with Q6_K's integer group scales folded into the weights: per lane
// (row) and element, w = (level - 32) * int_scale of its group (|w| <= 4096,
// exact in int16), split as w = 64 hi + lo with lo = w & 63 and hi = w >> 6
// (-64..63), each an int8 matrix in the interleaved layout of levels. A
// superblock's whole dot product is then two int32 tile sums, 64 hi + lo =
// sum_g int_scale_g * sum_{k in g} (level_k - 32) q_k, times d: no
// per-group conversion (matmul_quant_lanes.cpp).
struct alignas(64) FoldedSuperblock {
  uint32_t lo[kSuperblock / 4][kLaneRows];
  uint32_t hi[kSuperblock / 4][kLaneRows];
  float d[kLaneRows];
};

// The builder of `type`'s folded superblocks (Q6_K), or null.
using FoldedBuildFn = void (*)(const RowBlocks&, FoldedSuperblock&);
FoldedBuildFn folded_builder(gguf::GgmlType type);

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
