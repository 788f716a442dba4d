// Outer-product path (BLIS-style register-blocked GEMM), for prefill-sized
// batches of every weight type without an integer path (F32, F16, BF16, Q8_0).
// Per task (a range of output rows) and K-block of kKBlock columns:
//  - each NR-row slice of the weights is converted once to an f32 panel
//    [k][NR] (NR = two vectors of output rows; f16 converted and transposed
//    in registers, other types dequantized row by row, then transposed);
//  - every group of up to max_group() batch rows then runs the micro-tile over
//    it: all group x NR sums stay in registers across the K-block; per k, two
//    panel vector loads and one broadcast of x per batch row feed 2 x group
//    FMAs. No horizontal sums; y gets each K-block's partial sums.
// x is packed once per call (pack_x_outer) so that a group's values for one k
// are adjacent: the broadcasts read one stream, not one per batch row
// (rows of 16 KiB would all fall into the same L1 sets).
// This is the weights-in-lanes variant; pack_x_outer picks the
// batch-in-lanes one (matmul_outer_lanes.cpp, no panel transpose) where
// outer_batch_in_lanes says it wins, and multiply_rows_outer follows x.
#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/matmul_outer_parts.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;

// The smallest batch this path takes: below it the direct path's tiles win
// (F16 4096x4096, 1 thread: batch 16 96 vs 116 GFLOP/s, 32 122 vs 115; at
// small batches the panel's conversion and transpose, ~0.3 shuffles per
// weight, are amortised over too few FMAs).
constexpr int64_t kMinBatch = 32;

// ... and the shortest rows. A row's sum here runs in another order than in
// the direct path's tiles, so a request's logits change in the last bits
// with the number of rows batched with it. With rows of <= 1024 elements
// the direct path sums most rows alike at every batch (all but a lone row
// over rows of >= 128 elements: run_row_streams), and DESIGN.md section 6
// wants a request's tokens the same alone or among many: on stories260K
// (rows of 64 and 172) this path at batch >= 32 flipped a sampled token in
// tests/server/concurrency.test.mjs on every run. Longer rows already
// change order with the batch in the direct path (1024-wide K-blocks of the
// 8-row tiles at batch 8..64, row streams for lone rows), so this path adds
// no new kind of dependence for them.
constexpr int64_t kMinCols = 1025;

constexpr int64_t kKBlock = kOuterKBlock;

// Batch rows per micro-tile, at most: 2 x 14 = 28 of 32 zmm registers hold
// sums (AVX-512), 2 x 6 = 12 of 16 ymm (AVX2); the rest the two panel
// vectors and a broadcast.
template <class S>
constexpr int max_group() {
  return S::kRegisters == 32 ? 14 : 6;
}

// Row sources of a panel: `load<S>(r, k)` gives kLanes consecutive f32
// values of row r from column k; `at(r, k)` one value (ragged tails).
struct F32Source {
  const float* base;
  int64_t stride;  // elements between rows
  template <class S>
  typename S::V load(int64_t r, int64_t k) const {
    return S::load(base + r * stride + k);
  }
  float at(int64_t r, int64_t k) const { return base[r * stride + k]; }
};

struct F16Source {
  const uint16_t* base;
  int64_t stride;
  template <class S>
  typename S::V load(int64_t r, int64_t k) const {
    return S::load_f16(base + r * stride + k);
  }
  float at(int64_t r, int64_t k) const { return f16_to_f32(base[r * stride + k]); }
};

// panel[k][c] = row c at column k, for k < n_k and c < NR (rows at and past
// n_rows are zero: their sums are discarded).
template <class S, class Source>
void pack_panel(const Source& src, int n_rows, int64_t n_k, float* panel) {
  constexpr int L = S::kLanes, NR = 2 * L;
  int64_t k = 0;
  if (n_rows == NR) {  // the usual case, without a test per row
    for (; k + L <= n_k; k += L) {
#pragma GCC unroll 2
      for (int h = 0; h < NR; h += L) {
        typename S::V r[L];
#pragma GCC unroll 16
        for (int i = 0; i < L; ++i) r[i] = src.template load<S>(h + i, k);
        transpose(r);
#pragma GCC unroll 16
        for (int i = 0; i < L; ++i) S::store(panel + (k + i) * NR + h, r[i]);
      }
    }
  }
  for (; k + L <= n_k; k += L) {
    for (int h = 0; h < NR; h += L) {
      typename S::V r[L];
      for (int i = 0; i < L; ++i) r[i] = h + i < n_rows ? src.template load<S>(h + i, k) : S::zero();
      transpose(r);
      for (int i = 0; i < L; ++i) S::store(panel + (k + i) * NR + h, r[i]);
    }
  }
  for (; k < n_k; ++k)
    for (int c = 0; c < NR; ++c) panel[k * NR + c] = c < n_rows ? src.at(c, k) : 0.0f;
}

