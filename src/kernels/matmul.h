// Dense layer product y = x · Wᵀ with W in its file dtype (never expanded at
// load). Two regimes, picked per call:
//  - batch <= 4 with F32/F16/Q8_0 weights: DRAM-bound. Each weight row is
//    read once, decoded in registers and FMA'd into all batch rows (GEMV).
//  - otherwise: compute-bound. A panel of weight rows × a K-block is decoded
//    to f32 once into a per-thread L2-resident buffer and reused by every
//    batch row through a register-blocked AVX2 FMA tile.
#pragma once

#include <cstdint>

#include "gguf/ggml_types.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

// ggml order: row r (output r) is contiguous, `cols` elements of `type`.
struct WeightMatrix {
  const void* data;
  gguf::GgmlType type;
  int64_t rows;  // n_out
  int64_t cols;  // n_in, the row length; a multiple of the type's block size
};

// y[batch, rows] = x[batch, cols] · Wᵀ; x and y are f32 row-major and must
// not overlap. Threads split output rows. No heap allocation in steady state
// (per-thread scratch is reused across calls).
void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool);

}  // namespace bifurcate::kernels
