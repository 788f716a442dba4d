// Direct path (F32/F16/Q8_0; the outer-product path, matmul_outer.cpp, takes
// batches >= 32 of rows > 1024 elements): weights are decoded in registers
// straight from the mapped rows and FMA'd into up to 4 batch rows at a time
// (AVX-512 at decode batches 8..64: 8 rows at a time from an interleaved copy
// of x, each weight decoded once per 8 batch rows, in 1024-wide K-blocks, with
// the next tile's weight rows prefetched).
// A 24-row chunk of weights stays in L2 while every batch group passes over
// it, so DRAM reads each weight once however large the batch; at batch 1-4
// this is the bandwidth-bound GEMV, from ~8 on the FMA-bound tile loop. (At
// prefill batches these dot-product tiles, with a horizontal sum per tile
// and MB + NR loads per MB x NR FMAs, reached ~47 % of the FMA peak on Intel
// hosts; the outer-product micro-tiles replaced them there.) A lone batch
// row over rows of <= 4096 columns runs one weight row at a time instead
// (run_row_streams: one sequential DRAM stream per thread).
#include <algorithm>

#include "kernels/matmul_paths.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;

// Rows per chunk: every tile height divides it. A chunk of weight rows stays
// in L1/L2 while all batch groups pass over it.
constexpr int64_t kRowChunk = 24;

// Weight rows per 8-batch-row tile (AVX-512 only): 24 accumulators, 3 weight
// vectors and one x vector of the 32 registers.
constexpr int kRowsPer8Tile = 3;

// K-block of the chunk loop with 8-row tiles (run_rows); a multiple of 32.
constexpr int64_t kKBlock = 1024;

// The 8-row tiles serve decode batches up to this; above it (prefill) the
// 4-row tiles over plain x measured faster (F16 batch 256: 430 vs 405 GFLOP/s,
// on an AMD Zen 5 host). Since then batches from 32 on of rows > 1024 take
// the outer path (matmul_outer.cpp).
constexpr int64_t kMaxBatch8 = 64;

// Row decoders: `load<S>(row, k)` gives S::kLanes consecutive weights of one
// row from element k (k % kLanes == 0) as f32; `at` a single weight, for the
// ragged tail of f32/f16 rows.
struct F32Rows {
  const float* base;
  int64_t stride;  // elements between rows
  const float* row(int64_t r) const { return base + r * stride; }
  F32Rows offset(int64_t r) const { return {row(r), stride}; }
  template <class S>
  static typename S::V load(const float* p, int64_t k) {
    return S::load(p + k);
  }
  static float at(const float* p, int64_t k) { return p[k]; }
};

struct F16Rows {
  const uint16_t* base;
  int64_t stride;
  const uint16_t* row(int64_t r) const { return base + r * stride; }
  F16Rows offset(int64_t r) const { return {row(r), stride}; }
  template <class S>
  static typename S::V load(const uint16_t* p, int64_t k) {
    return S::load_f16(p + k);
  }
  static float at(const uint16_t* p, int64_t k) { return f16_to_f32(p[k]); }
};

// Q8_0 rows: each block's f16 scale is converted in the tile, once per block
// and row, where the block is read anyway. (A per-chunk f32 scale table
// gathered the scales column by column before the tiles ran: a strided pass
// over DRAM that measured 43% of a B = 8 decode step.)
struct Q8_0Rows {
  const tensor::BlockQ8_0* base;
  int64_t stride;  // blocks between rows
  const tensor::BlockQ8_0* row(int64_t r) const { return base + r * stride; }
  Q8_0Rows offset(int64_t r) const { return {row(r), stride}; }
};

// Makes the compiler materialise v in a register. Without it g++ 12 folds the
// x load of the 8x3 tile into each of its 3 FMAs (24 loads instead of 8 per
// k step, 27 loads for 24 FMAs: load-bound, measured 20% slower).
template <class V>
inline void keep_in_register(V& v) {
  asm("" : "+v"(v));
}

