// Outer-product path, batch rows in the lanes of a register (the other
// variant, matmul_outer.cpp, puts weight rows there). Per task (a range of
// output rows) and K-block of kOuterKBlock columns:
//  - each slice of NR weight rows is converted to an f32 panel [NR][k] in
//    its own layout: no transpose, f16 one conversion per vector;
//  - every block of up to kMaxVectors batch vectors (kLanes batch rows
//    each, x packed [k][rows of the block]) runs the micro-tile over it: per
//    k, one load per batch vector and one broadcast per weight row feed
//    vectors x NR FMAs, all sums in registers across the K-block.
// The sums are y transposed ([weight row][batch row]); they go to a
// task-local tile, written to y once after the last K-block.
// What this saves against the other variant is the panel's transpose (~0.3
// shuffles per weight, paid whatever the batch); what it wastes is the
// lanes past the batch in its last vector (outer_batch_in_lanes chooses).
// AVX-512 only: AVX2's 16 registers hold a tile of 2 x 4 vectors of sums,
// which measured 10-15 % slower than the other variant's 6 x 2 there
// (docs/perf-notes.md M16). The code is written over the vector type all
// the same, like the other kernels.
#include <algorithm>
#include <cstdint>

#include "kernels/matmul_outer_parts.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;

constexpr int64_t kKBlock = kOuterKBlock;

// Weight rows per micro-tile (NR) and batch vectors per micro-tile at most:
// 8 x 3 (24 sums + 3 x vectors + a broadcast of 32 zmm registers; 9 rows
// measured 30 % slower, the compiler spilling). Task rows (multiples of 32)
// divide into whole panels.
constexpr int kPanelRows = 8;
constexpr int kMaxVectors = 3;

// How a batch splits: whole vectors of kLanes rows, then either a few tail
// rows (at most kMaxTailRows) run as dot products over the panel's rows
// (dot_tile: their share of the FMAs plus a horizontal sum per K-block),
// or one more vector padded with zero lanes (each lane costs the FMAs of a
// batch row). The other variant's transpose costs about the FMAs of 4-5
// batch rows (F16 4096x4096, 1 thread, docs/perf-notes.md M16), so this
// variant runs where the tail is short or the padding at most kMaxPadding.
constexpr int kMaxDotRows = 3;  // per dot tile: 3 x 8 sums
constexpr int64_t kMaxTailRows = 2 * kMaxDotRows;
constexpr int64_t kMaxPadding = 4;

struct BatchSplit {
  int64_t vectors;    // packed, the last one padded if tail_rows is 0
  int64_t tail_rows;  // run as dot products
};

template <class S>
BatchSplit split_batch(int64_t batch) {
  constexpr int64_t L = S::kLanes;
  const int64_t rest = batch % L;
  if (rest != 0 && rest <= kMaxTailRows) return {batch / L, rest};
  return {(batch + L - 1) / L, 0};
}

// ... and up to this batch: above it the other variant measured as fast or
// faster (F16 4096x4096, 2 threads: batch 128 1.01x, 256 0.96-0.98x for
// this one); prefill chunks stay on it.
constexpr int64_t kMaxBatch = 128;

template <class S>
bool lanes_win(int64_t batch) {
  constexpr int64_t L = S::kLanes;
  const int64_t rest = batch % L;
  return batch <= kMaxBatch && (rest == 0 || rest <= kMaxTailRows || L - rest <= kMaxPadding);
}

