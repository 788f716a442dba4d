// Packed path, for the weight types without a direct decoder (BF16, Q4_0,
// Q4_K, Q6_K): per K-block, a task's weight rows are dequantized into an f32
// panel once (row-major, so any type's row decoder fills it) and every batch
// group then runs the direct path's dot-product tiles over the panel, which
// stays in L2. (An outer-product tile over x transposed was tried and lost
// at every batch, 93 vs 159 GFLOP/s at 256: docs/perf-notes.md, change 4.)
#include <algorithm>

#include "kernels/matmul_paths.h"
#include "tensor/dtype.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

constexpr int64_t kKBlock = 1024;               // a multiple of every block size (256)
constexpr int64_t kPanelStride = kKBlock + 16;  // padding keeps panel rows off the same L1 sets

}  // namespace

void multiply_rows_packed(const WeightMatrix& w, const float* x, int64_t batch, float* y, int64_t r_begin,
                          int64_t r_end, bool avx512, AlignedBuffer<float>& panel) {
  const int64_t n_rows = r_end - r_begin;
  panel.resize(size_t(n_rows * kPanelStride));
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const auto* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  for (int64_t k0 = 0; k0 < w.cols; k0 += kKBlock) {
    const int64_t n_k = std::min(kKBlock, w.cols - k0);
    const int64_t byte_offset = k0 / traits.block_size * traits.type_size;
    for (int64_t r = 0; r < n_rows; ++r) {
      tensor::dequantize_row(w.type, first + r * row_bytes + byte_offset, panel.data() + r * kPanelStride,
                             n_k);
    }
    const PanelProduct product{panel.data(), kPanelStride, n_rows,      x + k0, w.cols,
                               batch,        n_k,          y + r_begin, w.rows, /*accumulate=*/k0 > 0};
    multiply_panel_direct(product, avx512);
  }
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