// Row r from element k on (k a multiple of the block size; may be negative).
const float* row_at(const F32Rows& w, int64_t r, int64_t k) { return w.row(r) + k; }
const uint16_t* row_at(const F16Rows& w, int64_t r, int64_t k) { return w.row(r) + k; }
const tensor::BlockQ8_0* row_at(const Q8_0Rows& w, int64_t r, int64_t k) {
  return w.row(r) + k / tensor::kQK8_0;
}

// The same rows from element k0 on (k0 a multiple of the block size).
template <class Rows>
Rows skip_k(const Rows& w, int64_t k0) {
  return {row_at(w, 0, k0), w.stride};
}

// Software prefetch in a tile's k loop. The hardware prefetcher alone kept
// too few lines in flight for the 3-8 row streams of a tile that reads its
// weights from DRAM (docs/perf-notes.md M5, M6).
enum class Prefetch {
  none,       // the chunk is already in cache (a later batch group)
  ahead,      // the first pass over a chunk: each row kPrefetchAhead bytes ahead
  next_tile,  // 8-row tiles: the next tile's rows at the same k
};
constexpr int64_t kPrefetchAhead = 1024;
// A row stream (one sequential stream per thread) prefetches this far ahead:
// 1 KiB is ~40 ns of reading at 27 GB/s, short of DRAM latency; 4-16 KiB
// measured +15-35 % GB/s at batch 1 in bench_matmul (docs/perf-notes.md
// M13), but its matrices sit in L3: on the whole model (weights from DRAM)
// 2 KiB measured 8-12 % faster steps than 8 KiB for F16 (Q14).
constexpr int64_t kStreamAhead = 2048;

// Where the tile that runs after this one reads (Prefetch::next_tile): its
// first row and its first element relative to this tile's (negative when it
// is the next chunk's first K-block).
struct NextTile {
  int64_t row;
  int64_t k;
};

// Rows per register tile for MB batch rows: MB*NR accumulators plus the live
// weight vectors fit the register file. Every value divides kRowChunk.
template <class S>
constexpr int tile_rows(int mb) {
  if constexpr (S::kRegisters == 32) return mb <= 2 ? 8 : 6;
  return mb == 1 ? 8 : mb == 4 ? 3 : 4;
}

// out[b][r] = sum_k X(b, k) * W[row_ids[r]][k] over k in [0, n_k), where
// X(b, k) = x[b*ldx + k*KMUL + ...]: KMUL = 1 is plain row-major x; KMUL = MB
// is the interleaved copy (pack_x_groups: ldx = kLanes, a vector of each
// batch row per kLanes of k, so the MB loads of one k step are contiguous).
template <class S, int MB, int NR, int KMUL, Prefetch P, class Rows>
void dot_tile(const Rows& w, const int64_t (&row_ids)[NR], const NextTile& next, const float* x, int64_t ldx,
              int64_t n_k, float (&out)[MB][NR]) {
  decltype(w.row(0)) rows[NR], ahead[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.row(row_ids[r]);
  for (int r = 0; r < NR; ++r) ahead[r] = row_at(w, next.row + r, next.k);
  typename S::V acc[MB][NR];
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) acc[b][r] = S::zero();
  int64_t k = 0;
  for (; k + S::kLanes <= n_k; k += S::kLanes) {
    typename S::V wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = Rows::template load<S>(rows[r], k);
    if constexpr (P == Prefetch::next_tile) {
      for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(ahead[r] + k), _MM_HINT_T0);
    } else if constexpr (P == Prefetch::ahead) {
      constexpr int64_t kElements = kPrefetchAhead / int64_t(sizeof(*rows[0]));
      if (k % (64 / int64_t(sizeof(*rows[0]))) == 0)  // once per cache line
        for (int r = 0; r < NR; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(rows[r] + k + kElements), _MM_HINT_T0);
    }
    for (int b = 0; b < MB; ++b) {
      typename S::V xv = S::load(x + b * ldx + k * KMUL);
      if constexpr (KMUL != 1) keep_in_register(xv);
      for (int r = 0; r < NR; ++r) acc[b][r] = S::fmadd(wv[r], xv, acc[b][r]);
    }
  }
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) out[b][r] = S::hsum(acc[b][r]);
  // Ragged tail: f32/f16 rows whose length is not a multiple of kLanes (never
  // with interleaved x, which is only made when n_k % kLanes == 0).
  for (; k < n_k; ++k) {
    for (int r = 0; r < NR; ++r) {
      const float wk = Rows::at(rows[r], k);
      for (int b = 0; b < MB; ++b) out[b][r] += wk * x[b * ldx + k];
    }
  }
}

