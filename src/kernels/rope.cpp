#include "kernels/rope.h"

#include <cmath>

#include "util/error.h"

namespace bifurcate::kernels {
namespace {

constexpr int kMaxHeadSize = 1024;

}  // namespace

void rope(float* x, int n_heads, int head_size, int position, float theta_base, RopeStyle style) {
  require(head_size > 0 && head_size % 2 == 0 && head_size <= kMaxHeadSize,
          "rope: head size must be even and at most ", kMaxHeadSize, ", got ", head_size);
  const int half = head_size / 2;
  // One cos/sin per pair, shared by all heads.
  float cos_t[kMaxHeadSize / 2], sin_t[kMaxHeadSize / 2];
  for (int i = 0; i < half; ++i) {
    const double angle = double(position) * std::pow(double(theta_base), -2.0 * i / double(head_size));
    cos_t[i] = float(std::cos(angle));
    sin_t[i] = float(std::sin(angle));
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_size;
    for (int i = 0; i < half; ++i) {
      const int a = style == RopeStyle::interleaved ? 2 * i : i;
      const int b = style == RopeStyle::interleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos_t[i] - x1 * sin_t[i];
      v[b] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

}  // namespace bifurcate::kernels