// Where a micro-tile's sums go: out[b][c] = in[b][c] + sum (in may be null:
// the first K-block), for c < n_cols; in has room for NR columns.
struct TileOut {
  const float* in;
  int64_t ld_in;
  float* out;
  int64_t ld_out;
  int n_cols;
};

// sum[b][c] = sum_k xg[k][b] * panel[k][c] for b < M, c < NR, into `to`.
template <class S, int M>
void micro_tile(const float* xg, const float* panel, int64_t n_k, const TileOut& to,
                PrefetchLines prefetch) {
  constexpr int L = S::kLanes, NR = 2 * L;
  typename S::V acc[M][2];
#pragma GCC unroll 16
  for (int b = 0; b < M; ++b) acc[b][0] = acc[b][1] = S::zero();
  for (int64_t k = 0; k < n_k; ++k) {
    if (prefetch.count > 0) prefetch.issue();
    const typename S::V p0 = S::load(panel + k * NR), p1 = S::load(panel + k * NR + L);
#pragma GCC unroll 16
    for (int b = 0; b < M; ++b) {
      const typename S::V xb = S::set1(xg[k * M + b]);
      acc[b][0] = S::fmadd(xb, p0, acc[b][0]);
      acc[b][1] = S::fmadd(xb, p1, acc[b][1]);
    }
  }
  while (prefetch.count > 0) prefetch.issue();
  if (to.in != nullptr) {
#pragma GCC unroll 16
    for (int b = 0; b < M; ++b) {
      acc[b][0] = S::add(acc[b][0], S::load(to.in + b * to.ld_in));
      acc[b][1] = S::add(acc[b][1], S::load(to.in + b * to.ld_in + L));
    }
  }
  if (to.n_cols == NR) {
#pragma GCC unroll 16
    for (int b = 0; b < M; ++b) {
      S::store(to.out + b * to.ld_out, acc[b][0]);
      S::store(to.out + b * to.ld_out + L, acc[b][1]);
    }
    return;
  }
  for (int b = 0; b < M; ++b) {
    alignas(64) float sums[NR];
    S::store(sums, acc[b][0]);
    S::store(sums + L, acc[b][1]);
    std::copy_n(sums, to.n_cols, to.out + b * to.ld_out);
  }
}

template <class S, int M = max_group<S>()>
void run_micro_tile(int m, const float* xg, const float* panel, int64_t n_k, const TileOut& to,
                    const PrefetchLines& prefetch) {
  if constexpr (M > 1) {
    if (m < M) return run_micro_tile<S, M - 1>(m, xg, panel, n_k, to, prefetch);
  }
  micro_tile<S, M>(xg, panel, n_k, to, prefetch);
}

// Converts the NR rows from `rows` (n_rows of them; rows of row_bytes),
// columns [k0, k0 + n_k), into scratch.panel.
template <class S>
void pack_weights(const WeightMatrix& w, const uint8_t* rows, int64_t row_bytes, int n_rows, int64_t k0,
                  int64_t n_k, OuterPanels& scratch) {
  if (w.type == GgmlType::F16) {
    return pack_panel<S>(F16Source{reinterpret_cast<const uint16_t*>(rows) + k0, w.cols}, n_rows, n_k,
                         scratch.panel.data());
  }
  if (w.type == GgmlType::F32) {
    return pack_panel<S>(F32Source{reinterpret_cast<const float*>(rows) + k0, w.cols}, n_rows, n_k,
                         scratch.panel.data());
  }
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t byte_offset = k0 / traits.block_size * traits.type_size;
  for (int r = 0; r < n_rows; ++r)
    tensor::dequantize_row(w.type, rows + r * row_bytes + byte_offset, scratch.rows.data() + r * kKBlock, n_k);
  pack_panel<S>(F32Source{scratch.rows.data(), kKBlock}, n_rows, n_k, scratch.panel.data());
}

constexpr int64_t kMaxChunkRows = kOuterMaxChunkRows;

