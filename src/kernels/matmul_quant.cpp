// The integer-dot-product path (matmul_quant.h): activation quantization and
// the row-range worker. Per task, weight rows are unpacked superblock by
// superblock into a small panel in L1 (levels + per-group scale/offset), and
// register tiles of MB batch rows x 2 weight rows run over it: per 64 (AVX2:
// 32) levels one integer dot product per pair, converted and scaled by the
// group scales (32-block types), or scaled by the integer group scales
// inside the integer sum and converted once per superblock (K-quants); per
// superblock the pair's partial sum is scaled by the activation scale and
// the offsets meet the activation group sums.
//  - batch 1 of the K-quants with AVX512-VNNI: matmul_quant_stream.cpp.
//  - batch <= 4 (decode): the panel is 2 rows x the whole row length, so each
//    thread reads two sequential streams and every weight byte once.
//  - larger batches: 16 rows x 4 superblocks (28 KiB), reused by every batch
//    group while it sits in L1; with AVX512-VNNI matmul_quant_lanes.cpp
//    (16 weight rows in the lanes of a register) instead.
#include "kernels/matmul_quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/matmul_int_simd.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::detail {
namespace {

using gguf::GgmlType;

// Largest batch served by the decode panel (2 rows x the whole row).
constexpr int64_t kDecodeMaxBatch = 4;
constexpr int64_t kPanelRows = 16;        // larger batches: rows per panel
constexpr int64_t kPanelSuperblocks = 4;  // larger batches: superblocks per panel
// Row streams prefetch this far ahead (docs/perf-notes.md M13: one stream per
// thread needs several KiB of lead over DRAM latency).
constexpr int64_t kPrefetchAhead = 8192;

// Quantizes n (<= 256, a multiple of 32) floats of one superblock; q gets
// 256 bytes (zero past n), sums and qsums 16 values, pair_sums and pair_qsums 8.
void quantize_superblock(const float* x, int n, int8_t* q, float& scale, float* sums, float* pair_sums,
                         int32_t* qsums, int16_t* pair_qsums) {
  __m256 amax = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float max_abs = _mm_cvtss_f32(m);
  scale = max_abs / 127.0f;
  const __m256 inv = _mm256_set1_ps(max_abs > 0 ? 127.0f / max_abs : 0.0f);
  for (int i = 0; i < n; i += 32) {
    // cvtps rounds to nearest even (the default MXCSR mode), as std::nearbyint.
    __m256i v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), inv));
    int group_q[2];
    for (int g = 0; g < 2; ++g) {
      const __m256i s = _mm256_add_epi32(v[2 * g], v[2 * g + 1]);
      __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      t = _mm_hadd_epi32(t, t);
      t = _mm_hadd_epi32(t, t);
      group_q[g] = _mm_cvtsi128_si32(t);
      sums[(i + 16 * g) / kGroup] = scale * float(group_q[g]);
      qsums[(i + 16 * g) / kGroup] = group_q[g];
    }
    pair_sums[i / 32] = scale * float(group_q[0] + group_q[1]);
    pair_qsums[i / 32] = int16_t(group_q[0] + group_q[1]);
    const __m256i lo = _mm256_packs_epi32(v[0], v[1]), hi = _mm256_packs_epi32(v[2], v[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(lo, hi),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_store_si256(reinterpret_cast<__m256i*>(q + i), bytes);
  }
  for (int i = n; i < kSuperblock; i += 32) _mm256_store_si256(reinterpret_cast<__m256i*>(q + i), _mm256_setzero_si256());
  for (int g = n / kGroup; g < kGroups; ++g) {
    sums[g] = 0.0f;
    qsums[g] = 0;
  }
  for (int j = n / 32; j < kGroups / 2; ++j) {
    pair_sums[j] = 0.0f;
    pair_qsums[j] = 0;
  }
}

int valid_in(int64_t sb, int64_t cols) { return int(std::min<int64_t>(kSuperblock, cols - sb * kSuperblock)); }

