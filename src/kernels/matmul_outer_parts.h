// Pieces both outer-product variants share (matmul_outer.cpp: weight rows in
// the lanes of a register; matmul_outer_lanes.cpp: batch rows in the lanes):
// the K-block width, the even split of batch rows (or vectors) into
// micro-tile groups and of those into chunks, and the prefetch of the next
// weight panel.
// Private to kernels/.
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/matmul_simd.h"
#include "tensor/dtype.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {

// Columns per K-block: a panel of 256 x 32 f32 (32 KiB) stays in L1 while
// every batch group passes over it; a multiple of every block size (256).
inline constexpr int64_t kOuterKBlock = 256;

// Batch rows per pass over a task's weights, at most: the pass's slice of
// packed x per K-block (rows x kOuterKBlock floats, 256 KiB) stays in L2.
inline constexpr int64_t kOuterMaxChunkRows = 256;

// n items split into groups of at most max, as even as possible (batch 32 in
// groups of <= 14: 11 + 11 + 10, not 14 + 14 + 4).
struct EvenGroups {
  int64_t count, base, extra;  // the first `extra` groups have base + 1 items
  EvenGroups(int64_t n, int max) : count((n + max - 1) / max), base(n / count), extra(n % count) {}
  int64_t first(int64_t g) const { return g * base + std::min(g, extra); }
  int size(int64_t g) const { return int(base + (g < extra ? 1 : 0)); }
  // The end of the chunk of whole groups from g_begin holding at most
  // max_items items (at least one group).
  int64_t chunk_end(int64_t g_begin, int64_t max_items) const {
    int64_t g_end = g_begin + 1;
    while (g_end < count && first(g_end + 1) - first(g_begin) <= max_items) ++g_end;
    return g_end;
  }
};

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

// Lines of weight rows to bring into the cache while a micro-tile runs,
// walked row by row: `count` lines from `line`, lines_per_row per row, rows
// row_bytes apart. The next panel's rows, spread over this panel's
// micro-tiles, one line per k step: its conversion then reads the cache, not
// DRAM (row slices of 0.5-1 KiB are too short for the hardware prefetcher).
// Into L1 (T0), not only L2: the batch-in-lanes variant's next panel is 4
// KiB, and its conversion stalled on L2 (~3-5 % at batch 32-96; the other
// variant's 16 KiB measured the same either way, M16).
struct PrefetchLines {
  const char* line = nullptr;
  int64_t row_bytes = 0;
  int lines_per_row = 1, in_row = 0, count = 0;
  void issue() {
    _mm_prefetch(line, _MM_HINT_T0);
    line += 64;
    if (++in_row == lines_per_row) {
      in_row = 0;
      line += row_bytes - int64_t(lines_per_row) * 64;
    }
    --count;
  }
  // The first n lines; this keeps the rest.
  PrefetchLines take(int n) {
    PrefetchLines part = *this;
    part.count = n;
    const int rows = (in_row + n) / lines_per_row;
    line += int64_t(n) * 64 + rows * (row_bytes - int64_t(lines_per_row) * 64);
    in_row = (in_row + n) % lines_per_row;
    count -= n;
    return part;
  }
};

// The lines of rows [r0, r0 + n_rows) x columns [k0, k0 + n_k) of w, from
// `first` (the task's first row).
inline PrefetchLines lines_of(const WeightMatrix& w, const uint8_t* first, int64_t row_bytes, int64_t r0,
                              int n_rows, int64_t k0, int64_t n_k) {
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t offset = k0 / traits.block_size * traits.type_size;
  const int64_t bytes = n_k / traits.block_size * traits.type_size;
  const char* start = reinterpret_cast<const char*>(first + r0 * row_bytes + offset);
  PrefetchLines lines;
  lines.line = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(start) & ~uintptr_t(63));
  lines.row_bytes = row_bytes;
  lines.lines_per_row = int((start - lines.line + bytes + 63) / 64);
  lines.count = n_rows * lines.lines_per_row;
  return lines;
}

// The lines of the panel after rows [r0, r0 + rows_per_panel) of K-block k0
// in a task of n_task_rows: the next rows, or the first ones of the next
// K-block; none after the last panel.
inline PrefetchLines next_panel_lines(const WeightMatrix& w, const uint8_t* first, int64_t row_bytes,
                                      int64_t n_task_rows, int64_t rows_per_panel, int64_t r0, int64_t k0) {
  if (r0 + rows_per_panel < n_task_rows) {
    return lines_of(w, first, row_bytes, r0 + rows_per_panel,
                    int(std::min(rows_per_panel, n_task_rows - r0 - rows_per_panel)), k0,
                    std::min(kOuterKBlock, w.cols - k0));
  }
  if (k0 + kOuterKBlock < w.cols) {
    return lines_of(w, first, row_bytes, 0, int(std::min(rows_per_panel, n_task_rows)), k0 + kOuterKBlock,
                    std::min(kOuterKBlock, w.cols - k0 - kOuterKBlock));
  }
  return {};
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
