#include "cli/bench_roofline.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/amx.h"
#include "kernels/matmul.h"
#include "kernels/peak_probe.h"
#include "util/error.h"
#include "util/f16.h"
#include "util/huge_pages.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

// Sums 64-bit words so the compiler keeps (and vectorises) every load; the
// sum is returned so the reads cannot be optimised away.
uint64_t sum_words(const uint64_t* words, std::size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += words[i];
    b += words[i + 1];
    c += words[i + 2];
    d += words[i + 3];
  }
  for (; i < n; ++i) a += words[i];
  return a + b + c + d;
}

double matrix_elements(const kernels::WeightMatrix& w) { return double(w.rows) * double(w.cols); }

}  // namespace

double measure_read_bandwidth(ThreadPool& pool, std::size_t bytes, int reps) {
  require(bytes >= 4096 && reps >= 1, "bandwidth probe needs >= 4096 bytes and >= 1 rep, got ", bytes,
          " bytes, ", reps, " reps");
  const std::size_t n_words = bytes / sizeof(uint64_t);
  // On transparent huge pages, as the model's weights and KV slabs are: the
  // ceiling must not be lowered by TLB misses the engine does not pay.
  const std::unique_ptr<uint64_t, decltype(&std::free)> storage(
      static_cast<uint64_t*>(allocate_on_huge_pages(n_words * sizeof(uint64_t))), &std::free);
  require(storage != nullptr, "bandwidth probe: cannot allocate ", n_words * sizeof(uint64_t), " bytes");
  uint64_t* const buffer = storage.get();
  // Touch every page from the thread that will later read it (first-touch placement).
  const std::size_t grain = std::size_t(1) << 16;
  pool.parallel_for(n_words, grain, [&](std::size_t begin, std::size_t end, int) {
    for (std::size_t i = begin; i < end; ++i) buffer[i] = i;
  });
  std::vector<uint64_t> sums(std::size_t(pool.size()), 0);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_seconds();
    pool.parallel_for(n_words, grain, [&](std::size_t begin, std::size_t end, int thread) {
      sums[std::size_t(thread)] += sum_words(buffer + begin, end - begin);
    });
    const double seconds = now_seconds() - t0;
    best = std::max(best, double(n_words * sizeof(uint64_t)) / seconds);
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  volatile uint64_t keep = total;  // the sums are observable, so every read happens
  static_cast<void>(keep);
  return best;
}

MatmulProbe::MatmulProbe(int rows, int cols, int max_batch) : rows_(rows), cols_(cols), max_batch_(max_batch) {
  require(rows >= 1 && cols >= 1 && cols % 32 == 0 && max_batch >= 1,
          "matmul probe needs rows, batch >= 1 and cols a multiple of 32, got ", rows, "x", cols, " batch ",
          max_batch);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
  weights_.resize(std::size_t(rows) * std::size_t(cols));
  for (uint16_t& w : weights_) w = f32_to_f16(uniform(rng));
  x_.resize(std::size_t(max_batch) * std::size_t(cols));
  for (float& v : x_) v = uniform(rng);
  y_.resize(std::size_t(max_batch) * std::size_t(rows));
}

double MatmulProbe::flops_per_second(ThreadPool& pool, int batch, int reps) {
  require(batch >= 1 && batch <= max_batch_ && reps >= 1, "matmul probe: batch ", batch, " outside [1, ",
          max_batch_, "] or reps ", reps, " < 1");
  const kernels::WeightMatrix w{weights_.data(), gguf::GgmlType::F16, rows_, cols_};
  kernels::matmul(w, x_.data(), batch, y_.data(), pool, scratch_);  // warm-up: scratch allocation, caches
  const double flops = 2.0 * batch * double(rows_) * double(cols_);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_seconds();
    kernels::matmul(w, x_.data(), batch, y_.data(), pool, scratch_);
    best = std::max(best, flops / (now_seconds() - t0));
  }
  return best;
}

double MatmulProbe::peak(ThreadPool& pool, int reps) {
  // Batch 64 takes the packed path, batch 32 the direct one (matmul.h); the
  // peak is the faster, so no measured step can beat its own floor's FLOP term.
  return std::max(flops_per_second(pool, std::min(64, max_batch_), reps),
                  flops_per_second(pool, std::min(32, max_batch_), reps));
}