// The same product for Q8_0, block by block: per block the 8-bit values of
// each row become f32 and are scaled by that row's block scale.
template <class S, int MB, int NR, int KMUL, Prefetch P>
void dot_tile(const Q8_0Rows& w, const int64_t (&row_ids)[NR], const NextTile& next, const float* x,
              int64_t ldx, int64_t n_k, float (&out)[MB][NR]) {
  constexpr int kVectors = tensor::kQK8_0 / S::kLanes;
  const tensor::BlockQ8_0 *rows[NR], *ahead[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.row(row_ids[r]);
  for (int r = 0; r < NR; ++r) ahead[r] = row_at(w, next.row + r, next.k);
  typename S::V acc[MB][NR];
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) acc[b][r] = S::zero();
  const int64_t n_blocks = n_k / tensor::kQK8_0;
  for (int64_t j = 0; j < n_blocks; ++j) {
    if constexpr (P == Prefetch::next_tile) {
      for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(ahead[r] + j), _MM_HINT_T0);
    } else if constexpr (P == Prefetch::ahead) {
      constexpr int64_t kBlocks = kPrefetchAhead / int64_t(sizeof(tensor::BlockQ8_0));
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + j + kBlocks), _MM_HINT_T0);
    }
    typename S::V scale[NR];
    for (int r = 0; r < NR; ++r) scale[r] = S::set1(f16_to_f32(rows[r][j].d));
    for (int v = 0; v < kVectors; ++v) {
      typename S::V wv[NR];
      for (int r = 0; r < NR; ++r) wv[r] = S::mul(S::load_i8(rows[r][j].qs + v * S::kLanes), scale[r]);
      const float* xk = x + (j * tensor::kQK8_0 + v * S::kLanes) * KMUL;
      for (int b = 0; b < MB; ++b) {
        typename S::V xv = S::load(xk + b * ldx);
        if constexpr (KMUL != 1) keep_in_register(xv);
        for (int r = 0; r < NR; ++r) acc[b][r] = S::fmadd(wv[r], xv, acc[b][r]);
      }
    }
  }
  for (int b = 0; b < MB; ++b)
    for (int r = 0; r < NR; ++r) out[b][r] = S::hsum(acc[b][r]);
}

// One row range of W against MB batch rows.
struct TileJob {
  const float* x;  // first batch row
  int64_t ldx;     // elements between batch rows of x (= n_k)
  int64_t n_k;
  float* y;  // y[b * ldy + row] for local row 0
  int64_t ldy;
  int64_t n_rows;   // rows of this job; Rows index them from 0
  bool accumulate;  // add to y (a later K-block of a panel) instead of overwriting
  // Optional interleaved copy of the first n_groups8 * 8 batch rows of x
  // (pack_x_groups layout) for the 8-row tiles, or null.
  const float* x8;
  int64_t n_groups8;
  bool weights_in_dram;  // mapped weights (prefetch them), not a panel in cache
  NextTile after_last;   // where the tile after the job's last one reads
};

