// Outer-product path (BLIS-style register-blocked GEMM), for prefill-sized
// batches of every weight type without an integer path (F32, F16, BF16, Q8_0).
// Per task (a range of output rows) and K-block of kKBlock columns:
//  - each NR-row slice of the weights is converted once to an f32 panel
//    [k][NR] (NR = two vectors of output rows; f16 converted and transposed
//    in registers, other types dequantized row by row, then transposed);
//  - every group of up to kMaxGroup batch rows then runs the micro-tile over
//    it: all group x NR sums stay in registers across the K-block; per k, two
//    panel vector loads and one broadcast of x per batch row feed 2 x group
//    FMAs. No horizontal sums; y gets each K-block's partial sums.
// x is packed once per call (pack_x_outer) so that a group's values for one k
// are adjacent: the broadcasts read one stream, not one per batch row
// (rows of 16 KiB would all fall into the same L1 sets).
#include <algorithm>

#include "kernels/matmul_paths.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;

// The smallest batch this path takes (below it the direct path's tiles win).
constexpr int64_t kMinBatch = 16;

// Columns per K-block: a panel of 256 x 32 f32 (32 KiB) stays in L1 while
// every batch group passes over it; a multiple of every block size (256).
constexpr int64_t kKBlock = 256;

// Batch rows per micro-tile, at most: 2 x 14 = 28 of 32 zmm registers hold
// sums (AVX-512), 2 x 6 = 12 of 16 ymm (AVX2); the rest the two panel
// vectors and a broadcast.
template <class S>
constexpr int max_group() {
  return S::kRegisters == 32 ? 14 : 6;
}

