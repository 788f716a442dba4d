// The shared-segment attention kernel: ALL stacked query rows that attend one
// KV head of one segment (every attending sequence × the h/g query heads of the
// group) against a key range of that segment, reading each K/V tile once.
//
// Per tile of up to kSegmentTileTokens keys:
//   1. K and V rows become f32 once (f16 converted; f32 used in place when the
//      head size is a multiple of 8), so the tile sits in L1/L2 for every row;
//   2. scores S[rows, tile] = (scale q) . K^T as a register-blocked GEMM with
//      the rows in vector lanes (attention_lanes.h);
//   3. online softmax per row (running max m, running sum l, rescale on a new
//      max), exponentials always of (s - m) <= 0, so huge scores cannot overflow;
//   4. acc[rows, k] += P[rows, tile] . V.
// One row with f16 K/V and head size a multiple of 8 (replicated decode, the
// per-sample leaves) skips the f32 tile: a GEMV reading f16 straight into the
// FMAs (attention_microkernels.h). With AVX-512, 2..16 non-causal rows and a
// head size that is a multiple of 16 skip it too: head dimensions in lanes,
// 4 x 4 register blocks (attention_rows.h). Either way the next tile is
// prefetched while the current one computes.
// The result is the normalised partial output and LSE per row (attention_state.h),
// ready to be merged with the row's other segments or key ranges.
#pragma once

#include <cstddef>
#include <span>

#include "kernels/attention_types.h"
#include "kernels/isa.h"
#include "util/aligned_buffer.h"

namespace bifurcate::kernels {

inline constexpr int kSegmentTileTokens = 64;

// Which keys one call reads: positions [begin, end) of a segment, KV head kv_head.
struct SegmentKeys {
  std::span<const KvChunk> chunks;  // the segment's chunks, in token order
  std::size_t head_stride = 0;      // bytes between KV heads inside every chunk
  int kv_head = 0;
  int begin = 0;
  int end = 0;
};

// The stacked query rows of one call.
struct StackedQueries {
  const float* const* rows = nullptr;  // (n_rows) pointers to head_size floats
  const int* key_end = nullptr;        // nullptr, or (n_rows) exclusive key-position limits (causal)
  int n_rows = 0;
};

// Per-thread scratch; grows to the largest call and is then reused.
// Contents carry no meaning between calls.
// Stacked rows live in lane groups of W rows (W = 8, or 16 with AVX-512):
// row r is lane r % W of group r / W. One row alone, and the head-dims-in-lanes
// path (attention_rows.h), use plain rows: q and acc (rows, k), scores (rows, tile).
struct SegmentScratch {
  AlignedBuffer<float> q;       // (groups, k, W) scaled queries, transposed
  AlignedBuffer<float> k_tile;  // (tile, padded k) f32 keys
  AlignedBuffer<float> v_tile;  // (tile, padded k) f32 values
  AlignedBuffer<float> scores;  // (tile, W) one group's scores, then probabilities
  AlignedBuffer<float> acc;     // (groups, k, W) unnormalised output, transposed
  AlignedBuffer<float> row_max; // (groups * W) running max m
  AlignedBuffer<float> row_sum; // (groups * W) running sum l, relative to m
  AlignedBuffer<float> key_end; // (groups * W) causal limits as floats; pad lanes 0
};

// out: (n_rows, head_size) normalised partial outputs; lse: (n_rows).
// A row that sees no key in the range gets the empty state (o = 0, lse = -inf).
// Arguments are trusted (checked by attend / attend_causal); debug builds assert.
// Runs the kernels of `isa` (isa.h), by default the process's path.
void attend_segment(const AttentionShape& shape, const SegmentKeys& keys,
                    const StackedQueries& queries, float* out, float* lse, SegmentScratch& scratch,
                    Isa isa = active_isa());

}  // namespace bifurcate::kernels
