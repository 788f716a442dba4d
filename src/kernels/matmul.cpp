#include "kernels/matmul.h"

#include <immintrin.h>

#include <algorithm>

#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/aligned_buffer.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kernels {
namespace {

using gguf::GgmlType;

// Up to this batch, F32/F16/Q8_0 decode in registers straight from the mapped
// rows: a 24-row chunk stays in L2 while every batch group passes over it, and
// measured (1 thread, 4096x4096) this beat decode-to-panel at batch 8..32 for
// both F16 and Q8_0. Larger batches (prefill) use the K-blocked panel path,
// whose cache footprint does not grow with K.
constexpr int64_t kMaxDirectBatch = 32;
constexpr int64_t kKBlock = 512;      // packed K-block; a multiple of every block size (256)
constexpr int64_t kPanelRows = 48;    // packed rows per task: 48 x 512 f32 = 96 KiB, in L2
constexpr int64_t kPanelStride = kKBlock + 16;  // padding keeps panel rows off the same L1 sets

// Row decoders: give 8 consecutive weights of one row (from element k, k % 8
// == 0) as f32, and single weights for the ragged tail of f32/f16 rows.
struct F32Rows {
  const float* base;
  int64_t stride;  // elements between rows
  const float* row(int64_t r) const { return base + r * stride; }
  F32Rows offset(int64_t r) const { return {row(r), stride}; }
  static __m256 load8(const float* p, int64_t k) { return _mm256_loadu_ps(p + k); }
  static float at(const float* p, int64_t k) { return p[k]; }
};

struct F16Rows {
  const uint16_t* base;
  int64_t stride;
  const uint16_t* row(int64_t r) const { return base + r * stride; }
  F16Rows offset(int64_t r) const { return {row(r), stride}; }
  static __m256 load8(const uint16_t* p, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k)));
  }
  static float at(const uint16_t* p, int64_t k) { return f16_to_f32(p[k]); }
};

struct Q8_0Rows {
  const tensor::BlockQ8_0* base;
  int64_t stride;  // blocks between rows
  const tensor::BlockQ8_0* row(int64_t r) const { return base + r * stride; }
  Q8_0Rows offset(int64_t r) const { return {row(r), stride}; }
  static __m256 load8(const tensor::BlockQ8_0* p, int64_t k) {
    const tensor::BlockQ8_0& b = p[k / tensor::kQK8_0];
    __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + k % tensor::kQK8_0));
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
    return _mm256_mul_ps(q, _mm256_set1_ps(f16_to_f32(b.d)));
  }
  static float at(const tensor::BlockQ8_0* p, int64_t k) {  // unused: Q8_0 rows are whole blocks
    return float(p[k / 32].qs[k % 32]) * f16_to_f32(p[k / 32].d);
  }
};

float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows per register tile for MB batch rows: MB*NR accumulators plus the
// live loads fit the 16 ymm registers.
constexpr int tile_rows(int mb) { return mb == 1 ? 8 : mb == 4 ? 3 : 4; }

// out[b][r] = sum_k x[b*ldx + k] * W[row_ids[r]][k] over k in [0, n_k).
template <int MB, int NR, class Rows>
void dot_tile(const Rows& w, const int64_t (&row_ids)[NR], const float* x, int64_t ldx, int64_t n_k,
              float (&out)[MB][NR]) {
  decltype(w.row(0)) rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.row(row_ids[r]);
  __m256 acc[MB][NR];
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) acc[b][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n_k; k += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = Rows::load8(rows[r], k);
    for (int b = 0; b < MB; ++b) {
      const __m256 xv = _mm256_loadu_ps(x + b * ldx + k);
      for (int r = 0; r < NR; ++r) acc[b][r] = _mm256_fmadd_ps(wv[r], xv, acc[b][r]);
    }
  }
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) out[b][r] = horizontal_sum(acc[b][r]);
  for (; k < n_k; ++k) {  // ragged tail: f32/f16 rows whose length is not a multiple of 8
    for (int r = 0; r < NR; ++r) {
      const float wk = Rows::at(rows[r], k);
      for (int b = 0; b < MB; ++b) out[b][r] += wk * x[b * ldx + k];
    }
  }
}

// Everything one tile loop needs: a row range of W against MB batch rows.
struct TileJob {
  const float* x;  // first batch row, first k
  int64_t ldx;     // elements between batch rows of x
  int64_t n_k;     // k range length
  float* y;        // y[b * ldy + row] for local row 0
  int64_t ldy;
  int64_t n_rows;      // rows of this job; Rows index them from 0
  bool accumulate;     // add to y instead of overwriting (later K-blocks)
};

template <int MB, class Rows>
void run_tiles_mb(const Rows& w, const TileJob& job) {
  constexpr int NR = tile_rows(MB);
  for (int64_t r0 = 0; r0 < job.n_rows; r0 += NR) {
    // Rows past the end repeat the last row; their sums are discarded.
    int64_t ids[NR];
    for (int r = 0; r < NR; ++r) ids[r] = std::min(r0 + r, job.n_rows - 1);
    float out[MB][NR];
    dot_tile<MB, NR>(w, ids, job.x, job.ldx, job.n_k, out);
    const int valid = int(std::min<int64_t>(NR, job.n_rows - r0));
    for (int b = 0; b < MB; ++b) {
      float* yb = job.y + b * job.ldy + r0;
      for (int r = 0; r < valid; ++r) yb[r] = job.accumulate ? yb[r] + out[b][r] : out[b][r];
    }
  }
}

// Rows per chunk: every tile height (8, 4, 3) divides it. A chunk of weight
// rows stays in L1/L2 while all batch groups pass over it, so DRAM sees each
// weight once however large the batch.
constexpr int64_t kRowChunk = 24;

// All batch rows in groups of up to 4, each against all rows of the job.
template <class Rows>
void run_tiles(const Rows& w, const TileJob& job, int64_t batch) {
  for (int64_t r0 = 0; r0 < job.n_rows; r0 += kRowChunk) {
    for (int64_t b0 = 0; b0 < batch; b0 += 4) {
      TileJob part = job;
      part.x = job.x + b0 * job.ldx;
      part.y = job.y + b0 * job.ldy + r0;
      part.n_rows = std::min(kRowChunk, job.n_rows - r0);
      const Rows chunk = w.offset(r0);
      switch (std::min<int64_t>(4, batch - b0)) {
        case 1: run_tiles_mb<1>(chunk, part); break;
        case 2: run_tiles_mb<2>(chunk, part); break;
        case 3: run_tiles_mb<3>(chunk, part); break;
        default: run_tiles_mb<4>(chunk, part); break;
      }
    }
  }
}

const uint8_t* row_bytes_ptr(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + r * tensor::row_bytes(w.type, w.cols);
}

// GEMV regime: decode weights straight from the source rows [r_begin, r_end).
void multiply_rows_direct(const WeightMatrix& w, const float* x, int64_t batch, float* y, int64_t r_begin,
                          int64_t r_end) {
  TileJob job{x, w.cols, w.cols, y + r_begin, w.rows, r_end - r_begin, false};
  const void* first = row_bytes_ptr(w, r_begin);
  switch (w.type) {
    case GgmlType::F32:
      run_tiles(F32Rows{static_cast<const float*>(first), w.cols}, job, batch);
      break;
    case GgmlType::F16:
      run_tiles(F16Rows{static_cast<const uint16_t*>(first), w.cols}, job, batch);
      break;
    case GgmlType::Q8_0:
      run_tiles(Q8_0Rows{static_cast<const tensor::BlockQ8_0*>(first), w.cols / tensor::kQK8_0}, job, batch);
      break;
    default:
      throw Error(str("matmul: no direct path for ", gguf::ggml_type_traits(w.type).name));
  }
}

// Compute regime: per K-block, decode rows [r_begin, r_end) into `panel`
// ([rows][kKBlock] f32) once, then run every batch row against it.
void multiply_rows_packed(const WeightMatrix& w, const float* x, int64_t batch, float* y, int64_t r_begin,
                          int64_t r_end, AlignedBuffer<float>& panel) {
  const int64_t n_rows = r_end - r_begin;
  panel.resize(size_t(n_rows * kPanelStride));
  const auto& traits = gguf::ggml_type_traits(w.type);
  for (int64_t k0 = 0; k0 < w.cols; k0 += kKBlock) {
    const int64_t n_k = std::min(kKBlock, w.cols - k0);
    const int64_t byte_offset = k0 / traits.block_size * traits.type_size;
    for (int64_t r = 0; r < n_rows; ++r) {
      tensor::dequantize_row(w.type, row_bytes_ptr(w, r_begin + r) + byte_offset, panel.data() + r * kPanelStride,
                             n_k);
    }
    TileJob job{x + k0, w.cols, n_k, y + r_begin, w.rows, n_rows, k0 > 0};
    run_tiles(F32Rows{panel.data(), kPanelStride}, job, batch);
  }
}

bool has_direct_path(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::Q8_0;
}

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool) {
  const auto& traits = gguf::ggml_type_traits(w.type);
  require(tensor::is_supported_weight_type(w.type), "matmul: unsupported weight type ", traits.name);
  require(w.rows >= 0 && w.cols > 0 && w.cols % traits.block_size == 0, "matmul: bad ", traits.name,
          " weight shape ", w.rows, "x", w.cols, " (cols must be a positive multiple of ", traits.block_size, ")");
  require(batch >= 0, "matmul: negative batch ", batch);
  if (batch == 0 || w.rows == 0) return;

  const bool direct = batch <= kMaxDirectBatch && has_direct_path(w.type);
  // Direct: ~8 tasks per thread for balance, in multiples of 24 rows (every
  // tile height divides 24). Packed: one panel per task.
  const int64_t per_thread = (w.rows + pool.size() - 1) / pool.size();
  const int64_t rows_per_task =
      direct ? std::clamp<int64_t>((per_thread / 8 + 23) / 24 * 24, 24, 480) : kPanelRows;
  const int64_t n_tasks = (w.rows + rows_per_task - 1) / rows_per_task;

  // One captured reference keeps std::function's small-buffer storage: no allocation.
  struct Call {
    const WeightMatrix& w;
    const float* x;
    int64_t batch;
    float* y;
    bool direct;
    int64_t rows_per_task;
  } call{w, x, batch, y, direct, rows_per_task};
  const auto task = [&call](std::size_t t, int /*thread*/) {
    const int64_t r_begin = int64_t(t) * call.rows_per_task;
    const int64_t r_end = std::min(call.w.rows, r_begin + call.rows_per_task);
    if (call.direct) {
      multiply_rows_direct(call.w, call.x, call.batch, call.y, r_begin, r_end);
    } else {
      // Per-thread scratch, reused across calls: steady state allocates nothing.
      thread_local AlignedBuffer<float> panel;
      multiply_rows_packed(call.w, call.x, call.batch, call.y, r_begin, r_end, panel);
    }
  };
  // Below ~20 us of work, waking the other threads costs more than it saves
  // (and on an oversubscribed machine a wake-up can cost a whole time slice).
  constexpr int64_t kMinParallelMacs = int64_t(1) << 18;
  if (w.rows * w.cols * batch < kMinParallelMacs) {
    for (int64_t t = 0; t < n_tasks; ++t) task(size_t(t), 0);
    return;
  }
  pool.run(size_t(n_tasks), task);
}

}  // namespace bifurcate::kernels
