// Dense layer product y = x · Wᵀ with W in its file dtype (never expanded at
// load). Four paths, picked per call (matmul_paths.h):
//  - direct (F32/F16/Q8_0; batch < 32 or rows of <= 1024): weights are decoded in registers
//    straight from the mapped rows into dot-product tiles of up to 4 batch
//    rows (8 with AVX-512 at batch 8..64, over an interleaved copy of x made
//    once per call; a lone batch row over rows of <= 4096 columns goes one
//    weight row at a time); a 24-row chunk is reused from cache by every
//    batch group, so DRAM reads each weight once. At batch 1-4 this is the
//    bandwidth-bound GEMV, from ~8 on FMA-bound; Q8_0 block scales are
//    converted in the tile, once per block and row.
//  - quant (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): x is
//    quantized to int8 per 256-element superblock once per call, weights are
//    unpacked to 8-bit levels per superblock and multiplied by integer dot
//    products, block scales applied once per 16 elements (matmul_quant.h).
//  - outer (F32/F16/BF16/Q8_0, batch >= 32, rows > 1024): BLIS-style GEMM. Per
//    256-wide K-block, 32 (AVX2: 16) weight rows are converted to an f32
//    panel [k][32] once; micro-tiles of up to 14 (AVX2: 6) batch rows x 32
//    rows keep all sums in registers (per k: 2 panel loads, one broadcast of
//    x per batch row); x is packed once per call in batch-row groups. On
//    AVX-512 at batch 32-128 where the batch fills its vectors, the batch
//    rows go in the lanes instead (panel [8 rows][k], no transpose; 3 batch
//    vectors x 8 rows per micro-tile; matmul_outer_lanes.cpp).
//  - packed (BF16 where outer is not taken): a panel of weight rows × a K-block is
//    dequantized to f32 once and multiplied by x with the direct tiles.
// Each runs the kernels of one instruction-set path (isa.h): by default the
// process's active_isa(); tests and benchmarks may name another the CPU runs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "gguf/ggml_types.h"
#include "kernels/isa.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

// ggml order: row r (output r) is contiguous, `cols` elements of `type`.
struct WeightMatrix {
  const void* data;
  gguf::GgmlType type;
  int64_t rows;  // n_out
  int64_t cols;  // n_in, the row length; a multiple of the type's block size
};

// True when matmul multiplies `type` weights by integer dot products against
// the activations quantized to int8 (matmul_quant.h): per 256-element
// superblock of each x row (zero-padded past the row's end), dx = amax / 127
// in f32 and q = round-half-even(x * (127 / amax)), also in f32. The result
// is then the product with x̂ = dx * q, up to f32 summation: x itself is
// only approximated, by at most dx / 2 per element.
bool matmul_quantizes_activations(gguf::GgmlType type, Isa isa = active_isa());

// The scratch of matmul calls (the activations' packed or quantized copy,
// each pool thread's weight panel), owned by the caller and reused: once a
// call of a given size has run with a given thread, later ones allocate
// nothing. Calls that may run at the same time need one each. Its contents
// are the kernels' own (one instruction-set path's: a call on another path
// replaces them).
class MatmulScratch {
 public:
  struct State {
    virtual ~State() = default;
  };
  std::unique_ptr<State> state;
};

// y[batch, rows] = x[batch, cols] · Wᵀ; x and y are f32 row-major and must
// not overlap. Threads split output rows, so results do not depend on the
// thread count.
void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool,
            MatmulScratch& scratch, Isa isa = active_isa());

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
                         ThreadPool& pool, MatmulScratch& scratch, Isa isa = active_isa());

}  // namespace bifurcate::kernels