MatmulProbe make_peak_probe() { return MatmulProbe(kPeakProbeSize, kPeakProbeSize, 64); }

double measure_fma_ceiling(ThreadPool& pool) { return kernels::fma_ceiling_flops(pool, 3); }

MachineCeilings measure_machine_ceilings(ThreadPool& pool, MatmulProbe& probe, std::size_t read_bytes) {
  MachineCeilings m;
  m.read_bytes_per_second = measure_read_bandwidth(pool, read_bytes, 3);
  m.flops_per_second = kernels::fma_ceiling_flops(pool, 5);
  m.int8_ops_per_second = kernels::int8_dot_ceiling_ops(pool, 5);
  m.amx_int8_ops_per_second = kernels::amx_int8_ceiling_ops(pool, 5);
  m.gemm_flops_per_second = probe.peak(pool, 5);
  return m;
}

ModelCounts count_model(const model::ModelConfig& config, const model::ModelWeights& weights) {
  ModelCounts m;
  m.n_layers = config.n_layers;
  m.n_heads = config.n_heads;
  m.n_kv_heads = config.n_kv_heads;
  m.head_size = config.head_size;
  m.matrix_bytes = double(weights.matrix_bytes);
  // The output matrix (the embedding itself when tied) is read whole; the
  // embedding's other use is one row per token and is not counted.
  const auto add = [&m](const kernels::WeightMatrix& w) {
    m.matrix_elements += matrix_elements(w);
    if (kernels::matmul_quantizes_activations(w.type)) m.int8_matrix_elements += matrix_elements(w);
  };
  add(weights.output);
  for (const model::LayerWeights& l : weights.layers) {
    for (const kernels::WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*w);
  }
  return m;
}

StepCost step_cost_from_plan(const ModelCounts& m, double rows, double keys_read, double row_keys,
                             int kv_elem_bytes) {
  const double kv_row = 2.0 * m.n_layers * m.n_kv_heads * m.head_size * kv_elem_bytes;  // K and V, every layer
  StepCost c;
  c.weights.bytes = m.matrix_bytes;
  c.weights.flops = 2.0 * rows * m.matrix_elements;
  c.weights.int8_flops = 2.0 * rows * m.int8_matrix_elements;
  c.attention.bytes = kv_row * keys_read;
  // row_keys counts sequences × keys; each sequence's h query heads do q·K and p·V over them.
  c.attention.flops = 4.0 * m.n_layers * m.n_heads * m.head_size * row_keys;
  return c;
}

StepCost decode_step_cost(const ModelCounts& m, int samples, int context, double mean_decoded,
                          bool bifurcated, int kv_elem_bytes) {
  const double B = samples, mc = context, md = mean_decoded;
  const double keys_read = bifurcated ? mc + B * md : B * (mc + md);
  return step_cost_from_plan(m, B, keys_read, B * (mc + md), kv_elem_bytes);
}

double mean_decoded_tokens(int ntg) { return (ntg + 3) / 2.0; }

MachineCeilings ceilings_for_rows(const MachineCeilings& m, double rows) {
  MachineCeilings c = m;
  if (m.amx_int8_ops_per_second > 0 && kernels::amx_runs_batch(int64_t(rows + 0.5)))
    c.int8_ops_per_second = m.amx_int8_ops_per_second;
  return c;
}

double floor_seconds(const StepCost& cost, const MachineCeilings& machine) {
  require(machine.read_bytes_per_second > 0 && machine.flops_per_second > 0,
          "roofline needs positive ceilings, got ", machine.read_bytes_per_second, " B/s and ",
          machine.flops_per_second, " FLOP/s");
  const double int8_peak = machine.int8_ops_per_second > 0 ? machine.int8_ops_per_second : machine.flops_per_second;
  double total = 0;
  for (const PhaseCost* p : {&cost.weights, &cost.attention}) {
    const double compute = (p->flops - p->int8_flops) / machine.flops_per_second + p->int8_flops / int8_peak;
    total += std::max(p->bytes / machine.read_bytes_per_second, compute);
  }
  return total;
}

}  // namespace bifurcate::cli
