#include "kernels/norm.h"

#include <cmath>

namespace bifurcate::kernels {

void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  // Double accumulation: n reaches 8192 and the result feeds every layer.
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += double(x[i]) * double(x[i]);
  const float inv_rms = float(1.0 / std::sqrt(sum_sq / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

}  // namespace bifurcate::kernels