template <class S, int MB, class Rows, int KMUL = 1, Prefetch P = Prefetch::none>
void run_tiles_mb(const Rows& w, const TileJob& job) {
  constexpr int NR = KMUL == 1 ? tile_rows<S>(MB) : kRowsPer8Tile;
  for (int64_t r0 = 0; r0 < job.n_rows; r0 += NR) {
    // Rows past the end repeat the last row; their sums are discarded.
    int64_t ids[NR];
    for (int r = 0; r < NR; ++r) ids[r] = std::min(r0 + r, job.n_rows - 1);
    float out[MB][NR];
    const NextTile next = r0 + NR < job.n_rows ? NextTile{r0 + NR, 0} : job.after_last;
    dot_tile<S, MB, NR, KMUL, P>(w, ids, next, job.x, job.ldx, job.n_k, out);
    const int valid = int(std::min<int64_t>(NR, job.n_rows - r0));
    for (int b = 0; b < MB; ++b) {
      float* yb = job.y + b * job.ldy + r0;
      for (int r = 0; r < valid; ++r) yb[r] = job.accumulate ? yb[r] + out[b][r] : out[b][r];
    }
  }
}

// One batch row against rows of at most this many elements runs row by row
// (run_row_streams): measured +5-17 % GB/s over the 8-row tile at 4096
// columns, -20 % at 11008 (x no longer stays in L1 beside the stream), and
// no gain for two batch rows.
constexpr int64_t kRowStreamMaxCols = 4096;

// y[r] (+)= x . W[r] for every row of the job, one row at a time with 8
// accumulators along k: each thread reads ONE sequential stream (rows are
// contiguous, so prefetching ahead runs on into the next row), which DRAM
// and the hardware prefetcher serve better than the 8 streams of a tile.
// Mapped rows only (the packed path's f32 panel is in cache: it keeps the tile).
template <class S, class Rows>
void run_row_streams(const Rows& w, const TileJob& job, bool first_pass) {
  constexpr int U = 8;
  constexpr int64_t kStep = U * S::kLanes, kElementBytes = int64_t(sizeof(*w.row(0)));
  for (int64_t r = 0; r < job.n_rows; ++r) {
    const auto* row = w.row(r);
    typename S::V acc[U];
    for (int u = 0; u < U; ++u) acc[u] = S::zero();
    int64_t k = 0;
    for (; k + kStep <= job.n_k; k += kStep) {
      if (first_pass) {
        for (int64_t line = 0; line < kStep * kElementBytes; line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(row + k) + kStreamAhead + line, _MM_HINT_T0);
      }
      for (int u = 0; u < U; ++u)
        acc[u] = S::fmadd(Rows::template load<S>(row, k + u * S::kLanes), S::load(job.x + k + u * S::kLanes),
                          acc[u]);
    }
    for (; k + S::kLanes <= job.n_k; k += S::kLanes)
      acc[0] = S::fmadd(Rows::template load<S>(row, k), S::load(job.x + k), acc[0]);
    for (int u = 1; u < U; ++u) acc[0] = S::add(acc[0], acc[u]);
    float sum = S::hsum(acc[0]);
    for (; k < job.n_k; ++k) sum += Rows::at(row, k) * job.x[k];
    job.y[r] = job.accumulate ? job.y[r] + sum : sum;
  }
}

