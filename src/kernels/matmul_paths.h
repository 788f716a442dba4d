// The two row-range workers behind kernels::matmul (matmul.h), each computing
// y[b, r] for all batch rows b and output rows r in [r_begin, r_end):
//  - direct (F32/F16/Q8_0): weights decoded in registers from the mapped
//    rows, dot-product tiles, no packing.
//  - packed (every type; used for the others): weight rows dequantized to an
//    f32 panel per K-block, x transposed once per call, outer-product tiles.
// Private to kernels/; `Avx512` selects the AVX-512 kernels (only when built
// with __AVX512F__), otherwise AVX2.
#pragma once

#include <cstdint>

#include "kernels/matmul.h"
#include "util/aligned_buffer.h"

namespace bifurcate::kernels::detail {

bool has_direct_path(gguf::GgmlType type);

// x[batch, w.cols] row-major; y[batch, w.rows] row-major. `scratch` is the
// calling thread's reusable buffer (Q8_0 block scales).
void multiply_rows_direct(const WeightMatrix& w, const float* x, int64_t batch, float* y, int64_t r_begin,
                          int64_t r_end, bool avx512, AlignedBuffer<float>& scratch);

// Lanes of the batch vectors in the packed kernels; x_t's row stride must be
// batch rounded up to a multiple of this.
int packed_batch_lanes(bool avx512);

// x_t[k, batch_padded] = x transposed, zero in the padding columns.
void transpose_activations(const float* x, int64_t batch, int64_t cols, int64_t batch_padded, float* x_t);

// x_t as made by transpose_activations; `panel` is the calling thread's
// reusable buffer.
void multiply_rows_packed(const WeightMatrix& w, const float* x_t, int64_t batch, int64_t batch_padded, float* y,
                          int64_t r_begin, int64_t r_end, bool avx512, AlignedBuffer<float>& panel);

}  // namespace bifurcate::kernels::detail
