// The row-range workers behind kernels::matmul (matmul.h), each computing
// y[b, r] for all batch rows b and output rows r in [r_begin, r_end):
//  - direct (F32/F16/Q8_0 where outer is not taken): weights decoded in
//    registers from the mapped rows, dot-product tiles, no packing.
//  - outer (F32/F16/BF16/Q8_0, batch >= 32, rows > 1024): weights converted
//    to f32 panels per K-block, outer-product micro-tiles; weight rows in the
//    lanes (transposed panels, matmul_outer.cpp) or, on AVX-512 at batch
//    32-128 where the batch fills its vectors, batch rows in the lanes
//    (matmul_outer_lanes.cpp).
//  - packed (every type; used for BF16 where outer is not taken): weight rows
//    dequantized to an f32 panel per K-block, then the direct path's
//    dot-product tiles over the panel.
// (The integer path of the other types is matmul_quant.h's.)
// Private to kernels/; `avx512` selects the AVX-512 kernels (only when built
// with __AVX512F__; otherwise AVX2 runs regardless).
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <cstdint>

#include "kernels/matmul.h"
#include "util/aligned_buffer.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

bool has_direct_path(gguf::GgmlType type);

// The first n_groups * 8 batch rows of x interleaved for the AVX-512 8-row
// tiles: group g is [cols / 16][8][16] floats at data + g * 8 * cols, i.e.
// x[g*8 + b][k] is at data[g*8*cols + (k/16)*128 + b*16 + k%16]. Empty
// (n_groups = 0) when unused.
struct PackedX {
  const float* data = nullptr;
  int64_t n_groups = 0;
};

// Packs x (batch rows of `cols`) into `buffer` when the AVX-512 direct path
// can use it (avx512, 8 <= batch <= 64, cols % 16 == 0); otherwise {}.
PackedX pack_x_groups(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer);

// x[batch, w.cols] row-major; y[batch, w.rows] row-major; x8 is
// pack_x_groups(x, ...) or {}.
void multiply_rows_direct(const WeightMatrix& w, const float* x, const PackedX& x8, int64_t batch, float* y,
                          int64_t r_begin, int64_t r_end, bool avx512);

// y[b, r] (+)= x[b, 0..n_k) · panel[r, 0..n_k) with the direct path's
// dot-product tiles (the packed path's kernel).
struct PanelProduct {
  const float* panel;  // [n_rows][ld_panel] f32
  int64_t ld_panel, n_rows;
  const float* x;  // [batch][ldx]
  int64_t ldx, batch, n_k;
  float* y;  // [batch][ldy]
  int64_t ldy;
  bool accumulate;
};
void multiply_panel_direct(const PanelProduct& p, bool avx512);

// Outer-product path (matmul_outer.cpp), for a type without an integer path:
// true where it measured faster than the direct/packed path (batch >= 32)
// and rows are long enough (> 1024 elements) that the direct path's sums
// depend on the batch already (matmul_outer.cpp, kMinCols).
bool outer_path_wins(int64_t batch, int64_t cols);

// Output rows per outer-path task: a multiple of 32 (the rows of an AVX-512
// micro-tile, two AVX2 ones), about 8 tasks per thread.
int64_t outer_task_rows(int64_t rows, int threads);

// x packed once per call for the outer path's micro-tiles, in one of two
// variants: weight rows in the lanes of a register (matmul_outer.cpp; batch
// rows in groups, each group [cols][rows of the group]) or batch rows in the
// lanes (matmul_outer_lanes.cpp; blocks of batch vectors, each block
// [cols][rows of the block], lanes past the batch zero).
struct OuterX {
  const float* data = nullptr;
  int64_t batch = 0;
  int vector_lanes = 0;  // of the instruction set it was packed for
  bool batch_in_lanes = false;
  // Batch in lanes only: the last tail_rows rows are not packed but read
  // from x itself (row-major, from `tail`).
  const float* tail = nullptr;
  int64_t tail_rows = 0;
};
// Packs x for the variant that wins at this batch (outer_batch_in_lanes).
OuterX pack_x_outer(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer);

// True where the batch-in-lanes variant runs: the batch fills its last
// vector well enough, or its rows past the last whole vector are few (the
// other variant's panel transpose costs more than the padding lanes' FMAs
// or the tail rows' dot products).
bool outer_batch_in_lanes(int64_t batch, bool avx512);
OuterX pack_x_batch_lanes(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer);

// A pool thread's reusable buffers: the f32 panel of one K-block, for types
// other than F32/F16 the dequantized rows it is transposed from, and the
// partial sums of a task's y tile.
struct OuterPanels {
  AlignedBuffer<float> panel, rows, sums;
};

// y[batch, w.rows] row-major, rows [r_begin, r_end), in x's variant.
void multiply_rows_outer(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                         bool avx512, OuterPanels& scratch);
void multiply_rows_batch_lanes(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                               bool avx512, OuterPanels& scratch);

// x[batch, w.cols] and y[batch, w.rows] row-major, as for the direct path;
// `panel` is the calling thread's reusable buffer.
void multiply_rows_packed(const WeightMatrix& w, const float* x, int64_t batch, float* y, int64_t r_begin,
                          int64_t r_end, bool avx512, AlignedBuffer<float>& panel);

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
