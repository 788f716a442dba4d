// Weight dtypes: hand-built blocks decode to hand-computed values; random
// rows survive quantise -> dequantise within each type's error bound; the
// Q8_0 / Q4_0 encoders match reference quantisers written here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/f16.h"

namespace bifurcate::tensor {
namespace {

using gguf::GgmlType;

std::vector<float> random_row(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint8_t> encode(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> bytes(size_t(row_bytes(type, int64_t(x.size()))));
  quantize_row(type, x.data(), bytes.data(), int64_t(x.size()));
  return bytes;
}

std::vector<float> decode(GgmlType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(type, bytes.data(), y.data(), n);
  return y;
}

// Value of element e of a Q4_K super-block, straight from the bit layout.
double q4_k_element(const BlockQ4_K& b, int e) {
  const int chunk = e / 64, within = e % 64, l = within % 32;
  const int sub = 2 * chunk + (within >= 32 ? 1 : 0);
  const uint8_t byte = b.qs[32 * chunk + l];
  const int q = within < 32 ? (byte & 15) : (byte >> 4);
  int sc, m;
  if (sub < 4) {
    sc = b.scales[sub] % 64;
    m = b.scales[sub + 4] % 64;
  } else {
    sc = (b.scales[sub + 4] % 16) + 16 * (b.scales[sub - 4] / 64);
    m = (b.scales[sub + 4] / 16) + 16 * (b.scales[sub] / 64);
  }
  return double(f16_to_f32(b.d)) * sc * q - double(f16_to_f32(b.dmin)) * m;
}

// Value of element e of a Q6_K super-block, straight from the bit layout.
double q6_k_element(const BlockQ6_K& b, int e) {
  const int half = e / 128, i = (e % 128) / 32, l = e % 32;
  const uint8_t lbyte = b.ql[64 * half + l + 32 * (i % 2)];
  const int low = i < 2 ? lbyte % 16 : lbyte / 16;
  const int high = (b.qh[32 * half + l] >> (2 * i)) % 4;
  const int scale = b.scales[8 * half + l / 16 + 2 * i];
  return double(f16_to_f32(b.d)) * scale * (low + 16 * high - 32);
}

TEST(TensorDtype, BlockSizesMatchTraitsTable) {
  EXPECT_EQ(gguf::ggml_type_traits(GgmlType::Q8_0).type_size, sizeof(BlockQ8_0));
  EXPECT_EQ(gguf::ggml_type_traits(GgmlType::Q4_0).type_size, sizeof(BlockQ4_0));
  EXPECT_EQ(gguf::ggml_type_traits(GgmlType::Q4_K).type_size, sizeof(BlockQ4_K));
  EXPECT_EQ(gguf::ggml_type_traits(GgmlType::Q6_K).type_size, sizeof(BlockQ6_K));
}

TEST(TensorDtype, HandBuiltQ8_0) {
  BlockQ8_0 b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 32; ++j) b.qs[j] = int8_t(j * 8 - 128);
  float y[32];
  dequantize_row(GgmlType::Q8_0, &b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j * 8 - 128) * 0.5f) << "j=" << j;
}

TEST(TensorDtype, HandBuiltQ4_0) {
  BlockQ4_0 b;
  b.d = 0x3400;  // 0.25
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(GgmlType::Q4_0, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.25f) << "j=" << j;
    EXPECT_EQ(y[j + 16], (7 - j) * 0.25f) << "j=" << j;
  }
}

