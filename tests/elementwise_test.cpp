// rmsnorm, rope, swiglu, softmax, add against float64 references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/activation.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "util/error.h"

namespace bifurcate::kernels {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

void expect_close(double got, double want, double rel, const char* what, size_t i) {
  EXPECT_LE(std::fabs(got - want), rel * std::max(1.0, std::fabs(want))) << what << " i=" << i;
}

TEST(Elementwise, RmsnormMatchesReference) {
  for (size_t n : {1u, 7u, 64u, 4097u}) {
    auto x = random_vec(n, 1, 3.0f), w = random_vec(n, 2);
    std::vector<float> out(n);
    rmsnorm(x.data(), w.data(), int64_t(n), 1e-5f, out.data());
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / double(n) + 1e-5);
    for (size_t i = 0; i < n; ++i) expect_close(out[i], double(x[i]) * inv * w[i], 1e-6, "rmsnorm", i);
    rmsnorm(x.data(), w.data(), int64_t(n), 1e-5f, x.data());  // in place
    EXPECT_EQ(x, out);
  }
}

// Reference rope in double: pair i turns by pos * base^(-2i/d).
std::vector<double> reference_rope(const std::vector<float>& x, int heads, int d, int pos, double base,
                                   RopeStyle style) {
  std::vector<double> out(x.begin(), x.end());
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < d / 2; ++i) {
      const double angle = pos / std::pow(base, 2.0 * i / d);
      const int a = h * d + (style == RopeStyle::interleaved ? 2 * i : i);
      const int b = h * d + (style == RopeStyle::interleaved ? 2 * i + 1 : i + d / 2);
      out[size_t(a)] = x[size_t(a)] * std::cos(angle) - x[size_t(b)] * std::sin(angle);
      out[size_t(b)] = x[size_t(a)] * std::sin(angle) + x[size_t(b)] * std::cos(angle);
    }
  }
  return out;
}

TEST(Elementwise, RopeMatchesReferenceBothStyles) {
  for (RopeStyle style : {RopeStyle::interleaved, RopeStyle::neox}) {
    for (int d : {2, 8, 64, 128}) {
      for (int pos : {0, 1, 17, 4095, 32767}) {
        const int heads = 3;
        auto x = random_vec(size_t(heads * d), uint32_t(d + pos));
        auto want = reference_rope(x, heads, d, pos, 10000.0, style);
        rope(x.data(), heads, d, pos, 10000.0f, style);
        for (size_t i = 0; i < x.size(); ++i) expect_close(x[i], want[i], 2e-6, "rope", i);
      }
    }
  }
}

TEST(Elementwise, RopeStylesDifferAndPositionZeroIsIdentity) {
  auto x = random_vec(16, 9);
  auto a = x, b = x, c = x;
  rope(a.data(), 2, 8, 5, 10000.0f, RopeStyle::interleaved);
  rope(b.data(), 2, 8, 5, 10000.0f, RopeStyle::neox);
  rope(c.data(), 2, 8, 0, 10000.0f, RopeStyle::neox);
  EXPECT_NE(a, b);
  EXPECT_EQ(c, x);
  EXPECT_THROW(rope(x.data(), 1, 7, 1, 10000.0f, RopeStyle::neox), Error);
}

TEST(Elementwise, SwigluMatchesReference) {
  const size_t n = 1001;
  auto g = random_vec(n, 3, 4.0f), u = random_vec(n, 4);
  g[0] = -90.0f;  // exp overflow side
  g[1] = 90.0f;
  std::vector<float> out(n);
  swiglu(g.data(), u.data(), int64_t(n), out.data());
  for (size_t i = 0; i < n; ++i) {
    const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
    expect_close(out[i], want, 1e-6, "swiglu", i);
  }
}

TEST(Elementwise, SoftmaxMatchesReferenceAndIsStable) {
  // Real distributions (logits of spread 2: many tokens with visible mass,
  // none near 1), also shifted by +-1000 (exp would overflow or underflow
  // without subtracting the max; the distribution is the same).
  for (size_t n : {1u, 5u, 300u, 1001u}) {
    const auto base = random_vec(n, 5, 2.0f);
    for (float shift : {0.0f, 1000.0f, -1000.0f}) {
      std::vector<float> x(n);
      for (size_t i = 0; i < n; ++i) x[i] = base[i] + shift;
      std::vector<double> want(n);
      double mx = -1e300, sum = 0;
      for (float v : x) mx = std::max(mx, double(v));
      for (size_t i = 0; i < n; ++i) sum += want[i] = std::exp(double(x[i]) - mx);
      softmax(x.data(), int64_t(n));
      double total = 0, largest = 0;
      for (size_t i = 0; i < n; ++i) {
        want[i] /= sum;
        // Relative to each probability, small ones too (float exp and the
        // rounded 1/sum: a few ulp; x - max is exact even at +-1000).
        EXPECT_NEAR(x[i], want[i], 1e-6 * want[i] + 1e-30) << "n=" << n << " shift=" << shift << " i=" << i;
        total += x[i];
        largest = std::max(largest, want[i]);
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
      if (n >= 300) {
        EXPECT_LT(largest, 0.2) << "not a spread-out distribution";
      }
    }
  }
}

TEST(Elementwise, AddMatchesReference) {
  auto x = random_vec(37, 6), y = random_vec(37, 7);
  auto want = x;
  for (size_t i = 0; i < want.size(); ++i) want[i] = float(double(x[i]) + double(y[i]));
  add(x.data(), y.data(), 37);
  EXPECT_EQ(x, want);
}

}  // namespace
}  // namespace bifurcate::kernels
