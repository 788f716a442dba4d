// matmul throughput for the weight shapes of a 7B Llama (4096x4096 attention,
// 11008x4096 and 4096x11008 MLP, 32000x4096 logits) in F16 and Q8_0, batch
// 1..32 (decode), 64-128 (the scheduler's decode steps of many requests) and 256
// (a prefill chunk), 2 threads (the target machine) and 1;
// plus Q4_K 4096x4096 for the packed path, and 4096x4096 with the AVX2 kernels.
//
// Counters: GFLOP/s and weight_GB/s use wall time. cpu_GFLOP/s and cpu_GB/s
// use the whole process's CPU time scaled by the thread count, i.e. the rate
// if every thread had a core to itself; on a loaded machine they are the
// numbers to compare (they do not charge idle waiting, so a straggler thread
// shows only in the wall-time counters).
// Run: bench_matmul [--benchmark_filter=f16_4096x4096/batch:1/] [--benchmark_min_time=0.2]
#include <benchmark/benchmark.h>

#include <ctime>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/matmul.h"
#include "tensor/dtype.h"

namespace {

using bifurcate::ThreadPool;
using bifurcate::gguf::GgmlType;
using bifurcate::kernels::matmul;
using bifurcate::kernels::Isa;
using bifurcate::kernels::WeightMatrix;

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Encoded random weights, built once per shape and type: quantizing 131M
// weights per benchmark instance would dominate the run.
const std::vector<uint8_t>& weights_for(GgmlType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<GgmlType, int64_t, int64_t>, std::vector<uint8_t>> cache;
  auto [it, inserted] = cache.try_emplace({type, rows, cols});
  if (!inserted) return it->second;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  const int64_t row_bytes = bifurcate::tensor::row_bytes(type, cols);
  it->second.resize(size_t(rows * row_bytes));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = dist(rng);
    bifurcate::tensor::quantize_row(type, row.data(), &it->second[size_t(r * row_bytes)], cols);
  }
  return it->second;
}

void bench_matmul(benchmark::State& state, GgmlType type, int64_t rows, int64_t cols,
                  Isa isa = bifurcate::kernels::active_isa()) {
  const int64_t batch = state.range(0);
  const int threads = int(state.range(1));
  const std::vector<uint8_t>& weights = weights_for(type, rows, cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  std::vector<float> x(size_t(batch * cols)), y(size_t(batch * rows));
  for (auto& v : x) v = dist(rng);
  ThreadPool pool(threads);
  bifurcate::kernels::MatmulScratch scratch;
  const WeightMatrix w{weights.data(), type, rows, cols};
  matmul(w, x.data(), batch, y.data(), pool, scratch, isa);  // warm-up: scratch buffers, page faults
  const double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    matmul(w, x.data(), batch, y.data(), pool, scratch, isa);
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu_per_thread = (process_cpu_seconds() - cpu_start) / threads;
  const double iters = double(state.iterations());
  const double flops = 2.0 * double(rows * cols * batch) * iters;
  const double bytes = double(weights.size()) * iters;
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["cpu_GFLOP/s"] = flops / 1e9 / cpu_per_thread;
  state.counters["cpu_GB/s"] = bytes / 1e9 / cpu_per_thread;
}

void batches(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "threads"});
  for (int threads : {2, 1})
    for (int batch : {1, 2, 4, 8, 16, 32, 64, 82, 96, 128, 256}) b->Args({batch, threads});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK_CAPTURE(bench_matmul, f16_4096x4096, GgmlType::F16, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, f16_11008x4096, GgmlType::F16, 11008, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, f16_4096x11008, GgmlType::F16, 4096, 11008)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, f16_32000x4096, GgmlType::F16, 32000, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_4096x4096, GgmlType::Q8_0, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_11008x4096, GgmlType::Q8_0, 11008, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_4096x11008, GgmlType::Q8_0, 4096, 11008)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q8_0_32000x4096, GgmlType::Q8_0, 32000, 4096)->Apply(batches);
// The integer-dot path (matmul_quant.h): Q4_K_M's two types at the 7B shapes, Q4_0, Q5_K.
BENCHMARK_CAPTURE(bench_matmul, q4_k_4096x4096, GgmlType::Q4_K, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q4_k_11008x4096, GgmlType::Q4_K, 11008, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q6_k_4096x11008, GgmlType::Q6_K, 4096, 11008)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q6_k_4096x4096, GgmlType::Q6_K, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q4_0_4096x4096, GgmlType::Q4_0, 4096, 4096)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, q5_k_4096x4096, GgmlType::Q5_K, 4096, 4096)->Apply(batches);
// L2-resident (0.6-0.9 MB): the kernels' compute rate without DRAM.
BENCHMARK_CAPTURE(bench_matmul, l2_q4_k_1024x1024, GgmlType::Q4_K, 1024, 1024)->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, l2_q6_k_1024x1024, GgmlType::Q6_K, 1024, 1024)->Apply(batches);
// The AVX2 kernels where the build also has AVX-512 (machines without it run these).
BENCHMARK_CAPTURE(bench_matmul, avx2_f16_4096x4096, GgmlType::F16, 4096, 4096, Isa::avx2)
    ->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, avx2_q8_0_4096x4096, GgmlType::Q8_0, 4096, 4096, Isa::avx2)
    ->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, avx2_q4_k_4096x4096, GgmlType::Q4_K, 4096, 4096, Isa::avx2)
    ->Apply(batches);
BENCHMARK_CAPTURE(bench_matmul, avx2_q4_0_4096x4096, GgmlType::Q4_0, 4096, 4096, Isa::avx2)
    ->Apply(batches);

}  // namespace

BENCHMARK_MAIN();
