// The roofline of a decode step for `bifurcate bench`: this machine's two
// ceilings (DRAM read bandwidth, GEMM peak), measured with the project's own
// code, and the bytes and FLOPs one decode step must move and do per phase.
//
// Per step with L layers, g KV heads, h query heads, head size k, B samples,
// context m_c, mean decoded length m_d, KV element size e:
//   weights:   bytes = matrix bytes of the model (each weight read once),
//              flops = 2·B·(matrix elements)
//   attention: bytes = 2·L·g·k·e·(m_c + B·m_d)   bifurcated (context read once)
//                      2·L·g·k·e·B·(m_c + m_d)   replicated (context read B times)
//              flops = 4·L·B·h·k·(m_c + m_d)     (q·K and p·V, same in both modes)
//   floor = Σ_phase max(bytes / bandwidth, flops / peak)
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"
#include "model/model_weights.h"
#include "util/thread_pool.h"

namespace bifurcate::cli {

struct MachineCeilings {
  double read_bytes_per_second = 0;  // DRAM streaming read, all threads
  double flops_per_second = 0;       // kernels::matmul F16 4096x4096, best of batch 64 and 32
};

// Best of `reps` multithreaded streaming reads over a buffer of `bytes` bytes
// (>= 1 GiB for a DRAM figure; smaller only in tests).
double measure_read_bandwidth(ThreadPool& pool, std::size_t bytes, int reps);
// An F16 `rows`x`cols` matrix and its inputs, made once, for timing
// kernels::matmul again and again (the per-row probes of a sweep).
class MatmulProbe {
 public:
  MatmulProbe(int rows, int cols, int max_batch);
  // Best of `reps` calls at `batch` (<= max_batch) after one warm-up call;
  // FLOPs counted as 2·batch·rows·cols.
  double flops_per_second(ThreadPool& pool, int batch, int reps);
  // The GEMM peak: the faster of batch 64 (packed path) and 32 (direct path).
  double peak(ThreadPool& pool, int reps);

 private:
  int rows_, cols_, max_batch_;
  std::vector<uint16_t> weights_;
  std::vector<float> x_, y_;
};

// The GEMM probe's matrix: F16 4096x4096, inputs for up to batch 64.
inline constexpr int kPeakProbeSize = 4096;
MatmulProbe make_peak_probe();
// The sweep's start: 1 GiB read x3; probe.peak x5 (batch 64 and 32, the two
// matmul paths; the faster counts).
MachineCeilings measure_machine_ceilings(ThreadPool& pool, MatmulProbe& probe);

// The shape facts the formulas need, taken from a loaded model.
struct ModelCounts {
  int n_layers = 0;
  int n_heads = 0;          // h
  int n_kv_heads = 0;       // g
  int head_size = 0;        // k
  double matrix_bytes = 0;  // all weight matrices one token reads
  double matrix_elements = 0;
};
ModelCounts count_model(const model::ModelConfig& config, const model::ModelWeights& weights);

struct PhaseCost {
  double bytes = 0;
  double flops = 0;
};
struct StepCost {
  PhaseCost weights;
  PhaseCost attention;
};

// One decode step of `samples` sequences over a `context`-token prompt, each
// with `mean_decoded` own tokens (fractional: an average over the steps).
StepCost decode_step_cost(const ModelCounts& m, int samples, int context, double mean_decoded, bool bifurcated,
                          int kv_elem_bytes);
// The mean own-token count attention sees over the `ntg` measured steps that
// follow one warm-up step: step s (1-based, warm-up = 1) sees s tokens, so
// the mean over s = 2..ntg+1 is (ntg + 3) / 2.
double mean_decoded_tokens(int ntg);

// Σ_phase max(bytes / bandwidth, flops / peak), in seconds.
double floor_seconds(const StepCost& cost, const MachineCeilings& machine);

}  // namespace bifurcate::cli