// panel[n][k] (row stride kKBlock) = weight row n at column k0 + k, for
// n < n_rows; rows n_rows..NR-1 zero (their sums are discarded).
template <class S>
void convert_panel(const WeightMatrix& w, const uint8_t* rows, int64_t row_bytes, int n_rows, int64_t k0,
                   int64_t n_k, float* panel) {
  constexpr int L = S::kLanes, NR = kPanelRows;
  for (int n = 0; n < n_rows; ++n) {
    float* out = panel + n * kKBlock;
    const uint8_t* row = rows + n * row_bytes;
    if (w.type == GgmlType::F16) {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(row) + k0;
      int64_t k = 0;
      for (; k + L <= n_k; k += L) S::store(out + k, S::load_f16(src + k));
      for (; k < n_k; ++k) out[k] = f16_to_f32(src[k]);
    } else if (w.type == GgmlType::F32) {
      std::copy_n(reinterpret_cast<const float*>(row) + k0, n_k, out);
    } else {
      const auto& traits = gguf::ggml_type_traits(w.type);
      tensor::dequantize_row(w.type, row + k0 / traits.block_size * traits.type_size, out, n_k);
    }
  }
  for (int n = n_rows; n < NR; ++n) std::fill_n(panel + n * kKBlock, n_k, 0.0f);
}

// sums[n][v * L + l] (+)= sum_k panel[n][k] * xb[k][v * L + l] for n < NR,
// v < MB: batch vector v of the block in lanes, weight row n per register.
template <class S, int MB>
void micro_tile(const float* xb, const float* panel, int64_t n_k, float* sums, int64_t ld_sums, bool accumulate,
                PrefetchLines prefetch) {
  constexpr int L = S::kLanes, NR = kPanelRows;
  typename S::V acc[NR][MB];
#pragma GCC unroll 8
  for (int n = 0; n < NR; ++n) {
#pragma GCC unroll 4
    for (int v = 0; v < MB; ++v) acc[n][v] = accumulate ? S::load(sums + n * ld_sums + v * L) : S::zero();
  }
  for (int64_t k = 0; k < n_k; ++k) {
    if (prefetch.count > 0) prefetch.issue();
    typename S::V xv[MB];
#pragma GCC unroll 4
    for (int v = 0; v < MB; ++v) xv[v] = S::load(xb + k * MB * L + v * L);
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      const typename S::V wn = S::set1(panel[n * kKBlock + k]);
#pragma GCC unroll 4
      for (int v = 0; v < MB; ++v) acc[n][v] = S::fmadd(xv[v], wn, acc[n][v]);
    }
  }
  while (prefetch.count > 0) prefetch.issue();
#pragma GCC unroll 8
  for (int n = 0; n < NR; ++n) {
#pragma GCC unroll 4
    for (int v = 0; v < MB; ++v) S::store(sums + n * ld_sums + v * L, acc[n][v]);
  }
}

template <class S, int MB = kMaxVectors>
void run_micro_tile(int mb, const float* xb, const float* panel, int64_t n_k, float* sums, int64_t ld_sums,
                    bool accumulate, const PrefetchLines& prefetch) {
  if constexpr (MB > 1) {
    if (mb < MB) return run_micro_tile<S, MB - 1>(mb, xb, panel, n_k, sums, ld_sums, accumulate, prefetch);
  }
  micro_tile<S, MB>(xb, panel, n_k, sums, ld_sums, accumulate, prefetch);
}

// sums[n][b] (+)= sum_k xr[b][k] * panel[n][k] for b < R, n < NR: tail
// batch rows read from x itself (row stride ldx), dot products summed
// across the lanes once per K-block.
template <class S, int R>
void dot_tile(const float* xr, int64_t ldx, const float* panel, int64_t n_k, float* sums, int64_t ld_sums,
              bool accumulate) {
  constexpr int L = S::kLanes, NR = kPanelRows;
  typename S::V acc[R][NR];
#pragma GCC unroll 4
  for (int b = 0; b < R; ++b) {
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) acc[b][n] = S::zero();
  }
  int64_t k = 0;
  for (; k + L <= n_k; k += L) {
    typename S::V xv[R];
#pragma GCC unroll 4
    for (int b = 0; b < R; ++b) xv[b] = S::load(xr + b * ldx + k);
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      const typename S::V p = S::load(panel + n * kKBlock + k);
#pragma GCC unroll 4
      for (int b = 0; b < R; ++b) acc[b][n] = S::fmadd(xv[b], p, acc[b][n]);
    }
  }
  for (int b = 0; b < R; ++b) {
    for (int n = 0; n < NR; ++n) {
      float sum = S::hsum(acc[b][n]);
      for (int64_t kk = k; kk < n_k; ++kk) sum += xr[b * ldx + kk] * panel[n * kKBlock + kk];
      float* out = sums + n * ld_sums + b;
      *out = accumulate ? *out + sum : sum;
    }
  }
}