// One register tile: MB batch rows (from b0) x 2 weight rows (panel rows a and
// b, each `n_sb` consecutive superblocks from superblock sb0 of the row).
// Writes (or adds) a tile's MB x 2 accumulators, reduced to floats, to y:
// row b of the batch at y + b * ldy, the first valid_rows weight rows.
template <class S, int MB>
void store_tile(const typename S::V (&acc)[MB][2], float* y, int64_t ldy, int valid_rows, bool accumulate) {
  for (int b = 0; b < MB; ++b) {
    for (int r = 0; r < valid_rows; ++r) {
      float& out = y[b * ldy + r];
      const float v = S::hsum(acc[b][r]);
      out = accumulate ? out + v : v;
    }
  }
}

template <class S, int MB>
void quant_tile(const UnpackedSuperblock* row_a, const UnpackedSuperblock* row_b, const QuantizedX& x, int64_t b0,
                int64_t sb0, int64_t n_sb, int64_t cols, float* y, int64_t ldy, int valid_rows, bool accumulate) {
  using V = typename S::V;
  using IV = typename S::IV;
  const UnpackedSuperblock* rows[2] = {row_a, row_b};
  V acc[MB][2];
  for (int b = 0; b < MB; ++b) acc[b][0] = acc[b][1] = S::zero();
  const int64_t x_stride = x.n_sb * kSuperblock;
  for (int64_t s = 0; s < n_sb; ++s) {
    const int64_t sb = sb0 + s;
    const int n_chunks = (valid_in(sb, cols) + S::kBytes - 1) / S::kBytes;
    V part[MB][2];
    for (int b = 0; b < MB; ++b) part[b][0] = part[b][1] = S::zero();
    for (int c = 0; c < n_chunks; ++c) {
      IV xv[MB];
      for (int b = 0; b < MB; ++b)
        xv[b] = S::load_bytes(x.q + (b0 + b) * x_stride + sb * kSuperblock + c * S::kBytes);
      for (int r = 0; r < 2; ++r) {
        const IV wv = S::load_bytes(rows[r][s].levels + c * S::kBytes);
        const V scale = S::expand(rows[r][s].scale, c);
        for (int b = 0; b < MB; ++b) part[b][r] = S::fmadd(S::to_float(S::dot(wv, xv[b])), scale, part[b][r]);
      }
    }
    for (int b = 0; b < MB; ++b) {
      const int64_t xs = (b0 + b) * x.n_sb + sb;
      const V dx = S::set1(x.scale[xs]);
      const float* sums = x.group_sums + xs * kGroups;
      for (int r = 0; r < 2; ++r) {
        acc[b][r] = S::fmadd(part[b][r], dx, acc[b][r]);
        acc[b][r] = S::fmadd_groups(rows[r][s].offset, sums, acc[b][r]);
      }
    }
  }
  store_tile<S, MB>(acc, y + b0 * ldy, ldy, valid_rows, accumulate);
}