// The same for Q8_0: per block the two 16-weight halves are summed against x
// first and scaled once (measured +12-21 % GB/s over the 8-row tile).
template <class S>
void run_row_streams(const Q8_0Rows& w, const TileJob& job, bool first_pass) {
  constexpr int U = 4;  // blocks per step, one accumulator each
  constexpr int kVectors = tensor::kQK8_0 / S::kLanes;
  const int64_t n_blocks = job.n_k / tensor::kQK8_0;
  // x . block j of `row`, scaled by the block's scale, added to acc.
  const auto add_block = [&](const tensor::BlockQ8_0& block, int64_t j, typename S::V& acc) {
    const float* xk = job.x + j * tensor::kQK8_0;
    typename S::V p = S::mul(S::load_i8(block.qs), S::load(xk));
    for (int v = 1; v < kVectors; ++v)
      p = S::fmadd(S::load_i8(block.qs + v * S::kLanes), S::load(xk + v * S::kLanes), p);
    acc = S::fmadd(p, S::set1(f16_to_f32(block.d)), acc);
  };
  for (int64_t r = 0; r < job.n_rows; ++r) {
    const tensor::BlockQ8_0* row = w.row(r);
    typename S::V acc[U];
    for (int u = 0; u < U; ++u) acc[u] = S::zero();
    int64_t j = 0;
    for (; j + U <= n_blocks; j += U) {
      if (first_pass) {
        for (int64_t line = 0; line < U * int64_t(sizeof(tensor::BlockQ8_0)); line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(row + j) + kStreamAhead + line, _MM_HINT_T0);
      }
      for (int u = 0; u < U; ++u) add_block(row[j + u], j + u, acc[u]);
    }
    for (; j < n_blocks; ++j) add_block(row[j], j, acc[0]);
    for (int u = 1; u < U; ++u) acc[0] = S::add(acc[0], acc[u]);
    const float sum = S::hsum(acc[0]);
    job.y[r] = job.accumulate ? job.y[r] + sum : sum;
  }
}

// MB batch rows of plain x against one chunk; the first group to pass over a
// chunk of mapped weights reads it from DRAM and prefetches ahead.
template <class S, int MB, class Rows>
void run_group(const Rows& chunk, const TileJob& job, bool first_pass) {
  if constexpr (MB == 1) {
    if (job.weights_in_dram && job.n_k <= kRowStreamMaxCols)
      return run_row_streams<S>(chunk, job, first_pass);
  }
  if (first_pass)
    run_tiles_mb<S, MB, Rows, 1, Prefetch::ahead>(chunk, job);
  else
    run_tiles_mb<S, MB, Rows, 1, Prefetch::none>(chunk, job);
}

// All batch rows against all rows of one chunk: first the groups of 8 that
// have an interleaved x copy (each weight vector is decoded once per 8 batch
// rows instead of once per 4), then the rest in groups of up to 4.
template <class S, class Rows>
void run_chunk(const Rows& chunk, const TileJob& job, int64_t batch) {
  int64_t b0 = 0;
  if constexpr (S::kRegisters == 32) {
    for (int64_t g = 0; g < job.n_groups8; ++g, b0 += 8) {
      TileJob part = job;
      part.x = job.x8 + g * 8 * job.ldx;  // direct path: ldx is the full row length
      part.ldx = S::kLanes;
      part.y = job.y + b0 * job.ldy;
      run_tiles_mb<S, 8, Rows, 8, Prefetch::next_tile>(chunk, part);
    }
  }
  for (; b0 < batch; b0 += 4) {
    TileJob part = job;
    part.x = job.x + b0 * job.ldx;
    part.y = job.y + b0 * job.ldy;
    const bool first_pass = b0 == 0 && job.weights_in_dram;
    switch (std::min<int64_t>(4, batch - b0)) {
      case 1:
        run_group<S, 1>(chunk, part, first_pass);
        break;
      case 2:
        run_group<S, 2>(chunk, part, first_pass);
        break;
      case 3:
        run_group<S, 3>(chunk, part, first_pass);
        break;
      default:
        run_group<S, 4>(chunk, part, first_pass);
        break;
    }
  }
}

// All rows of `w` (a row decoder; job.n_rows of them) chunk by chunk.
// With the 8-row tiles each chunk is also cut into K-blocks so that a batch
// group's slice of x (8 rows x kKBlock floats = 32 KiB) stays in L1 while the
// chunk's tiles pass over it; tiles add their partial sums to y.
template <class S, class Rows>
void run_rows(const TileJob& job, int64_t batch, const Rows& w) {
  const int64_t k_block = job.n_groups8 > 0 ? kKBlock : job.n_k;
  for (int64_t r0 = 0; r0 < job.n_rows; r0 += kRowChunk) {
    TileJob part = job;
    part.y = job.y + r0;
    part.n_rows = std::min(kRowChunk, job.n_rows - r0);
    const Rows rows = w.offset(r0);
    for (int64_t k0 = 0; k0 < job.n_k; k0 += k_block) {
      TileJob block = part;
      block.x = job.x + k0;
      block.x8 = job.x8 ? job.x8 + k0 * 8 : nullptr;  // interleaved: 8 floats per k
      block.n_k = std::min(k_block, job.n_k - k0);
      block.accumulate = job.accumulate || k0 > 0;
      // After the chunk's last tile come its first rows in the next K-block,
      // or after the last K-block the next chunk from k = 0.
      block.after_last = k0 + k_block < job.n_k ? NextTile{0, block.n_k} : NextTile{part.n_rows, -k0};
      run_chunk<S>(skip_k(rows, k0), block, batch);
    }
  }
}