template <class S>
void multiply_rows_outer_isa(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                             OuterPanels& scratch) {
  constexpr int NR = 2 * S::kLanes;
  const EvenGroups groups(x.batch, max_group<S>());
  require(!x.batch_in_lanes && x.vector_lanes == S::kLanes, "matmul: x packed for another variant");
  const int64_t n_task_rows = r_end - r_begin;
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const uint8_t* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  const int64_t n_k_blocks = (w.cols + kKBlock - 1) / kKBlock;
  // Partial sums of all but the last K-block go to a task-local copy of the
  // y tile whose row stride is not a multiple of 4 KiB: y's own rows (a
  // multiple of 4 KiB apart for the usual sizes) fall into the same cache
  // sets and measured 7 % of the time in the loads adding to them.
  const int64_t ld_sums = (n_task_rows + NR - 1) / NR * NR + 16;
  scratch.panel.resize(size_t(kKBlock * NR));
  if (w.type != GgmlType::F32 && w.type != GgmlType::F16) scratch.rows.resize(size_t(NR * kKBlock));
  if (n_k_blocks > 1) scratch.sums.resize(size_t(std::min(x.batch, kMaxChunkRows + max_group<S>()) * ld_sums));
  for (int64_t g_begin = 0; g_begin < groups.count;) {
    const int64_t g_end = groups.chunk_end(g_begin, kMaxChunkRows);
    const int64_t chunk_row0 = groups.first(g_begin);
    for (int64_t kb = 0; kb < n_k_blocks; ++kb) {
      const int64_t k0 = kb * kKBlock, n_k = std::min(kKBlock, w.cols - k0);
      const bool first_block = kb == 0, last_block = kb + 1 == n_k_blocks;
      for (int64_t r0 = 0; r0 < n_task_rows; r0 += NR) {
        const int n_rows = int(std::min<int64_t>(NR, n_task_rows - r0));
        pack_weights<S>(w, first + r0 * row_bytes, row_bytes, n_rows, k0, n_k, scratch);
        // Bring the next panel's weights into the cache meanwhile: the next
        // rows, or the first ones of the next K-block.
        PrefetchLines prefetch = next_panel_lines(w, first, row_bytes, n_task_rows, NR, r0, k0);
        for (int64_t g = g_begin; g < g_end; ++g) {
          const int64_t b0 = groups.first(g);
          const int m = groups.size(g);
          float* sums = scratch.sums.data() + (b0 - chunk_row0) * ld_sums + r0;
          const TileOut to{first_block ? nullptr : sums, ld_sums, last_block ? y + b0 * w.rows + r_begin + r0 : sums,
                           last_block ? w.rows : ld_sums, last_block ? n_rows : NR};
          const PrefetchLines part = prefetch.take(int(prefetch.count / (g_end - g)));
          run_micro_tile<S>(m, x.data + b0 * w.cols + k0 * m, scratch.panel.data(), n_k, to, part);
        }
      }
    }
    g_begin = g_end;
  }
}

// Group g's rows of x as [cols][m] at data + first_row(g) * cols.
template <class S>
void pack_x_outer_isa(const float* x, int64_t batch, int64_t cols, float* out) {
  constexpr int L = S::kLanes;
  const EvenGroups groups(batch, max_group<S>());
  for (int64_t g = 0; g < groups.count; ++g) {
    const int64_t b0 = groups.first(g);
    const int m = groups.size(g);
    const float* xg = x + b0 * cols;
    float* og = out + b0 * cols;
    int64_t k = 0;
    // L columns of the group's rows at a time, transposed in registers; each
    // column's m values are stored as a whole vector, whose tail the next
    // column (or group: they are written in order) overwrites.
    for (; k + L <= cols; k += L) {
      typename S::V r[L];
      for (int i = 0; i < L; ++i) r[i] = i < m ? S::load(xg + i * cols + k) : S::zero();
      transpose(r);
      for (int i = 0; i < L; ++i) S::store(og + (k + i) * m, r[i]);
    }
    for (; k < cols; ++k)
      for (int b = 0; b < m; ++b) og[k * m + b] = xg[b * cols + k];
  }
}

}  // namespace

bool outer_path_wins(int64_t batch, int64_t cols) {
  return batch >= kMinBatch && cols >= kMinCols;
}

int64_t outer_task_rows(int64_t rows, int threads) {
  const int64_t per_thread = (rows + threads - 1) / threads;
  return std::clamp<int64_t>((per_thread / 8 + 31) / 32 * 32, 32, 512);
}

OuterX pack_x_outer(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer) {
  if (outer_batch_in_lanes(batch, avx512)) return pack_x_batch_lanes(x, batch, cols, avx512, buffer);
  // The vector stores of the last column run up to one vector past the end.
  buffer.resize(size_t(batch * cols + 16));
#ifdef __AVX512F__
  if (avx512) {
    pack_x_outer_isa<simd::Avx512>(x, batch, cols, buffer.data());
    return {buffer.data(), batch, simd::Avx512::kLanes, false, nullptr, 0};
  }
#endif
  (void)avx512;
  pack_x_outer_isa<simd::Avx2>(x, batch, cols, buffer.data());
  return {buffer.data(), batch, simd::Avx2::kLanes, false, nullptr, 0};
}

void multiply_rows_outer(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                         bool avx512, OuterPanels& scratch) {
  if (x.batch_in_lanes) return multiply_rows_batch_lanes(w, x, y, r_begin, r_end, avx512, scratch);
#ifdef __AVX512F__
  if (avx512) return multiply_rows_outer_isa<simd::Avx512>(w, x, y, r_begin, r_end, scratch);
#endif
  (void)avx512;
  multiply_rows_outer_isa<simd::Avx2>(w, x, y, r_begin, r_end, scratch);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
