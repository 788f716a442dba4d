// Shared by the numeric tests: the error metric they check kernels and models
// with, and fresh random seeds.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

namespace bifurcate {

// Over one call's whole output (n values): max |x - ref| / max |ref|. NaN when
// x holds a NaN or an infinity, or when ref is all zeros, so a broken result
// never passes a `<=` or `<` check.
template <class Ref>
double relative_error(const float* x, const Ref* ref, std::size_t n) {
  double worst = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return std::numeric_limits<double>::quiet_NaN();
    worst = std::max(worst, std::abs(double(x[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return scale > 0.0 ? worst / scale : std::numeric_limits<double>::quiet_NaN();
}

// x[0, ref.size()) against ref.
template <class Ref>
double relative_error(const float* x, const std::vector<Ref>& ref) {
  return relative_error(x, ref.data(), ref.size());
}

// NaN when the sizes differ.
template <class Ref>
double relative_error(const std::vector<float>& x, const std::vector<Ref>& ref) {
  if (x.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  return relative_error(x.data(), ref.data(), ref.size());
}

// A different seed every run, printed (ctest --output-on-failure shows it) so
// a failure can be replayed: BIFURCATE_TEST_SEED=<seed> makes every call in
// the run return that seed instead.
inline unsigned fresh_seed() {
  unsigned seed;
  if (const char* fixed = std::getenv("BIFURCATE_TEST_SEED"); fixed != nullptr && *fixed != '\0') {
    seed = unsigned(std::strtoul(fixed, nullptr, 10));
  } else {
    seed = std::random_device{}();
  }
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("[   SEED   ] %s%s%s: %u (replay: BIFURCATE_TEST_SEED=%u)\n",
              test ? test->test_suite_name() : "", test ? "." : "", test ? test->name() : "", seed, seed);
  return seed;
}

}  // namespace bifurcate
