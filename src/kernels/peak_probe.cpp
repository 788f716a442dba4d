// Register-only ceiling loops (peak_probe.h). Each loop keeps kChains
// independent accumulators so the instruction's latency is hidden and only
// its throughput counts; the results are summed and returned so nothing is
// optimised away.
#include <vector>

#include "kernels/isa_entry_points.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE {
namespace {

constexpr int kChains = 12;             // > latency x throughput (4 x 2) of FMA and VNNI
constexpr int64_t kIterations = 1 << 17;  // x 12 instructions: ~0.5-1 ms per thread

// Makes v opaque to the compiler each iteration, so a loop-invariant product
// of constants is not hoisted out of the loop. Used on an operand, never on
// the accumulators: on those it forced all 12 through memory every iteration
// (a store-forwarding chain; the FMA loop read 122 GFLOP/s instead of ~450).
template <class V>
inline void keep(V& v) {
  asm volatile("" : "+v"(v));
}

float fma_loop_avx2() {
  __m256 acc[kChains];
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(float(c));
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  float sum = 0;
  for (int c = 0; c < kChains; ++c) sum += _mm256_cvtss_f32(acc[c]);
  return sum;
}

int int8_loop_avx2() {
  __m256i acc[kChains];
  __m256i a = _mm256_set1_epi8(3);
  const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_epi32(c);
  for (int64_t i = 0; i < kIterations; ++i) {
    keep(a);
    for (int c = 0; c < kChains; ++c)
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  }
  int sum = 0;
  for (int c = 0; c < kChains; ++c) sum += _mm256_cvtsi256_si32(acc[c]);
  return sum;
}

#ifdef __AVX512F__
float fma_loop_avx512() {
  __m512 acc[kChains];
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  float sum = 0;
  for (int c = 0; c < kChains; ++c) sum += _mm512_cvtss_f32(acc[c]);
  return sum;
}

#ifdef __AVX512VNNI__
int int8_loop_avx512() {
  __m512i acc[kChains];
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  }
  int sum = 0;
  alignas(64) int lanes[16];
  for (int c = 0; c < kChains; ++c) {
    _mm512_store_si512(lanes, acc[c]);
    sum += lanes[0];
  }
  return sum;
}
#endif
#endif

// Runs `loop` on every thread at once, `reps` times; the best rate of
// `ops_per_thread` operations per thread.
template <class Loop>
double best_rate(ThreadPool& pool, int reps, double ops_per_thread, Loop loop) {
  std::vector<double> sink(std::size_t(pool.size()), 0.0);
  double best = 0;
  for (int r = 0; r < std::max(1, reps); ++r) {
    const double t0 = now_seconds();
    pool.parallel_for(std::size_t(pool.size()), 1, [&](std::size_t begin, std::size_t end, int thread) {
      for (std::size_t i = begin; i < end; ++i) sink[std::size_t(thread)] += double(loop());
    });
    best = std::max(best, ops_per_thread * pool.size() / (now_seconds() - t0));
  }
  volatile double keep_sum = 0;
  for (double s : sink) keep_sum = keep_sum + s;
  return best;
}

}  // namespace

double fma_ceiling_flops(ThreadPool& pool, int reps) {
#ifdef __AVX512F__
  return best_rate(pool, reps, 2.0 * 16 * kChains * double(kIterations), fma_loop_avx512);
#endif
  return best_rate(pool, reps, 2.0 * 8 * kChains * double(kIterations), fma_loop_avx2);
}

double int8_dot_ceiling_ops(ThreadPool& pool, int reps) {
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
  return best_rate(pool, reps, 2.0 * 64 * kChains * double(kIterations), int8_loop_avx512);
#endif
  return best_rate(pool, reps, 2.0 * 32 * kChains * double(kIterations), int8_loop_avx2);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE
