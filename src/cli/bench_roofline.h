// The roofline of a decode step for `bifurcate bench`: this machine's
// ceilings (DRAM read bandwidth; FP32 FMA and int8 dot-product peaks from
// register-only loops, kernels/peak_probe.h, so a slow kernel cannot lower
// the floor it is judged by), and the bytes and FLOPs one decode step must
// move and do per phase. Matrices whose matmul runs integer dot products
// (kernels::matmul_quantizes_activations) count against the int8 peak of the
// path the step's batch runs (the vector loop's, or AMX's tiles where the
// integer matmul uses them: ceilings_for_rows), the rest and attention
// against the FMA peak.
//
// Per step with L layers, g KV heads, h query heads, head size k, B samples,
// context m_c, mean decoded length m_d, KV element size e:
//   weights:   bytes = matrix bytes of the model (each weight read once),
//              flops = 2·B·(matrix elements)
//   attention: bytes = 2·L·g·k·e·(m_c + B·m_d)   bifurcated (context read once)
//                      2·L·g·k·e·B·(m_c + m_d)   replicated (context read B times)
//              flops = 4·L·B·h·k·(m_c + m_d)     (q·K and p·V, same in both modes)
//   floor = Σ_phase max(bytes / bandwidth, fma flops / FMA peak + int8 flops / int8 peak)
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "util/thread_pool.h"

namespace bifurcate::cli {

struct MachineCeilings {
  double read_bytes_per_second = 0;  // DRAM streaming read, all threads
  double flops_per_second = 0;       // FP32 FMA register loop, all threads (kernels::fma_ceiling_flops)
  double int8_ops_per_second = 0;    // int8 dot register loop (kernels::int8_dot_ceiling_ops); 0: use the FMA peak
  double amx_int8_ops_per_second = 0;  // AMX tile loop (kernels::amx_int8_ceiling_ops); 0: no AMX
  // Not a ceiling: kernels::matmul's own F16 4096x4096 rate (best of batch
  // 64 and 32), reported beside the FMA peak as the kernel's efficiency.
  double gemm_flops_per_second = 0;
};

// The FMA ceiling, probed again before each row (cheap: ~2 ms).
double measure_fma_ceiling(ThreadPool& pool);

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
  kernels::MatmulScratch scratch_;
};

// The GEMM probe's matrix: F16 4096x4096, inputs for up to batch 64.
inline constexpr int kPeakProbeSize = 4096;
MatmulProbe make_peak_probe();
// The sweep's start: `read_bytes` (bench's default 1 GiB) read x3; the FMA
// and int8 register loops; the kernel's GEMM rate: probe.peak x5 (batch 64
// and 32, the faster counts).
MachineCeilings measure_machine_ceilings(ThreadPool& pool, MatmulProbe& probe, std::size_t read_bytes);

// `m` with the int8 ceiling of the instruction path a step of `rows`
// activation rows runs: AMX's where the integer matmul uses its tiles at that
// batch (kernels::amx_runs_batch), else the vector loop's.
MachineCeilings ceilings_for_rows(const MachineCeilings& m, double rows);

// The shape facts the formulas need, taken from a loaded model.
struct ModelCounts {
  int n_layers = 0;
  int n_heads = 0;          // h
  int n_kv_heads = 0;       // g
  int head_size = 0;        // k
  double matrix_bytes = 0;  // all weight matrices one token reads
  double matrix_elements = 0;
  double int8_matrix_elements = 0;  // of matrix_elements, those multiplied by int8 dot products
};
ModelCounts count_model(const model::ModelConfig& config, const model::ModelWeights& weights);

struct PhaseCost {
  double bytes = 0;
  double flops = 0;
  double int8_flops = 0;  // of flops, those on the int8 dot-product path
};
struct StepCost {
  PhaseCost weights;
  PhaseCost attention;
};

// One decode step of `samples` sequences over a `context`-token prompt, each
// with `mean_decoded` own tokens (fractional: an average over the steps).
StepCost decode_step_cost(const ModelCounts& m, int samples, int context, double mean_decoded, bool bifurcated,
                          int kv_elem_bytes);
// Any decode step from its attention plan's totals (ForwardWork, per layer
// and KV head): `keys_read` tokens of K/V read, `row_keys` tokens × rows
// attending them, `rows` rows through the weights. decode_step_cost is its
// two-level case (bifurcated: keys_read = m_c + B·m_d; replicated: B·(m_c + m_d)).
StepCost step_cost_from_plan(const ModelCounts& m, double rows, double keys_read, double row_keys,
                             int kv_elem_bytes);
// The mean own-token count attention sees over the `ntg` measured steps that
// follow one warm-up step: step s (1-based, warm-up = 1) sees s tokens, so
// the mean over s = 2..ntg+1 is (ntg + 3) / 2.
double mean_decoded_tokens(int ntg);

// Σ_phase max(bytes / bandwidth, (flops - int8_flops) / FMA peak +
// int8_flops / int8 peak), in seconds.
double floor_seconds(const StepCost& cost, const MachineCeilings& machine);

}  // namespace bifurcate::cli
