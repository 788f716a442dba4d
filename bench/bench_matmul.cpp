// matmul throughput: GFLOP/s and weight GB/s for the shapes of a 7B Llama
// (4096x4096 attention, 11008x4096 MLP) in F16 and Q8_0, batch 1..32.
// Run: bench_matmul [--benchmark_filter=...]; threads 2 (the target machine) and 1.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/matmul.h"
#include "tensor/dtype.h"

namespace {

using bifurcate::ThreadPool;
using bifurcate::gguf::GgmlType;
using bifurcate::kernels::matmul;
using bifurcate::kernels::WeightMatrix;

void bench_matmul(benchmark::State& state, GgmlType type, int64_t rows, int64_t cols) {
  const int64_t batch = state.range(0);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  const int64_t row_bytes = bifurcate::tensor::row_bytes(type, cols);
  std::vector<uint8_t> weights(size_t(rows * row_bytes));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = dist(rng);
    bifurcate::tensor::quantize_row(type, row.data(), &weights[size_t(r * row_bytes)], cols);
  }
  std::vector<float> x(size_t(batch * cols)), y(size_t(batch * rows));
  for (auto& v : x) v = dist(rng);
  ThreadPool pool(int(state.range(1)));
  const WeightMatrix w{weights.data(), type, rows, cols};
  for (auto _ : state) {
    matmul(w, x.data(), batch, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = double(state.iterations());
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * cols * batch) * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(double(weights.size()) * iters / 1e9, benchmark::Counter::kIsRate);
}

void batches(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "threads"});
  for (int threads : {2, 1})
    for (int batch : {1, 4, 8, 16, 32}) b->Args({batch, threads});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK_CAPTURE(bench_matmul, f16_4096x4096, GgmlType::F16, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, f16_11008x4096, GgmlType::F16, 11008, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_4096x4096, GgmlType::Q8_0, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_11008x4096, GgmlType::Q8_0, 11008, 4096)->Apply(batches);

}  // namespace

BENCHMARK_MAIN();