template <class S, int R = kMaxDotRows>
void run_dot_tile(int rows, const float* xr, int64_t ldx, const float* panel, int64_t n_k, float* sums,
                  int64_t ld_sums, bool accumulate) {
  if constexpr (R > 1) {
    if (rows < R) return run_dot_tile<S, R - 1>(rows, xr, ldx, panel, n_k, sums, ld_sums, accumulate);
  }
  dot_tile<S, R>(xr, ldx, panel, n_k, sums, ld_sums, accumulate);
}

template <class S>
void multiply_rows_lanes_isa(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                             OuterPanels& scratch) {
  constexpr int L = S::kLanes, NR = kPanelRows;
  require(x.batch_in_lanes && x.vector_lanes == L, "matmul: x packed for another variant");
  const int64_t n_vectors = (x.batch - x.tail_rows + L - 1) / L;
  const EvenGroups blocks(n_vectors, kMaxVectors);
  const int64_t n_task_rows = r_end - r_begin;
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const uint8_t* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  const int64_t n_k_blocks = (w.cols + kKBlock - 1) / kKBlock;
  constexpr int64_t kChunkVectors = kOuterMaxChunkRows / L;
  // The sums tile: [task rows, whole panels][a chunk's batch rows], its row
  // stride one vector more than the longest chunk (not a multiple of 4 KiB).
  const int64_t ld_sums = (std::min(n_vectors, kChunkVectors) + 1) * L;
  scratch.panel.resize(size_t(NR * kKBlock));
  scratch.sums.resize(size_t((n_task_rows + NR - 1) / NR * NR * ld_sums));
  for (int64_t g_begin = 0; g_begin < blocks.count;) {
    const int64_t g_end = blocks.chunk_end(g_begin, kChunkVectors);
    const int64_t chunk_v0 = blocks.first(g_begin);
    for (int64_t kb = 0; kb < n_k_blocks; ++kb) {
      const int64_t k0 = kb * kKBlock, n_k = std::min(kKBlock, w.cols - k0);
      for (int64_t r0 = 0; r0 < n_task_rows; r0 += NR) {
        const int n_rows = int(std::min<int64_t>(NR, n_task_rows - r0));
        convert_panel<S>(w, first + r0 * row_bytes, row_bytes, n_rows, k0, n_k, scratch.panel.data());
        PrefetchLines prefetch = next_panel_lines(w, first, row_bytes, n_task_rows, NR, r0, k0);
        for (int64_t g = g_begin; g < g_end; ++g) {
          const int64_t v0 = blocks.first(g);
          const int mb = blocks.size(g);
          const PrefetchLines part = prefetch.take(int(prefetch.count / (g_end - g)));
          run_micro_tile<S>(mb, x.data + v0 * L * w.cols + k0 * mb * L, scratch.panel.data(), n_k,
                            scratch.sums.data() + r0 * ld_sums + (v0 - chunk_v0) * L, ld_sums, kb > 0, part);
        }
        if (g_end < blocks.count) continue;
        // The tail rows, with the last chunk (the sums tile has a spare vector).
        for (int64_t t = 0; t < x.tail_rows; t += kMaxDotRows) {
          run_dot_tile<S>(int(std::min<int64_t>(kMaxDotRows, x.tail_rows - t)), x.tail + t * w.cols + k0,
                          w.cols, scratch.panel.data(), n_k,
                          scratch.sums.data() + r0 * ld_sums + (n_vectors - chunk_v0) * L + t, ld_sums, kb > 0);
        }
      }
    }
    // y[b][r_begin + n] = sums[n][b - chunk's first row], real batch rows only.
    const int64_t b_begin = chunk_v0 * L, b_end = g_end == blocks.count ? x.batch : blocks.first(g_end) * L;
    for (int64_t b = b_begin; b < b_end; ++b) {
      const float* column = scratch.sums.data() + (b - b_begin);
      float* out = y + b * w.rows + r_begin;
      for (int64_t n = 0; n < n_task_rows; ++n) out[n] = column[n * ld_sums];
    }
    g_begin = g_end;
  }
}