TEST(TensorDtype, HandBuiltQ4_K) {
  BlockQ4_K b;
  b.d = 0x3C00;     // 1.0
  b.dmin = 0x3800;  // 0.5
  // Chosen 6-bit scales 10, 17, ..., 59 and mins 3, 8, ..., 38, packed by hand.
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) sc[j] = 10 + 7 * j, mn[j] = 3 + 5 * j;
  for (int j = 0; j < 4; ++j) {
    b.scales[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    b.scales[j + 4] = uint8_t(mn[j] | ((mn[j + 4] >> 4) << 6));
    b.scales[j + 8] = uint8_t((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  for (int i = 0; i < 128; ++i) b.qs[i] = uint8_t(i * 7);
  std::vector<float> y(256);
  dequantize_row(GgmlType::Q4_K, &b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int chunk = e / 64, within = e % 64, sub = 2 * chunk + within / 32;
    const uint8_t byte = uint8_t((32 * chunk + within % 32) * 7);
    const int q = within < 32 ? byte % 16 : byte / 16;
    EXPECT_EQ(y[size_t(e)], 1.0f * float(sc[sub] * q) - 0.5f * float(mn[sub])) << "e=" << e;
  }
}

TEST(TensorDtype, HandBuiltQ6_K) {
  BlockQ6_K b;
  b.d = 0x3400;  // 0.25
  for (int s = 0; s < 16; ++s) b.scales[s] = int8_t(s % 2 == 0 ? s + 1 : -(s + 1));
  for (int i = 0; i < 128; ++i) b.ql[i] = uint8_t(i * 5 + 3);
  for (int i = 0; i < 64; ++i) b.qh[i] = uint8_t(i * 11 + 1);
  std::vector<float> y(256);
  dequantize_row(GgmlType::Q6_K, &b, y.data(), 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(double(y[size_t(e)]), q6_k_element(b, e)) << "e=" << e;
  // Spot-check one element fully by hand: e = 0 uses ql[0] = 3 (low nibble 3),
  // qh[0] = 1 (bits 0..1 = 1), scale[0] = 1: q = 3 + 16 - 32 = -13.
  EXPECT_EQ(y[0], 0.25f * -13.0f);
}

// Reference Q8_0 encoder (ggml's rule: d = amax/127, round half away from 0).
std::vector<uint8_t> reference_q8_0(const std::vector<float>& x) {
  std::vector<uint8_t> out(x.size() / 32 * 34);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t dh = f32_to_f16(d);
    std::memcpy(&out[b * 34], &dh, 2);
    for (int j = 0; j < 32; ++j) out[b * 34 + 2 + j] = uint8_t(int8_t(std::lround(x[b * 32 + j] * id)));
  }
  return out;
}

TEST(TensorDtype, Q8_0MatchesReferenceAndErrorBound) {
  auto x = random_row(32 * 9, 1);
  x[5] = 0.0f;
  for (int j = 64; j < 96; ++j) x[size_t(j)] = 0.0f;  // an all-zero block
  auto bytes = encode(GgmlType::Q8_0, x);
  EXPECT_EQ(bytes, reference_q8_0(x));
  auto y = decode(GgmlType::Q8_0, bytes, int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const auto* blk = reinterpret_cast<const BlockQ8_0*>(&bytes[i / 32 * 34]);
    const float d = f16_to_f32(blk->d);
    // Half a step, plus the f16 rounding of d times |q| <= 127.
    EXPECT_LE(std::fabs(y[i] - x[i]), 0.5f * d + 127.0f * d * 1e-3f) << "i=" << i;
  }
}

TEST(TensorDtype, Q4_0MatchesReferenceAndErrorBound) {
  auto x = random_row(32 * 7, 2);
  auto bytes = encode(GgmlType::Q4_0, x);
  auto y = decode(GgmlType::Q4_0, bytes, int64_t(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[b * 32 + j]) > amax) amax = std::fabs(x[b * 32 + j]), max = x[b * 32 + j];
    }
    const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    const auto* blk = reinterpret_cast<const BlockQ4_0*>(&bytes[b * 18]);
    EXPECT_EQ(blk->d, f32_to_f16(d));
    for (int j = 0; j < 32; ++j) {
      const int expected_q = std::min(15, int(std::floor(x[b * 32 + j] * id + 8.5f)));
      const int q = j < 16 ? blk->qs[j] & 15 : blk->qs[j - 16] >> 4;
      EXPECT_EQ(q, expected_q) << "block " << b << " j=" << j;
      const float dq = f16_to_f32(blk->d);
      // The clamp at 15 costs up to one step for the extreme opposite value.
      EXPECT_LE(std::fabs(y[b * 32 + j] - x[b * 32 + j]), std::fabs(dq) * 1.01f);
    }
  }
}

TEST(TensorDtype, Q4_KRoundTripAndLayout) {
  auto x = random_row(256 * 3, 3, 0.02f);
  for (int j = 256; j < 288; ++j) x[size_t(j)] = std::fabs(x[size_t(j)]) + 0.01f;  // sub-block with min > 0
  auto bytes = encode(GgmlType::Q4_K, x);
  auto y = decode(GgmlType::Q4_K, bytes, int64_t(x.size()));
  double err2 = 0, x2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const auto* blk = reinterpret_cast<const BlockQ4_K*>(&bytes[i / 256 * 144]);
    EXPECT_EQ(double(y[i]), q4_k_element(*blk, int(i % 256))) << "i=" << i;
    float lo = 0, hi = -1e30f;
    for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    // One quantisation step of the sub-block (range/15), with slack for the
    // 6-bit rounding of its scale and min.
    EXPECT_LE(std::fabs(y[i] - x[i]), (hi - lo) / 15.0f * 1.5f) << "i=" << i;
    err2 += double(y[i] - x[i]) * (y[i] - x[i]);
    x2 += double(x[i]) * x[i];
  }
  EXPECT_LT(std::sqrt(err2 / x2), 0.12);
}

