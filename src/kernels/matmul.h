// Dense layer product y = x · Wᵀ with W in its file dtype (never expanded at
// load). Two paths, picked per call:
//  - direct (F32/F16/Q8_0, batch <= 32): weights are decoded in registers
//    straight from the mapped rows and FMA'd into up to 4 batch rows at a
//    time; a 24-row chunk is reused from cache by every batch group, so DRAM
//    reads each weight once. At batch 1-4 this is the bandwidth-bound GEMV.
//  - packed (other types, or larger batches such as prefill): a panel of
//    weight rows × a 512-wide K-block is decoded to f32 once into a
//    per-thread L2-resident buffer and reused by every batch row through the
//    same register-blocked AVX2 FMA tile.
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