// In-register transposes of kLanes x kLanes floats: r[i] holds row i on entry
// and column i on exit.
inline void transpose(simd::Avx2::V (&r)[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

#ifdef __AVX512F__
// (The maskz forms with kAll16 are the plain instructions: attention_simd.h.)
inline void transpose(simd::Avx512::V (&r)[16]) {
  __m512 t[16];
  // Pairs of rows interleaved, then quads: lane l of u[4a + c] holds rows
  // 4a..4a+3 at column c + 4l.
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(simd::kAll16, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(simd::kAll16, r[i], r[i + 1]);
  }
  __m512 u[16];
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_maskz_shuffle_ps(simd::kAll16, t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_maskz_shuffle_ps(simd::kAll16, t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_maskz_shuffle_ps(simd::kAll16, t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_maskz_shuffle_ps(simd::kAll16, t[i + 1], t[i + 3], 0xEE);
  }
  // 128-bit lanes: v[c] (c < 4) and v[c + 4] gather rows 0-7 (from u[c], u[c + 4]),
  // v[c + 8], v[c + 12] rows 8-15, at columns c, c + 8 and c + 4, c + 12.
  __m512 v[16];
  for (int h = 0; h < 16; h += 8) {
    for (int c = 0; c < 4; ++c) {
      v[h + c] = _mm512_maskz_shuffle_f32x4(simd::kAll16, u[h + c], u[h + c + 4], 0x88);
      v[h + c + 4] = _mm512_maskz_shuffle_f32x4(simd::kAll16, u[h + c], u[h + c + 4], 0xDD);
    }
  }
  for (int c = 0; c < 8; ++c) {
    r[c] = _mm512_maskz_shuffle_f32x4(simd::kAll16, v[c], v[c + 8], 0x88);
    r[c + 8] = _mm512_maskz_shuffle_f32x4(simd::kAll16, v[c], v[c + 8], 0xDD);
  }
}
#endif

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

// y[b][c] (+)= sum_k xg[k][b] * panel[k][c] for b < M, c < n_cols (<= NR).
template <class S, int M>
void micro_tile(const float* xg, const float* panel, int64_t n_k, float* y, int64_t ldy, int n_cols,
                bool accumulate) {
  constexpr int L = S::kLanes, NR = 2 * L;
  typename S::V acc[M][2];
#pragma GCC unroll 16
  for (int b = 0; b < M; ++b) acc[b][0] = acc[b][1] = S::zero();
  for (int64_t k = 0; k < n_k; ++k) {
    const typename S::V p0 = S::load(panel + k * NR), p1 = S::load(panel + k * NR + L);
#pragma GCC unroll 16
    for (int b = 0; b < M; ++b) {
      const typename S::V xb = S::set1(xg[k * M + b]);
      acc[b][0] = S::fmadd(xb, p0, acc[b][0]);
      acc[b][1] = S::fmadd(xb, p1, acc[b][1]);
    }
  }
  if (n_cols == NR) {
#pragma GCC unroll 16
    for (int b = 0; b < M; ++b) {
      float* yb = y + b * ldy;
      if (accumulate) {
        acc[b][0] = S::add(acc[b][0], S::load(yb));
        acc[b][1] = S::add(acc[b][1], S::load(yb + L));
      }
      S::store(yb, acc[b][0]);
      S::store(yb + L, acc[b][1]);
    }
    return;
  }
  for (int b = 0; b < M; ++b) {
    alignas(64) float sums[NR];
    S::store(sums, acc[b][0]);
    S::store(sums + L, acc[b][1]);
    float* yb = y + b * ldy;
    for (int c = 0; c < n_cols; ++c) yb[c] = accumulate ? yb[c] + sums[c] : sums[c];
  }
}

template <class S, int M = max_group<S>()>
void run_micro_tile(int m, const float* xg, const float* panel, int64_t n_k, float* y, int64_t ldy, int n_cols,
                    bool accumulate) {
  if constexpr (M > 1) {
    if (m < M) return run_micro_tile<S, M - 1>(m, xg, panel, n_k, y, ldy, n_cols, accumulate);
  }
  micro_tile<S, M>(xg, panel, n_k, y, ldy, n_cols, accumulate);
}

// Batch rows split into groups of at most max_group, as even as possible
// (batch 32 on AVX-512: 11 + 11 + 10, not 14 + 14 + 4).
struct Groups {
  int64_t count, base, extra;  // the first `extra` groups have base + 1 rows
  Groups(int64_t batch, int max) : count((batch + max - 1) / max), base(batch / count), extra(batch % count) {}
  int64_t first_row(int64_t g) const { return g * base + std::min(g, extra); }
  int size(int64_t g) const { return int(base + (g < extra ? 1 : 0)); }
};

template <class S>
void multiply_rows_outer_isa(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                             OuterPanels& scratch) {
  constexpr int NR = 2 * S::kLanes;
  const Groups groups(x.batch, max_group<S>());
  require(x.group_max == max_group<S>(), "matmul: x packed for another instruction set");
  scratch.panel.resize(size_t(kKBlock * NR));
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const auto* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  const auto& traits = gguf::ggml_type_traits(w.type);
  const bool generic = w.type != GgmlType::F32 && w.type != GgmlType::F16;
  if (generic) scratch.rows.resize(size_t(NR * kKBlock));
  for (int64_t k0 = 0; k0 < w.cols; k0 += kKBlock) {
    const int64_t n_k = std::min(kKBlock, w.cols - k0);
    for (int64_t r0 = 0; r0 < r_end - r_begin; r0 += NR) {
      const int n_rows = int(std::min<int64_t>(NR, r_end - r_begin - r0));
      const uint8_t* rows = first + r0 * row_bytes;
      if (w.type == GgmlType::F16) {
        pack_panel<S>(F16Source{reinterpret_cast<const uint16_t*>(rows) + k0, w.cols}, n_rows, n_k,
                      scratch.panel.data());
      } else if (w.type == GgmlType::F32) {
        pack_panel<S>(F32Source{reinterpret_cast<const float*>(rows) + k0, w.cols}, n_rows, n_k,
                      scratch.panel.data());
      } else {
        const int64_t byte_offset = k0 / traits.block_size * traits.type_size;
        for (int r = 0; r < n_rows; ++r)
          tensor::dequantize_row(w.type, rows + r * row_bytes + byte_offset, scratch.rows.data() + r * kKBlock,
                                 n_k);
        pack_panel<S>(F32Source{scratch.rows.data(), kKBlock}, n_rows, n_k, scratch.panel.data());
      }
      float* y_tile = y + r_begin + r0;
      for (int64_t g = 0; g < groups.count; ++g) {
        const int64_t b0 = groups.first_row(g);
        const int m = groups.size(g);
        run_micro_tile<S>(m, x.data + b0 * w.cols + k0 * m, scratch.panel.data(), n_k, y_tile + b0 * w.rows,
                          w.rows, n_rows, k0 > 0);
      }
    }
  }
}

// Group g's rows of x as [cols][m] at data + first_row(g) * cols.
template <class S>
void pack_x_outer_isa(const float* x, int64_t batch, int64_t cols, float* out) {
  constexpr int L = S::kLanes;
  const Groups groups(batch, max_group<S>());
  for (int64_t g = 0; g < groups.count; ++g) {
    const int64_t b0 = groups.first_row(g);
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

bool outer_path_wins(GgmlType /*type*/, int64_t batch, bool /*avx512*/) { return batch >= kMinBatch; }

int64_t outer_task_rows(int64_t rows, int threads) {
  const int64_t per_thread = (rows + threads - 1) / threads;
  return std::clamp<int64_t>((per_thread / 8 + 31) / 32 * 32, 32, 512);
}

OuterX pack_x_outer(const float* x, int64_t batch, int64_t cols, bool avx512, AlignedBuffer<float>& buffer) {
  // The vector stores of the last column run up to one vector past the end.
  buffer.resize(size_t(batch * cols + 16));
#ifdef __AVX512F__
  if (avx512) {
    pack_x_outer_isa<simd::Avx512>(x, batch, cols, buffer.data());
    return {buffer.data(), batch, max_group<simd::Avx512>()};
  }
#endif
  (void)avx512;
  pack_x_outer_isa<simd::Avx2>(x, batch, cols, buffer.data());
  return {buffer.data(), batch, max_group<simd::Avx2>()};
}

void multiply_rows_outer(const WeightMatrix& w, const OuterX& x, float* y, int64_t r_begin, int64_t r_end,
                         bool avx512, OuterPanels& scratch) {
#ifdef __AVX512F__
  if (avx512) return multiply_rows_outer_isa<simd::Avx512>(w, x, y, r_begin, r_end, scratch);
#endif
  (void)avx512;
  multiply_rows_outer_isa<simd::Avx2>(w, x, y, r_begin, r_end, scratch);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