template <class S>
void multiply_rows_direct_isa(const WeightMatrix& w, const float* x, const PackedX& x8, int64_t batch,
                              float* y, int64_t r_begin, int64_t r_end) {
  const TileJob job{x,     w.cols,  w.cols,      y + r_begin, w.rows, r_end - r_begin,
                    false, x8.data, x8.n_groups, true,        {}};
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const uint8_t* first = static_cast<const uint8_t*>(w.data) + r_begin * row_bytes;
  switch (w.type) {
    case GgmlType::F32: {
      const F32Rows rows{reinterpret_cast<const float*>(first), w.cols};
      run_rows<S>(job, batch, rows);
      break;
    }
    case GgmlType::F16: {
      const F16Rows rows{reinterpret_cast<const uint16_t*>(first), w.cols};
      run_rows<S>(job, batch, rows);
      break;
    }
    case GgmlType::Q8_0: {
      const Q8_0Rows rows{reinterpret_cast<const tensor::BlockQ8_0*>(first), w.cols / tensor::kQK8_0};
      run_rows<S>(job, batch, rows);
      break;
    }
    default:
      throw Error(str("matmul: no direct path for ", gguf::ggml_type_traits(w.type).name));
  }
}

}  // namespace

bool has_direct_path(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::Q8_0;
}

void multiply_panel_direct(const PanelProduct& p, bool avx512) {
  const TileJob job{p.x, p.ldx, p.n_k, p.y, p.ldy, p.n_rows, p.accumulate, nullptr, 0, false, {}};
  const F32Rows rows{p.panel, p.ld_panel};
#ifdef __AVX512F__
  if (avx512) return run_rows<simd::Avx512>(job, p.batch, rows);
#endif
  (void)avx512;
  run_rows<simd::Avx2>(job, p.batch, rows);
}

void multiply_rows_direct(const WeightMatrix& w, const float* x, const PackedX& x8, int64_t batch, float* y,
                          int64_t r_begin, int64_t r_end, bool avx512) {
#ifdef __AVX512F__
  if (avx512) return multiply_rows_direct_isa<simd::Avx512>(w, x, x8, batch, y, r_begin, r_end);
#endif
  (void)avx512;
  require(x8.n_groups == 0, "matmul: interleaved x is only for the AVX-512 kernels");
  multiply_rows_direct_isa<simd::Avx2>(w, x, PackedX{}, batch, y, r_begin, r_end);
}

PackedX pack_x_groups(const float* x, int64_t batch, int64_t cols, bool avx512,
                      AlignedBuffer<float>& buffer) {
  constexpr int64_t kLanes = 16;  // simd::Avx512::kLanes
  if (!avx512 || batch < 8 || batch > kMaxBatch8 || cols % kLanes != 0) return {};
  const int64_t n_groups = batch / 8;
  buffer.resize(size_t(n_groups * 8 * cols));
  for (int64_t g = 0; g < n_groups; ++g) {
    float* out = buffer.data() + g * 8 * cols;
    for (int64_t k0 = 0; k0 < cols; k0 += kLanes)
      for (int64_t b = 0; b < 8; ++b, out += kLanes) std::copy_n(x + (g * 8 + b) * cols + k0, kLanes, out);
  }
  return {buffer.data(), n_groups};
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
