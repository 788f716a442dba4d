// Integer-dot-product path of kernels::matmul for the block-quantized weight
// types Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. (Q8_0 keeps the f32 direct
// path: measured faster at batch 1-8, docs/perf-notes.md Q2, and one path per
// type keeps a row's result independent of the batch it is in.)
//
// The activations are quantized once per call, per 256-element superblock of
// each batch row (as ggml's q8_K): scale dx = amax / 127, q = round-to-
// nearest-even(x * 127 / amax) in -127..127, plus each 16-element group's sum
// dx * sum(q). Every weight type is then seen through one common form, a
// superblock of unsigned 8-bit levels with a float scale and offset per 16
// elements (value = scale_g * level + offset_g), so that
//   sum_i w_i x_i ~ dx * sum_g scale_g * (levels_g . q_g) + sum_g offset_g * group_sum_g
// where levels . q is an integer dot product (AVX-512 VNNI vpdpbusd, or
// vpmaddubsw + vpmaddwd on AVX2) and the scales are applied once per group.
// Private to kernels/.
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <cstdint>

#include "kernels/matmul.h"
#include "util/aligned_buffer.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

inline constexpr int kSuperblock = 256;  // activation and unpack granule
inline constexpr int kGroup = 16;        // elements per scale/offset group
inline constexpr int kGroups = kSuperblock / kGroup;

// Batch rows of x in the quantized form above; rows are zero-padded to a
// whole number of superblocks (padding has q = 0 and group sum 0).
struct QuantizedX {
  const int8_t* q = nullptr;           // [batch][n_sb * 256]
  const float* scale = nullptr;        // [batch][n_sb]: dx
  const float* group_sums = nullptr;   // [batch][n_sb][16]: dx * sum of the group's q
  const float* pair_sums = nullptr;    // [batch][n_sb][8]: dx * sum of q over groups 2j, 2j + 1
  // The same sums as integers (sum of q, no dx), for the tiles that apply
  // offsets inside the integer dot product (matmul_quant_lanes.cpp).
  const int32_t* group_qsums = nullptr;  // [batch][n_sb][16]
  const int16_t* pair_qsums = nullptr;   // [batch][n_sb][8]: |sum| <= 32 * 127
  int64_t n_sb = 0;
};
struct QuantizedXBuffers {
  AlignedBuffer<int8_t> q;
  AlignedBuffer<float> scale, group_sums, pair_sums;
  AlignedBuffer<int32_t> group_qsums;
  AlignedBuffer<int16_t> pair_qsums;
};
QuantizedX quantize_activations(const float* x, int64_t batch, int64_t cols, QuantizedXBuffers& buffers);

// One weight row's superblock in the common form. Groups past the row's end
// (a short last superblock of a 32-block type) have level 0, scale 0 and
// offset 0. The K-quants' group scales are integers times one float per
// superblock (scale_g = d * int_scale_g): they fill int_scale and d instead
// of scale, so their tile applies the group scales inside the integer dot
// product (vpmaddubsw then vpdpwssd with the int16 scales) and converts to
// float once per superblock.
struct alignas(64) UnpackedSuperblock {
  uint8_t levels[kSuperblock];  // 0..63
  float scale[kGroups];         // 32-block types
  float offset[kGroups];
  int16_t int_scale[kGroups];  // K-quants: Q4_K/Q5_K 0..63, Q6_K -128..127
  float d;                     // K-quants
};

// True for the types whose unpacker fills int_scale and d (Q4_K, Q5_K, Q6_K).
bool has_int_scales(gguf::GgmlType type);

// Unpacks superblock `sb` (elements [256 sb, 256 sb + n_valid)) of the row
// whose encoded bytes start at `row`; n_valid is a multiple of 32.
using UnpackFn = void (*)(const uint8_t* row, int64_t sb, int n_valid, UnpackedSuperblock& out);
UnpackFn quant_unpacker(gguf::GgmlType type);

// True when `type` takes this path (with either instruction set).
bool has_quant_path(gguf::GgmlType type, bool avx512);

// Batch 1 of Q4_K/Q5_K/Q6_K with AVX512-VNNI, and of Q4_0/Q4_1/Q5_0/Q5_1
// where VBMI is there too (matmul_quant_stream.cpp): y[r] for r in
// [r_begin, r_end), one row at a time with each superblock unpacked in
// registers; bit-identical to the panel path at batch 1. False (nothing
// done) for other types or builds.
bool multiply_row_stream(const WeightMatrix& w, const QuantizedX& x, float* y, int64_t r_begin, int64_t r_end);

// Batches above 4 with AVX512-VNNI (matmul_quant_lanes.cpp): 16 weight rows
// in the lanes of a register, 8 batch rows per tile (from batch 16 with
// AMX: tiles of 16 x 16). False (nothing done) in
// builds without VNNI.
bool multiply_rows_lanes(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end);

// y[b, r] for all batch rows and r in [r_begin, r_end); y row-major with
// w.rows columns; `panel` is the calling thread's reusable buffer.
void multiply_rows_quant(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end, bool avx512, AlignedBuffer<UnpackedSuperblock>& panel);

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
