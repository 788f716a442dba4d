// Decoding of every supported weight type to f32, one row at a time.
#include <immintrin.h>

#include <cstring>

#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::tensor {
namespace {

using gguf::GgmlType;

void dequantize_bf16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

void dequantize_q8_0(const BlockQ8_0* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(blocks[b].d));
    for (int j = 0; j < kQK8_0; j += 8) {
      __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blocks[b].qs + j));
      __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
      _mm256_storeu_ps(dst + b * kQK8_0 + j, _mm256_mul_ps(q, d));
    }
  }
}

void dequantize_q4_0(const BlockQ4_0* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    float* y = dst + b * kQK4_0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = float((blocks[b].qs[j] & 0xF) - 8) * d;
      y[j + kQK4_0 / 2] = float((blocks[b].qs[j] >> 4) - 8) * d;
    }
  }
}

// Q4_0-style nibbles: element j < 16 is the low nibble of qs[j], j >= 16 the
// high nibble of qs[j - 16]; Q5 types add bit j of qh as bit 4.
int nibble_q4(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }
int bit5(const uint8_t* qh, int j) { return ((qh[j / 8] >> (j % 8)) & 1) << 4; }

void dequantize_q4_1(const BlockQ4_1* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float d = f16_to_f32(blocks[b].d), m = f16_to_f32(blocks[b].m);
    for (int j = 0; j < kQK4_0; ++j) dst[b * kQK4_0 + j] = float(nibble_q4(blocks[b].qs, j)) * d + m;
  }
}

void dequantize_q5_0(const BlockQ5_0* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    for (int j = 0; j < kQK4_0; ++j)
      dst[b * kQK4_0 + j] = float((nibble_q4(blocks[b].qs, j) | bit5(blocks[b].qh, j)) - 16) * d;
  }
}

void dequantize_q5_1(const BlockQ5_1* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float d = f16_to_f32(blocks[b].d), m = f16_to_f32(blocks[b].m);
    for (int j = 0; j < kQK4_0; ++j)
      dst[b * kQK4_0 + j] = float(nibble_q4(blocks[b].qs, j) | bit5(blocks[b].qh, j)) * d + m;
  }
}

void dequantize_q5_k(const BlockQ5_K* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ5_K& blk = blocks[b];
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    for (int s = 0; s < 8; ++s) {  // sub-block s: nibbles of qs[32*(s/2) ..], low for even s
      uint8_t sc, m;
      scale_min_q4_k(s, blk.scales, sc, m);
      const float ds = d * sc, ms = dmin * m;
      const uint8_t* q = blk.qs + 32 * (s / 2);
      for (int l = 0; l < 32; ++l) {
        const int lo = s % 2 ? q[l] >> 4 : q[l] & 0xF;
        const int hi = ((blk.qh[l] >> s) & 1) << 4;
        dst[b * kQK_K + 32 * s + l] = ds * float(lo | hi) - ms;
      }
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ4_K& blk = blocks[b];
    const float d = f16_to_f32(blk.d);
    const float dmin = f16_to_f32(blk.dmin);
    float* y = dst + b * kQK_K;
    for (int chunk = 0; chunk < 4; ++chunk) {  // 64 elements = two sub-blocks
      uint8_t sc_lo, m_lo, sc_hi, m_hi;
      scale_min_q4_k(2 * chunk, blk.scales, sc_lo, m_lo);
      scale_min_q4_k(2 * chunk + 1, blk.scales, sc_hi, m_hi);
      const float d_lo = d * sc_lo, min_lo = dmin * m_lo;
      const float d_hi = d * sc_hi, min_hi = dmin * m_hi;
      const uint8_t* q = blk.qs + 32 * chunk;
      for (int l = 0; l < 32; ++l) {
        y[64 * chunk + l] = d_lo * float(q[l] & 0xF) - min_lo;
        y[64 * chunk + 32 + l] = d_hi * float(q[l] >> 4) - min_hi;
      }
    }
  }
}

void dequantize_q6_k(const BlockQ6_K* blocks, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ6_K& blk = blocks[b];
    const float d = f16_to_f32(blk.d);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = blk.ql + 64 * half;
      const uint8_t* qh = blk.qh + 32 * half;
      const int8_t* sc = blk.scales + 8 * half;
      float* y = dst + b * kQK_K + 128 * half;
      for (int l = 0; l < 32; ++l) {
        const int s = l / 16;
        const int q0 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[s] * q0);
        y[l + 32] = d * float(sc[s + 2] * q1);
        y[l + 64] = d * float(sc[s + 4] * q2);
        y[l + 96] = d * float(sc[s + 6] * q3);
      }
    }
  }
}

}  // namespace

bool is_supported_weight_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

int64_t row_bytes(GgmlType type, int64_t n) {
  const auto& traits = gguf::ggml_type_traits(type);
  require(n >= 0 && n % traits.block_size == 0, "row of ", n, " elements is not a multiple of ",
          traits.name, "'s block size ", traits.block_size);
  return n / traits.block_size * traits.type_size;
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  require(is_supported_weight_type(type), "dequantize_row: unsupported weight type ",
          gguf::ggml_type_traits(type).name);
  const int64_t n_blocks = n / gguf::ggml_type_traits(type).block_size;
  (void)row_bytes(type, n);  // validates n against the block size
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      break;
    case GgmlType::F16:
      f16_to_f32_row(static_cast<const uint16_t*>(src), dst, size_t(n));
      break;
    case GgmlType::BF16:
      dequantize_bf16(static_cast<const uint16_t*>(src), dst, n);
      break;
    case GgmlType::Q8_0:
      dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, n_blocks);
      break;
    case GgmlType::Q4_0:
      dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, n_blocks);
      break;
    case GgmlType::Q4_1:
      dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, n_blocks);
      break;
    case GgmlType::Q5_0:
      dequantize_q5_0(static_cast<const BlockQ5_0*>(src), dst, n_blocks);
      break;
    case GgmlType::Q5_1:
      dequantize_q5_1(static_cast<const BlockQ5_1*>(src), dst, n_blocks);
      break;
    case GgmlType::Q4_K:
      dequantize_q4_k(static_cast<const BlockQ4_K*>(src), dst, n_blocks);
      break;
    case GgmlType::Q5_K:
      dequantize_q5_k(static_cast<const BlockQ5_K*>(src), dst, n_blocks);
      break;
    case GgmlType::Q6_K:
      dequantize_q6_k(static_cast<const BlockQ6_K*>(src), dst, n_blocks);
      break;
    default:
      break;
  }
}

}  // namespace bifurcate::tensor
