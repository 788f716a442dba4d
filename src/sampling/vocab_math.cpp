#include "sampling/vocab_math.h"

#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <limits>

#include "kernels/attention_simd.h"

namespace bifurcate::sampling {

namespace simd = kernels::simd;

LogitRange scan_logits(std::span<const float> values) {
  const std::size_t n = values.size();
  const std::size_t n8 = n / 8 * 8;
  __m256 max8 = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 nan8 = _mm256_setzero_ps();
  for (std::size_t i = 0; i < n8; i += 8) {
    const __m256 v = _mm256_loadu_ps(values.data() + i);
    max8 = _mm256_max_ps(v, max8);  // a NaN in v yields max8 (the second operand)
    nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  LogitRange range{simd::hmax(max8), _mm256_movemask_ps(nan8) != 0};
  for (std::size_t i = n8; i < n; ++i) {
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
  const std::size_t n8 = n / 8 * 8;
  const __m256 shift8 = _mm256_set1_ps(shift);
  // Float lanes per block of 64 values, then double: keeps 152k terms accurate.
  constexpr std::size_t kBlock = 64;
  double total = 0.0;
  for (std::size_t begin = 0; begin < n8; begin += kBlock) {
    const std::size_t end = std::min(n8, begin + kBlock);
    __m256 sum8 = _mm256_setzero_ps();
    for (std::size_t i = begin; i < end; i += 8) {
      sum8 = _mm256_add_ps(sum8, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(values.data() + i), shift8)));
    }
    total += simd::hsum(sum8);
  }
  for (std::size_t i = n8; i < n; ++i) total += std::exp(values[i] - shift);
  return total;
}

void exp_weights(std::span<const float> values, float shift, float temperature, std::span<float> out) {
  assert(out.size() >= values.size());
  const std::size_t n = values.size();
  const std::size_t n8 = n / 8 * 8;
  const __m256 shift8 = _mm256_set1_ps(shift);
  const __m256 temperature8 = _mm256_set1_ps(temperature);
  // Divide rather than multiply by 1/T: for a denormal T, 1/T is inf and 0 * inf is NaN.
  for (std::size_t i = 0; i < n8; i += 8) {
    const __m256 x = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(values.data() + i), shift8), temperature8);
    _mm256_storeu_ps(out.data() + i, simd::exp(x));
  }
  for (std::size_t i = n8; i < n; ++i) out[i] = std::exp((values[i] - shift) / temperature);
}

}  // namespace bifurcate::sampling