// The same tile for the K-quants (has_int_scales): per chunk one vpmaddubsw
// and one vpdpwssd per pair, the int16 group scales applied inside the
// integer sum; per superblock one conversion, scaled by d * dx.
template <class S, int MB>
void quant_tile_int_scales(const UnpackedSuperblock* row_a, const UnpackedSuperblock* row_b, const QuantizedX& x,
                           int64_t b0, int64_t sb0, int64_t n_sb, int64_t /*cols*/, float* y, int64_t ldy,
                           int valid_rows, bool accumulate) {
  using V = typename S::V;
  using IV = typename S::IV;
  const UnpackedSuperblock* rows[2] = {row_a, row_b};
  V acc[MB][2];
  for (int b = 0; b < MB; ++b) acc[b][0] = acc[b][1] = S::zero();
  const int64_t x_stride = x.n_sb * kSuperblock;
  for (int64_t s = 0; s < n_sb; ++s) {
    const int64_t sb = sb0 + s;
    IV part[MB][2];
    for (int b = 0; b < MB; ++b) part[b][0] = part[b][1] = S::zero_i();
    for (int c = 0; c < kSuperblock / S::kBytes; ++c) {
      IV xv[MB];
      for (int b = 0; b < MB; ++b)
        xv[b] = S::load_bytes(x.q + (b0 + b) * x_stride + sb * kSuperblock + c * S::kBytes);
      for (int r = 0; r < 2; ++r) {
        const IV wv = S::load_bytes(rows[r][s].levels + c * S::kBytes);
        const IV scale = S::expand_i16(rows[r][s].int_scale, c);
        for (int b = 0; b < MB; ++b) part[b][r] = S::dot_scaled(wv, xv[b], scale, part[b][r]);
      }
    }
    for (int b = 0; b < MB; ++b) {
      const int64_t xs = (b0 + b) * x.n_sb + sb;
      const float* sums = x.group_sums + xs * kGroups;
      for (int r = 0; r < 2; ++r) {
        acc[b][r] = S::fmadd(S::to_float(part[b][r]), S::set1(rows[r][s].d * x.scale[xs]), acc[b][r]);
        acc[b][r] = S::fmadd_groups(rows[r][s].offset, sums, acc[b][r]);
      }
    }
  }
  store_tile<S, MB>(acc, y + b0 * ldy, ldy, valid_rows, accumulate);
}

template <class S, bool kIntScales, int MB>
void run_tile(const UnpackedSuperblock* a, const UnpackedSuperblock* b, const QuantizedX& x, int64_t b0,
              int64_t sb0, int64_t n_sb, int64_t cols, float* y, int64_t ldy, int valid_rows, bool accumulate) {
  if constexpr (kIntScales)
    quant_tile_int_scales<S, MB>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate);
  else
    quant_tile<S, MB>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate);
}

template <class S, bool kIntScales>
void tiles_for_batch(const UnpackedSuperblock* a, const UnpackedSuperblock* b, const QuantizedX& x, int64_t batch,
                     int64_t sb0, int64_t n_sb, int64_t cols, float* y, int64_t ldy, int valid_rows,
                     bool accumulate) {
  constexpr int kMB = S::kMaxBatchTile;
  int64_t b0 = 0;
  for (; b0 + kMB <= batch; b0 += kMB)
    run_tile<S, kIntScales, kMB>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate);
  switch (batch - b0) {
    case 1: run_tile<S, kIntScales, 1>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate); break;
    case 2:
      if constexpr (kMB > 2) run_tile<S, kIntScales, 2>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate);
      break;
    case 3:
      if constexpr (kMB > 3) run_tile<S, kIntScales, 3>(a, b, x, b0, sb0, n_sb, cols, y, ldy, valid_rows, accumulate);
      break;
    default: break;
  }
}

