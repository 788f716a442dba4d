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

// Per 32-element sub-block: scale = (max - min)/15 and min = -min(x, 0); both
// are then quantised to 6 bits against the super-block's largest.
void quantize_q4_k(const float* x, BlockQ4_K* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK_K) {
    BlockQ4_K& blk = blocks[b];
    float scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      const float lo = std::min(0.0f, *std::min_element(xs, xs + 32));
      const float hi = *std::max_element(xs, xs + 32);
      scales[j] = (hi - lo) / 15.0f;
      mins[j] = -lo;
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

    uint8_t L[kQK_K] = {};
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_q4_k(j, blk.scales, sc, m);
      const float d = f16_to_f32(blk.d) * sc;
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(blk.dmin) * m;
      for (int l = 0; l < 32; ++l) {
        L[32 * j + l] = uint8_t(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, 15));
      }
    }
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l) {
        blk.qs[32 * chunk + l] = uint8_t(L[64 * chunk + l] | (L[64 * chunk + 32 + l] << 4));
      }
    }
  }
}

// Per 16-element sub-block: scale = max/-32 (signed max), then the scales
// are quantised to int8 against the super-block's largest (ggml's scheme
// without its rmse search).
void quantize_q6_k(const float* x, BlockQ6_K* blocks, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, x += kQK_K) {
    BlockQ6_K& blk = blocks[b];
    float scales[16], max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int s = 0; s < 16; ++s) {
      float amax = 0.0f, max = 0.0f;
      for (int l = 0; l < 16; ++l) {
        if (std::fabs(x[16 * s + l]) > amax) {
          amax = std::fabs(x[16 * s + l]);
          max = x[16 * s + l];
        }
      }
      scales[s] = max / -32.0f;
      if (amax / 32.0f > max_abs_scale) {
        max_abs_scale = amax / 32.0f;
        max_scale = scales[s];
      }
    }
    std::memset(&blk, 0, sizeof blk);
    if (max_abs_scale == 0.0f) continue;  // all zero: d = 0
    const float iscale = -128.0f / max_scale;
    blk.d = f32_to_f16(1.0f / iscale);
    for (int s = 0; s < 16; ++s) blk.scales[s] = int8_t(std::min(127, nearest_int(iscale * scales[s])));

    uint8_t L[kQK_K];
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
    case GgmlType::Q4_K:
      quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), n_blocks);
      break;
    case GgmlType::Q6_K:
      quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), n_blocks);
      break;
    default:
      break;
  }
}

}  // namespace bifurcate::tensor
