// Packed path, for the weight types without a direct decoder (BF16, Q4_0,
// Q4_K, Q6_K): the weights are dequantized into an f32 panel once per
// K-block and every weight is then reused by the whole batch from cache.
// The register tile is an outer product: NRW weight rows (scalars broadcast
// from the panel) times NBV vectors of consecutive batch rows (loaded from
// x transposed once per call), so the inner loop needs no horizontal sums
// and no transposition of the weights.
#include <algorithm>

#include "kernels/matmul_paths.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"

namespace bifurcate::kernels::detail {
namespace {

constexpr int64_t kKBlock = 1024;              // a multiple of every block size (256)
constexpr int64_t kPanelStride = kKBlock + 16;  // padding keeps panel rows off the same L1 sets

// Register tile per instruction set: NRW*NBV accumulators + NBV batch vectors
// + 1 broadcast fit the register file.
template <class S>
struct OuterTile;
template <>
struct OuterTile<simd::Avx2> {
  static constexpr int kRows = 6;
  static constexpr int kBatchVectors = 2;
};
#ifdef __AVX512F__
template <>
struct OuterTile<simd::Avx512> {
  static constexpr int kRows = 6;
  static constexpr int kBatchVectors = 4;
};
#endif

// Where one tile reads and writes.
struct TileView {
  const float* panel;  // first weight row of the tile, first k of the block
  const float* x_t;    // x_t[k][b] for the tile's first k and batch row
  int64_t ld_xt;       // padded batch
  int64_t n_k;
  float* y;  // y[b * ldy + r] for the tile's first batch row and weight row
  int64_t ldy;
  int valid_rows;   // <= NRW; rows past it repeat the last valid row
  int valid_batch;  // <= NBV * kLanes; padding columns of x_t are zero
  bool accumulate;  // add to y (later K-blocks) instead of overwriting
};

template <class S, int NRW, int NBV>
void outer_tile(const TileView& t) {
  constexpr int L = S::kLanes;
  const float* rows[NRW];
  for (int i = 0; i < NRW; ++i) rows[i] = t.panel + std::min(i, t.valid_rows - 1) * kPanelStride;
  typename S::V acc[NRW][NBV];
  for (int i = 0; i < NRW; ++i)
    for (int j = 0; j < NBV; ++j) acc[i][j] = S::zero();
  const float* xk = t.x_t;
  for (int64_t k = 0; k < t.n_k; ++k, xk += t.ld_xt) {
    typename S::V xv[NBV];
    for (int j = 0; j < NBV; ++j) xv[j] = S::load(xk + j * L);
    for (int i = 0; i < NRW; ++i) {
      const typename S::V wb = S::set1(rows[i][k]);
      for (int j = 0; j < NBV; ++j) acc[i][j] = S::fmadd(wb, xv[j], acc[i][j]);
    }
  }
  // acc[i][j] lane l is y[batch j*L + l][row i]: a column of y, so scalar stores.
  alignas(64) float column[NBV * L];
  for (int i = 0; i < t.valid_rows; ++i) {
    for (int j = 0; j < NBV; ++j) S::store(column + j * L, acc[i][j]);
    float* yi = t.y + i;
    if (t.accumulate) {
      for (int b = 0; b < t.valid_batch; ++b) yi[b * t.ldy] += column[b];
    } else {
      for (int b = 0; b < t.valid_batch; ++b) yi[b * t.ldy] = column[b];
    }
  }
}

// All tiles of one K-block: batch groups outside (their x_t slice stays in
// L2), weight rows inside (each NRW-row slice of the panel stays in L1).
template <class S>
void run_block(TileView base, int64_t n_rows, int64_t batch) {
  constexpr int NRW = OuterTile<S>::kRows;
  constexpr int NBV = OuterTile<S>::kBatchVectors;
  constexpr int64_t kGroup = NBV * S::kLanes;
  for (int64_t b0 = 0; b0 < batch; b0 += kGroup) {
    const int64_t n_b = std::min(kGroup, batch - b0);
    const int64_t n_vectors = (n_b + S::kLanes - 1) / S::kLanes;
    for (int64_t r0 = 0; r0 < n_rows; r0 += NRW) {
      TileView t = base;
      t.panel = base.panel + r0 * kPanelStride;
      t.x_t = base.x_t + b0;
      t.y = base.y + b0 * base.ldy + r0;
      t.valid_rows = int(std::min<int64_t>(NRW, n_rows - r0));
      t.valid_batch = int(n_b);
      static_assert(NBV <= 4);
      switch (std::min<int64_t>(n_vectors, NBV)) {
        case 1: outer_tile<S, NRW, 1>(t); break;
        case 2: outer_tile<S, NRW, 2>(t); break;
        case 3: outer_tile<S, NRW, std::min(3, NBV)>(t); break;
        default: outer_tile<S, NRW, NBV>(t); break;
      }
    }
  }
}

template <class S>
void multiply_rows_packed_isa(const WeightMatrix& w, const float* x_t, int64_t batch, int64_t batch_padded, float* y,
                              int64_t r_begin, int64_t r_end, AlignedBuffer<float>& panel) {
  const int64_t n_rows = r_end - r_begin;
  panel.resize(size_t(n_rows * kPanelStride));
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const auto* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  for (int64_t k0 = 0; k0 < w.cols; k0 += kKBlock) {
    const int64_t n_k = std::min(kKBlock, w.cols - k0);
    const int64_t byte_offset = k0 / traits.block_size * traits.type_size;
    for (int64_t r = 0; r < n_rows; ++r) {
      tensor::dequantize_row(w.type, first + r * row_bytes + byte_offset, panel.data() + r * kPanelStride, n_k);
    }
    const TileView block{panel.data(), x_t + k0 * batch_padded, batch_padded, n_k, y + r_begin, w.rows, 0, 0,
                         k0 > 0};
    run_block<S>(block, n_rows, batch);
  }
}

}  // namespace

int packed_batch_lanes(bool avx512) {
#ifdef __AVX512F__
  if (avx512) return simd::Avx512::kLanes;
#endif
  (void)avx512;
  return simd::Avx2::kLanes;
}

void transpose_activations(const float* x, int64_t batch, int64_t cols, int64_t batch_padded, float* x_t) {
  constexpr int64_t kTile = 64;  // a 64x64 tile of x and of x_t stays in L1
  for (int64_t k0 = 0; k0 < cols; k0 += kTile) {
    const int64_t k1 = std::min(cols, k0 + kTile);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t k = k0; k < k1; ++k) x_t[k * batch_padded + b] = x[b * cols + k];
    for (int64_t k = k0; k < k1; ++k) std::fill(x_t + k * batch_padded + batch, x_t + (k + 1) * batch_padded, 0.0f);
  }
}

void multiply_rows_packed(const WeightMatrix& w, const float* x_t, int64_t batch, int64_t batch_padded, float* y,
                          int64_t r_begin, int64_t r_end, bool avx512, AlignedBuffer<float>& panel) {
#ifdef __AVX512F__
  if (avx512) return multiply_rows_packed_isa<simd::Avx512>(w, x_t, batch, batch_padded, y, r_begin, r_end, panel);
#endif
  (void)avx512;
  multiply_rows_packed_isa<simd::Avx2>(w, x_t, batch, batch_padded, y, r_begin, r_end, panel);
}

}  // namespace bifurcate::kernels::detail
