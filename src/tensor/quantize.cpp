// Encoding of f32 rows into the supported weight types.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::tensor {
namespace {

using gguf::GgmlType;

// Round half to even, as ggml's nearest_int does for the K-quants.
int nearest_int(float x) { return int(std::nearbyint(x)); }

// ggml's quantize_row_q8_0_ref: d = amax/127, q = round(x/d) (half away from 0).
void quantize_q8_0(const float* x, BlockQ8_0* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    for (int j = 0; j < kQK8_0; ++j) blocks[b].qs[j] = int8_t(std::round(x[j] * id));
  }
}

// ggml's quantize_row_q4_0_ref: the value of largest magnitude maps to -8.
void quantize_q4_0(const float* x, BlockQ4_0* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK4_0) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int lo = std::min(15, int(int8_t(x[j] * id + 8.5f)));
      const int hi = std::min(15, int(int8_t(x[j + kQK4_0 / 2] * id + 8.5f)));
      blocks[b].qs[j] = uint8_t(lo | (hi << 4));
    }
  }
}

// Packs 32 values of 0..15 (the low 4 bits of q[j]) as Q4_0's nibbles; the
// Q5 types' fifth bits go to qh (bit j of the little-endian 32-bit word).
void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
void pack_fifth_bits(const uint8_t* q, uint8_t* qh) {
  uint32_t bits = 0;
  for (int j = 0; j < 32; ++j) bits |= uint32_t((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &bits, 4);
}

// ggml's quantize_row_q4_1_ref / q5_1_ref: d = (max - min) / (2^bits - 1),
// m = min, q = round-half-up((x - min) / d).
template <class Block, int kMaxQ>
void quantize_affine(const float* x, Block* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += 32) {
    const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
    const float d = (hi - lo) / float(kMaxQ);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    blocks[b].m = f32_to_f16(lo);
    uint8_t q[32];
    for (int j = 0; j < 32; ++j) q[j] = uint8_t(std::min(kMaxQ, int(int8_t((x[j] - lo) * id + 0.5f))));
    pack_nibbles(q, blocks[b].qs);
    if constexpr (kMaxQ == 31) pack_fifth_bits(q, blocks[b].qh);
  }
}

// ggml's quantize_row_q5_0_ref: the value of largest magnitude maps to -16.
void quantize_q5_0(const float* x, BlockQ5_0* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += 32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    uint8_t q[32];
    for (int j = 0; j < 32; ++j) q[j] = uint8_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
    pack_nibbles(q, blocks[b].qs);
    pack_fifth_bits(q, blocks[b].qh);
  }
}

// Writes 6-bit scale `ls` and min `lm` of sub-block j (inverse of scale_min_q4_k).
void pack_scale_min_q4_k(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] |= uint8_t((ls >> 4) << 6);
    scales[j] |= uint8_t((lm >> 4) << 6);
  }
}

// Scale and min of n values for levels 0..nmax, chosen as ggml's
// make_qkx2_quants does: candidate inverse scales (nmax + rmin + rdelta*i) /
// (max - min) for i = 0..nstep each round x to levels, then a weighted
// least-squares fit of scale and min to those levels; the fit with the
// smallest weighted squared error wins. Returns the scale; *neg_min = -min
// (>= 0: the min is clamped to <= 0 as in ggml, so the stored min is
// non-negative). L receives the levels.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min) {
  constexpr float kRmin = -1.0f, kRdelta = 0.1f;
  constexpr int kSteps = 20;
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  lo = std::min(lo, 0.0f);
  if (hi == lo) {
    std::fill(L, L + n, uint8_t(0));
    *neg_min = -lo;
    return 0.0f;
  }
  float sum_w = 0, sum_x = 0;
  for (int i = 0; i < n; ++i) sum_w += w[i], sum_x += w[i] * x[i];
  const auto error_of = [&](float scale, float min, const uint8_t* levels) {
    float e = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * levels[i] + min - x[i];
      e += w[i] * diff * diff;
    }
    return e;
  };
  float scale = (hi - lo) / float(nmax), min = lo;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(std::clamp(nearest_int((x[i] - lo) / scale), 0, nmax));
  float best = error_of(scale, min, L);
  uint8_t trial[256];
  for (int step = 0; step <= kSteps; ++step) {
    const float iscale = (kRmin + kRdelta * float(step) + float(nmax)) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      trial[i] = uint8_t(l);
      sum_l += w[i] * float(l);
      sum_l2 += w[i] * float(l) * float(l);
      sum_xl += w[i] * float(l) * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {  // keep min <= 0 (stored as a non-negative offset)
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    const float e = error_of(this_scale, this_min, trial);
    if (e < best) {
      best = e;
      scale = this_scale;
      min = this_min;
      std::copy(trial, trial + n, L);
    }
  }
  *neg_min = -min;
  return scale;
}

