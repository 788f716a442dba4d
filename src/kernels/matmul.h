// Dense layer product y = x · Wᵀ with W in its file dtype (never expanded at
// load). Two paths, picked per call (matmul_paths.h):
//  - direct (F32/F16/Q8_0, any batch): weights are decoded in registers
//    straight from the mapped rows into dot-product tiles of up to 4 batch
//    rows (8 with AVX-512 at batch 8..64, over an interleaved copy of x made
//    once per call; a lone batch row over rows of <= 4096 columns goes one
//    weight row at a time); a 24-row chunk is reused from cache by every
//    batch group, so DRAM reads each weight once. At batch 1-4 this is the
//    bandwidth-bound GEMV, from ~8 on FMA-bound; Q8_0 block scales are
//    converted in the tile, once per block and row.
//  - packed (BF16, Q4_0, Q4_K, Q6_K): a panel of weight rows × a K-block is
//    dequantized to f32 once and multiplied by x with the same tiles.
// Both run AVX-512 kernels when built with it (-march=native on a machine
// that has it) and AVX2 kernels otherwise; MatmulIsa::avx2 forces the latter.
#pragma once

#include <cstdint>
#include <span>

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

enum class MatmulIsa {
  best,  // AVX-512 if this build has it, else AVX2
  avx2,  // the AVX2 kernels even where AVX-512 exists (for tests and comparisons)
};

// True when this build has the AVX-512 kernels (MatmulIsa::best uses them).
bool matmul_has_avx512();

// y[batch, rows] = x[batch, cols] · Wᵀ; x and y are f32 row-major and must
// not overlap. Threads split output rows, so results do not depend on the
// thread count. No heap allocation in steady state (per-thread scratch is
// reused across calls).
void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool,
            MatmulIsa isa = MatmulIsa::best);

// One product of a group that shares its input: y[batch, w.rows] = x · wᵀ.
struct MatmulTarget {
  WeightMatrix w;
  float* y;
};

// Every target against the same x[batch, cols] (all targets have w.cols =
// cols) in ONE pass of the thread pool: the attention projections q/k/v and
// the feed-forward gate/up. Same results as one matmul() per target, with
// one wait for the slowest thread instead of one per matrix.
void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t batch,
                         ThreadPool& pool, MatmulIsa isa = MatmulIsa::best);

}  // namespace bifurcate::kernels
