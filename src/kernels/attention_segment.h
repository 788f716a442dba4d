// The shared-segment attention kernel: ALL stacked query rows that attend one
// KV head of one segment (every attending sequence × the h/g query heads of the
// group) against a key range of that segment, reading each K/V tile once.
//
// Per tile of up to kSegmentTileTokens keys:
//   1. K and V rows become f32 once (f16 converted; f32 used in place when the
//      head size is a multiple of 8), so the tile sits in L1/L2 for every row;
//   2. scores S[rows, tile] = (scale q) . K^T as a small register-blocked GEMM;
//   3. online softmax per row (running max m, running sum l, rescale on a new
//      max), exponentials always of (s - m) <= 0, so huge scores cannot overflow;
//   4. acc[rows, k] += P[rows, tile] . V.
// The result is the normalised partial output and LSE per row (attention_state.h),
// ready to be merged with the row's other segments or key ranges.
#pragma once

#include <cstddef>
#include <span>

#include "kernels/attention_types.h"
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
struct SegmentScratch {
  AlignedBuffer<float> q;       // (n_rows, padded k) scaled queries
  AlignedBuffer<float> k_tile;  // (tile, padded k)
  AlignedBuffer<float> v_tile;  // (tile, padded k)
  AlignedBuffer<float> scores;  // (n_rows, tile) scores, then probabilities
  AlignedBuffer<float> acc;     // (n_rows, padded k) unnormalised output
  AlignedBuffer<float> row_max; // (n_rows) running max m
  AlignedBuffer<float> row_sum; // (n_rows) running sum l, relative to m
};

// out: (n_rows, head_size) normalised partial outputs; lse: (n_rows).
// A row that sees no key in the range gets the empty state (o = 0, lse = -inf).
// Arguments are trusted (checked by attend / attend_causal); debug builds assert.
void attend_segment(const AttentionShape& shape, const SegmentKeys& keys,
                    const StackedQueries& queries, float* out, float* lse, SegmentScratch& scratch);

}  // namespace bifurcate::kernels