// Q4_K (kLevels 15) and Q5_K (31): per 32-element sub-block a scale and min
// from fit_scale_min with ggml's weights av|x| + |x_i| (av = the block's RMS);
// both are then quantised to 6 bits against the super-block's largest, and
// the values re-rounded against the quantised scales.
template <class Block, int kLevels>
void quantize_k_with_mins(const float* x, Block* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK_K) {
    Block& blk = blocks[b];
    float scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
    uint8_t L[kQK_K];
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
      const float av = std::sqrt(sum_x2 / 32);
      float w[32];
      for (int l = 0; l < 32; ++l) w[l] = av + std::fabs(xs[l]);
      scales[j] = fit_scale_min(32, kLevels, xs, w, L + 32 * j, &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    std::memset(blk.scales, 0, sizeof blk.scales);
    for (int j = 0; j < 8; ++j) {
      const auto ls = uint8_t(std::min(63, nearest_int(inv_scale * scales[j])));
      const auto lm = uint8_t(std::min(63, nearest_int(inv_min * mins[j])));
      pack_scale_min_q4_k(j, ls, lm, blk.scales);
    }
    blk.d = f32_to_f16(max_scale / 63.0f);
    blk.dmin = f32_to_f16(max_min / 63.0f);

    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_q4_k(j, blk.scales, sc, m);
      const float d = f16_to_f32(blk.d) * sc;
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(blk.dmin) * m;
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = uint8_t(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, kLevels));
    }
    if constexpr (kLevels == 31) std::memset(blk.qh, 0, sizeof blk.qh);
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo = L[64 * chunk + l], hi = L[64 * chunk + 32 + l];
        blk.qs[32 * chunk + l] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
        if constexpr (kLevels == 31) {
          blk.qh[l] |= uint8_t(((lo >> 4) << (2 * chunk)) | ((hi >> 4) << (2 * chunk + 1)));
        }
      }
    }
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* blocks, int64_t n_blocks) {
  quantize_k_with_mins<BlockQ4_K, 15>(x, blocks, n_blocks);
}
void quantize_q5_k(const float* x, BlockQ5_K* blocks, int64_t n_blocks) {
  quantize_k_with_mins<BlockQ5_K, 31>(x, blocks, n_blocks);
}

// Symmetric levels -nmax..nmax-1 for n values, as ggml's make_qx_quants with
// rmse_type 1: weights x_i^2, the scale that minimises the weighted squared
// error for the levels of each candidate inverse scale -(nmax + 0.1 i)/max,
// i = -9..9; the candidate with the largest sum_lx^2 / sum_l2 (= smallest
// error) wins. Returns the scale; L receives level + nmax.
float fit_symmetric_scale(int n, int nmax, const float* x, uint8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-30f) {
    std::fill(L, L + n, uint8_t(nmax));
    return 0.0f;
  }
  const auto levels_for = [&](float iscale, float& sum_lx, float& sum_l2, uint8_t* out) {
    sum_lx = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * float(l);
      sum_l2 += w * float(l) * float(l);
      if (out) out[i] = uint8_t(l + nmax);
    }
  };
  float sum_lx, sum_l2;
  levels_for(-float(nmax) / max, sum_lx, sum_l2, L);
  float scale = sum_l2 > 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    const float iscale = -(float(nmax) + 0.1f * float(step)) / max;
    levels_for(iscale, sum_lx, sum_l2, nullptr);
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      levels_for(iscale, sum_lx, sum_l2, L);
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

// Q6_K: per 16-element sub-block a scale from fit_symmetric_scale; the
// scales are quantised to int8 against the one of largest magnitude, then
// the values are re-rounded against the quantised scales (ggml's scheme).
void quantize_q6_k(const float* x, BlockQ6_K* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK_K) {
    BlockQ6_K& blk = blocks[b];
    float scales[16], max_scale = 0.0f, max_abs_scale = 0.0f;
    uint8_t L[kQK_K];
    for (int s = 0; s < 16; ++s) {
      scales[s] = fit_symmetric_scale(16, 32, x + 16 * s, L + 16 * s);
      if (std::fabs(scales[s]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    std::memset(&blk, 0, sizeof blk);
    if (max_abs_scale < 1e-30f) continue;  // all zero: d = 0
    const float iscale = -128.0f / max_scale;
    blk.d = f32_to_f16(1.0f / iscale);
    for (int s = 0; s < 16; ++s) blk.scales[s] = int8_t(std::min(127, nearest_int(iscale * scales[s])));

    std::fill(L, L + kQK_K, uint8_t(32));
    for (int s = 0; s < 16; ++s) {
      const float d = f16_to_f32(blk.d) * blk.scales[s];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l) {
        L[16 * s + l] = uint8_t(std::clamp(nearest_int(x[16 * s + l] / d), -32, 31) + 32);
      }
    }
    for (int half = 0; half < 2; ++half) {
      const uint8_t* Lh = L + 128 * half;
      for (int l = 0; l < 32; ++l) {
        blk.ql[64 * half + l] = uint8_t((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        blk.ql[64 * half + l + 32] = uint8_t((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        blk.qh[32 * half + l] = uint8_t((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                        ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  require(is_supported_weight_type(type), "quantize_row: unsupported weight type ",
          gguf::ggml_type_traits(type).name);
  (void)row_bytes(type, n);  // validates n against the block size
  const int64_t n_blocks = n / gguf::ggml_type_traits(type).block_size;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      break;
    case GgmlType::F16:
      f32_to_f16_row(src, static_cast<uint16_t*>(dst), size_t(n));
      break;
    case GgmlType::BF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(src[i]);
      break;
    }
    case GgmlType::Q8_0:
      quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n_blocks);
      break;
    case GgmlType::Q4_0:
      quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), n_blocks);
      break;
    case GgmlType::Q4_1:
      quantize_affine<BlockQ4_1, 15>(src, static_cast<BlockQ4_1*>(dst), n_blocks);
      break;
    case GgmlType::Q5_0:
      quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), n_blocks);
      break;
    case GgmlType::Q5_1:
      quantize_affine<BlockQ5_1, 31>(src, static_cast<BlockQ5_1*>(dst), n_blocks);
      break;
    case GgmlType::Q4_K:
      quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), n_blocks);
      break;
    case GgmlType::Q5_K:
      quantize_q5_k(src, static_cast<BlockQ5_K*>(dst), n_blocks);
      break;
    case GgmlType::Q6_K:
      quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), n_blocks);
      break;
    default:
      break;
  }
}

}  // namespace bifurcate::tensor
