// The passes are written once over an instruction-set struct of the kernels
// (kernels/matmul_simd.h) and run with its AVX2 form, the floor every CPU
// that runs bifurcate has: they are a small share of a decode step.
#include "sampling/vocab_math.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <limits>

#include "kernels/matmul_simd.h"

namespace bifurcate::sampling {
namespace {

using S = kernels::simd::Avx2;
constexpr std::size_t kLanes = S::kLanes;

}  // namespace

LogitRange scan_logits(std::span<const float> values) {
  const std::size_t n = values.size();
  const std::size_t n_vec = n / kLanes * kLanes;
  S::V max_v = S::set1(-std::numeric_limits<float>::infinity());
  S::V nan_v = S::zero();
  for (std::size_t i = 0; i < n_vec; i += kLanes) {
    const S::V v = S::load(values.data() + i);
    max_v = S::max(v, max_v);  // a NaN in v yields max_v (the second operand)
    nan_v = S::mark_nan(nan_v, v);
  }
  LogitRange range{S::hmax(max_v), S::any_set(nan_v)};
  for (std::size_t i = n_vec; i < n; ++i) {
    if (std::isnan(values[i])) {
      range.has_nan = true;
    } else {
      range.max = std::max(range.max, values[i]);
    }
  }
  return range;
}

double sum_exp(std::span<const float> values, float shift) {
  const std::size_t n = values.size();
  const std::size_t n_vec = n / kLanes * kLanes;
  const S::V shift_v = S::set1(shift);
  // Float lanes per block of 64 values, then double: keeps 152k terms accurate.
  constexpr std::size_t kBlock = 64;
  double total = 0.0;
  for (std::size_t begin = 0; begin < n_vec; begin += kBlock) {
    const std::size_t end = std::min(n_vec, begin + kBlock);
    S::V sum_v = S::zero();
    for (std::size_t i = begin; i < end; i += kLanes) {
      sum_v = S::add(sum_v, S::exp(S::sub(S::load(values.data() + i), shift_v)));
    }
    total += S::hsum(sum_v);
  }
  for (std::size_t i = n_vec; i < n; ++i) total += std::exp(values[i] - shift);
  return total;
}

void exp_weights(std::span<const float> values, float shift, float temperature, std::span<float> out) {
  assert(out.size() >= values.size());
  const std::size_t n = values.size();
  const std::size_t n_vec = n / kLanes * kLanes;
  const S::V shift_v = S::set1(shift);
  const S::V temperature_v = S::set1(temperature);
  // Divide rather than multiply by 1/T: for a denormal T, 1/T is inf and 0 * inf is NaN.
  for (std::size_t i = 0; i < n_vec; i += kLanes) {
    S::store(out.data() + i, S::exp(S::div(S::sub(S::load(values.data() + i), shift_v), temperature_v)));
  }
  for (std::size_t i = n_vec; i < n; ++i) out[i] = std::exp((values[i] - shift) / temperature);
}

}  // namespace bifurcate::sampling
