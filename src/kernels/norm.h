// Root-mean-square layer norm (Llama): out = x / sqrt(mean(x^2) + eps) * weight.
#pragma once

#include <cstdint>

namespace bifurcate::kernels {

// One row of n values; out may alias x.
void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out);

}  // namespace bifurcate::kernels