template <class S>
void multiply_rows_quant_isa(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                             int64_t r_end, AlignedBuffer<UnpackedSuperblock>& panel) {
  const UnpackFn unpack = quant_unpacker(w.type);
  const bool int_scales = has_int_scales(w.type);
  const auto& traits = gguf::ggml_type_traits(w.type);
  const int64_t row_bytes = tensor::row_bytes(w.type, w.cols);
  const int64_t sb_bytes = kSuperblock / traits.block_size * traits.type_size;
  const bool decode = batch <= kDecodeMaxBatch;
  const int64_t panel_rows = decode ? 2 : kPanelRows;
  const int64_t panel_sb = decode ? x.n_sb : kPanelSuperblocks;
  // The prefetch runs this many superblocks ahead in each row.
  const int64_t ahead_sb = decode ? std::max<int64_t>(1, kPrefetchAhead / sb_bytes) : panel_sb;
  panel.resize(size_t(panel_rows * panel_sb));
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r0 = r_begin; r0 < r_end; r0 += panel_rows) {
    const int64_t n_rows = std::min(panel_rows, r_end - r0);
    for (int64_t sb0 = 0; sb0 < x.n_sb; sb0 += panel_sb) {
      const int64_t n_sb = std::min(panel_sb, x.n_sb - sb0);
      for (int64_t r = 0; r < n_rows; ++r) {
        const uint8_t* row = base + (r0 + r) * row_bytes;
        for (int64_t s = 0; s < n_sb; ++s) {
          const int64_t sb = sb0 + s;
          const uint8_t* ahead = row + (sb + ahead_sb) * sb_bytes;
          for (int64_t line = 0; line < sb_bytes; line += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + line), _MM_HINT_T0);
          unpack(row, sb, valid_in(sb, w.cols), panel[size_t(r * panel_sb + s)]);
        }
      }
      for (int64_t r = 0; r < n_rows; r += 2) {
        const int valid_rows = int(std::min<int64_t>(2, n_rows - r));
        const UnpackedSuperblock* a = &panel[size_t(r * panel_sb)];
        const UnpackedSuperblock* b = valid_rows == 2 ? a + panel_sb : a;
        if (int_scales)
          tiles_for_batch<S, true>(a, b, x, batch, sb0, n_sb, w.cols, y + r0 + r, w.rows, valid_rows, sb0 > 0);
        else
          tiles_for_batch<S, false>(a, b, x, batch, sb0, n_sb, w.cols, y + r0 + r, w.rows, valid_rows, sb0 > 0);
      }
    }
  }
}

}  // namespace

QuantizedX quantize_activations(const float* x, int64_t batch, int64_t cols, QuantizedXBuffers& buffers) {
  const int64_t n_sb = (cols + kSuperblock - 1) / kSuperblock;
  require(cols % 32 == 0, "quantize_activations: ", cols, " columns are not a multiple of 32");
  buffers.q.resize(size_t(batch * n_sb * kSuperblock));
  buffers.scale.resize(size_t(batch * n_sb));
  buffers.group_sums.resize(size_t(batch * n_sb * kGroups));
  buffers.pair_sums.resize(size_t(batch * n_sb * kGroups / 2));
  buffers.group_qsums.resize(size_t(batch * n_sb * kGroups));
  buffers.pair_qsums.resize(size_t(batch * n_sb * kGroups / 2));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t sb = 0; sb < n_sb; ++sb) {
      const int64_t i = b * n_sb + sb;
      quantize_superblock(x + b * cols + sb * kSuperblock, valid_in(sb, cols), buffers.q.data() + i * kSuperblock,
                          buffers.scale[size_t(i)], buffers.group_sums.data() + i * kGroups,
                          buffers.pair_sums.data() + i * kGroups / 2, buffers.group_qsums.data() + i * kGroups,
                          buffers.pair_qsums.data() + i * kGroups / 2);
    }
  }
  return {buffers.q.data(),           buffers.scale.data(),       buffers.group_sums.data(), buffers.pair_sums.data(),
          buffers.group_qsums.data(), buffers.pair_qsums.data(), n_sb};
}

bool has_quant_path(GgmlType type, bool /*avx512*/) { return quant_unpacker(type) != nullptr; }

void multiply_rows_quant(const WeightMatrix& w, const QuantizedX& x, int64_t batch, float* y, int64_t r_begin,
                         int64_t r_end, bool avx512, AlignedBuffer<UnpackedSuperblock>& panel) {
#ifdef __AVX512F__
  if (avx512 && batch == 1 && multiply_row_stream(w, x, y, r_begin, r_end)) return;
  if (avx512 && batch > kDecodeMaxBatch && multiply_rows_lanes(w, x, batch, y, r_begin, r_end)) return;
  if (avx512) return multiply_rows_quant_isa<simd::IntAvx512>(w, x, batch, y, r_begin, r_end, panel);
#endif
  (void)avx512;
  multiply_rows_quant_isa<simd::IntAvx2>(w, x, batch, y, r_begin, r_end, panel);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::detail
