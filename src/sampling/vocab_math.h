// Whole-vocabulary passes of the sampler (up to ~152k logits per token per
// sample), vectorised with the kernels' instruction-set struct (kernels/matmul_simd.h).
#pragma once

#include <span>

namespace bifurcate::sampling {

struct LogitRange {
  float max;       // largest non-NaN value (-inf if none)
  bool has_nan;
};
LogitRange scan_logits(std::span<const float> values);

// sum_i exp(values[i] - shift), accumulated in double across 8-lane float blocks.
double sum_exp(std::span<const float> values, float shift);

// out[i] = exp((values[i] - shift) / temperature); values <= shift, temperature > 0.
void exp_weights(std::span<const float> values, float shift, float temperature, std::span<float> out);

}  // namespace bifurcate::sampling