TEST(TensorDtype, Q6_KRoundTripAndLayout) {
  auto x = random_row(256 * 3, 4, 0.05f);
  for (int j = 512; j < 528; ++j) x[size_t(j)] = 0.0f;  // an all-zero sub-block
  auto bytes = encode(GgmlType::Q6_K, x);
  auto y = decode(GgmlType::Q6_K, bytes, int64_t(x.size()));
  double err2 = 0, x2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const auto* blk = reinterpret_cast<const BlockQ6_K*>(&bytes[i / 256 * 210]);
    EXPECT_EQ(double(y[i]), q6_k_element(*blk, int(i % 256))) << "i=" << i;
    float amax = 0;
    for (size_t j = i / 16 * 16; j < i / 16 * 16 + 16; ++j) amax = std::max(amax, std::fabs(x[j]));
    // Half a step (amax/32) plus the int8 rounding of the scale.
    EXPECT_LE(std::fabs(y[i] - x[i]), amax / 32.0f * 0.5f + amax * 0.02f) << "i=" << i;
    err2 += double(y[i] - x[i]) * (y[i] - x[i]);
    x2 += double(x[i]) * x[i];
  }
  EXPECT_LT(std::sqrt(err2 / x2), 0.03);
}

TEST(TensorDtype, FloatTypesRoundTrip) {
  auto x = random_row(37, 5, 3.0f);
  auto f32 = decode(GgmlType::F32, encode(GgmlType::F32, x), 37);
  EXPECT_EQ(f32, x);
  auto f16 = decode(GgmlType::F16, encode(GgmlType::F16, x), 37);
  auto bf16_bytes = encode(GgmlType::BF16, x);
  auto bf16 = decode(GgmlType::BF16, bf16_bytes, 37);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_LE(std::fabs(f16[i] - x[i]), std::fabs(x[i]) * 0x1p-11f) << "i=" << i;
    EXPECT_LE(std::fabs(bf16[i] - x[i]), std::fabs(x[i]) * 0x1p-8f) << "i=" << i;
    uint16_t bits;
    std::memcpy(&bits, &bf16_bytes[2 * i], 2);
    uint32_t widened = uint32_t(bits) << 16;
    float expected;
    std::memcpy(&expected, &widened, 4);
    EXPECT_EQ(bf16[i], expected);
  }
}

TEST(TensorDtype, RejectsBadSizesAndTypes) {
  std::vector<float> x(48, 1.0f);
  std::vector<uint8_t> buf(256);
  EXPECT_THROW(quantize_row(GgmlType::Q8_0, x.data(), buf.data(), 48), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q4_K, buf.data(), x.data(), 32), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q2_K, buf.data(), x.data(), 256), Error);
  EXPECT_FALSE(is_supported_weight_type(GgmlType::Q2_K));
  EXPECT_TRUE(is_supported_weight_type(GgmlType::Q6_K));
  EXPECT_EQ(row_bytes(GgmlType::Q8_0, 64), 68);
}

}  // namespace
}  // namespace bifurcate::tensor
