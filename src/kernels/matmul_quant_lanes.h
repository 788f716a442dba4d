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
// offset per 16-element group, one lane per row.
struct alignas(64) LaneSuperblock {
  uint32_t levels[kSuperblock / 4][kLaneRows];
  float scale[kGroups][kLaneRows];
  float offset[kGroups][kLaneRows];
};

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

#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