// Block g of batch vectors (rows [first * L, (first + size) * L)) as
// [cols][size * L] at data + first * L * cols; lanes past the batch zero.
template <class S>
void pack_x_lanes_isa(const float* x, int64_t batch, int64_t cols, float* out) {
  constexpr int L = S::kLanes;
  const int64_t n_vectors = (batch + L - 1) / L;
  const EvenGroups blocks(n_vectors, kMaxVectors);
  for (int64_t g = 0; g < blocks.count; ++g) {
    const int64_t v0 = blocks.first(g);
    const int mb = blocks.size(g);
    float* ob = out + v0 * L * cols;
    for (int v = 0; v < mb; ++v) {
      const int64_t b0 = (v0 + v) * L;
      const int n_b = int(std::min<int64_t>(L, batch - b0));
      float* ov = ob + v * L;
      int64_t k = 0;
      for (; k + L <= cols; k += L) {
        typename S::V r[L];
        for (int i = 0; i < L; ++i) r[i] = i < n_b ? S::load(x + (b0 + i) * cols + k) : S::zero();
        transpose(r);
        for (int i = 0; i < L; ++i) S::store(ov + (k + i) * mb * L, r[i]);
      }
      for (; k < cols; ++k)
        for (int i = 0; i < L; ++i) ov[k * mb * L + i] = i < n_b ? x[(b0 + i) * cols + k] : 0.0f;
    }
  }
}

}  // namespace

bool outer_batch_in_lanes(int64_t batch, bool avx512) {
#ifdef __AVX512F__
  if (avx512) return lanes_win<simd::Avx512>(batch);
#endif
  (void)batch, (void)avx512;
  return false;
}

#ifdef __AVX512F__
OuterX pack_x_batch_lanes(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer) {
  using S = simd::Avx512;
  constexpr int L = S::kLanes;
  require(avx512, "matmul: the batch-in-lanes variant runs on AVX-512 only");
  const BatchSplit split = split_batch<S>(batch);
  buffer.resize(size_t(split.vectors * L * cols));
  pack_x_lanes_isa<S>(x, batch - split.tail_rows, cols, buffer.data());
  const int64_t tail_row0 = batch - split.tail_rows;
  return {buffer.data(), batch, L, true, x + tail_row0 * cols, split.tail_rows};
}

void multiply_rows_batch_lanes(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                               bool avx512, OuterPanels& scratch) {
  require(avx512, "matmul: the batch-in-lanes variant runs on AVX-512 only");
  multiply_rows_lanes_isa<simd::Avx512>(w, x, y, r_begin, r_end, scratch);
}
#else
OuterX pack_x_batch_lanes(const float*, int64_t, int64_t, bool, AlignedBuffer<float>&) {
  throw Error("matmul: the batch-in-lanes variant runs on AVX-512 only");
}

void multiply_rows_batch_lanes(const WeightMatrix&, const OuterX&, float*, int64_t, int64_t, bool, OuterPanels&) {
  throw Error("matmul: the batch-in-lanes variant runs on AVX-512 only");
}
#endif

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
