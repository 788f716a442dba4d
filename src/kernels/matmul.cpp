// matmul front, compiled once per instruction-set path (isa_target.h):
// argument checks, path choice, and the split of output rows between
// threads. The kernels are in matmul_direct.cpp, matmul_outer.cpp,
// matmul_packed.cpp and matmul_quant.cpp; the public matmul() picks the
// path's front (isa_dispatch.cpp).
#include <algorithm>
#include <array>
#include <memory>
#include <vector>

#include "kernels/isa_entry_points.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_quant.h"
#include "tensor/dtype.h"
#include "util/aligned_buffer.h"
#include "util/error.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE {
namespace {

// Types with an integer path take it at every batch. The others (F32, F16,
// BF16, Q8_0) take the outer-product micro-tiles from batch 32 on, for rows
// of more than 1024 elements (outer_path_wins: F16 4096x4096 batch 256, 2 threads, 309 against 196
// GFLOP/s for the direct tiles, docs/perf-notes.md M15), below it F32/F16/Q8_0
// the direct path (GEMV at batch 1-4, dot-product tiles reading the mapped
// weights) and BF16 the packed one.
// Rows per packed task: a multiple of the 24-row chunk; the f32 panel of 96
// rows x a 1024-wide K-block (384 KiB) stays in L2.
constexpr int64_t kPackedTaskRows = 96;

// Direct and integer paths: ~8 tasks per thread so dynamic claiming evens
// out, in multiples of `unit` rows: 24 for the direct path (every direct
// tile height divides 24), 16 for the integer path (its batch > 4 tiles hold
// 16 weight rows; 24 left a half-empty group per task, docs/perf-notes.md Q21).
int64_t task_rows(int64_t rows, int threads, int64_t unit) {
  const int64_t per_thread = (rows + threads - 1) / threads;
  return std::clamp<int64_t>((per_thread / 8 + unit - 1) / unit * unit, unit, 480);
}

// This path's part of a MatmulScratch (matmul.h).
struct Scratch : MatmulScratch::State {
  // The direct path's 8-row tiles read x interleaved (no L1 set aliasing of
  // 8 rows 4*cols bytes apart); packed once per call by the calling thread.
  AlignedBuffer<float> x8;
  // The integer path's activations, quantized once per call for every target.
  detail::QuantizedXBuffers xq;
  // The outer-product path's copy of x in batch-row groups (pack_x_outer).
  AlignedBuffer<float> x_outer;
  // Per pool thread, reused across calls: the integer path's unpacked
  // superblocks, the packed path's f32 panel and the outer path's panels.
  struct Panels {
    AlignedBuffer<detail::UnpackedSuperblock> quant;
    AlignedBuffer<float> f32;
    detail::OuterPanels outer;
  };
  std::vector<Panels> threads;
};

// `scratch`'s state as this path's Scratch with a slot per pool thread
// (made, or remade after another path's call, only then).
Scratch& scratch_for(MatmulScratch& scratch, const ThreadPool& pool) {
  if (dynamic_cast<Scratch*>(scratch.state.get()) == nullptr) scratch.state = std::make_unique<Scratch>();
  Scratch& s = static_cast<Scratch&>(*scratch.state);
  if (s.threads.size() < std::size_t(pool.size())) s.threads.resize(std::size_t(pool.size()));
  return s;
}

}  // namespace

// This path's instruction set (isa_target.h defines __AVX512F__ on the avx512 paths).
#ifdef __AVX512F__
constexpr bool kAvx512 = true;
#else
constexpr bool kAvx512 = false;
#endif

bool matmul_quantizes_activations(gguf::GgmlType type) { return detail::has_quant_path(type, kAvx512); }

void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t batch,
                         ThreadPool& pool, MatmulScratch& matmul_scratch) {
  // A fixed plan table keeps the call free of heap allocation.
  constexpr std::size_t kMaxTargets = 4;
  require(targets.size() <= kMaxTargets, "matmul: at most ", kMaxTargets, " targets share an input, got ",
          targets.size());
  require(batch >= 0, "matmul: negative batch ", batch);
  for (const MatmulTarget& t : targets) {
    const auto& traits = gguf::ggml_type_traits(t.w.type);
    require(tensor::is_supported_weight_type(t.w.type), "matmul: unsupported weight type ", traits.name);
    require(t.w.rows >= 0 && t.w.cols > 0 && t.w.cols % traits.block_size == 0, "matmul: bad ", traits.name,
            " weight shape ", t.w.rows, "x", t.w.cols, " (cols must be a positive multiple of ",
            traits.block_size, ")");
    require(t.w.cols == targets[0].w.cols, "matmul: targets sharing an input need equal cols, got ",
            targets[0].w.cols, " and ", t.w.cols);
  }
  if (batch == 0 || targets.empty()) return;

  const bool avx512 = kAvx512;
  // Tasks of target i are [first_task[i], first_task[i + 1]).
  enum class Path { direct, packed, outer, quant };
  struct Plan {
    const MatmulTarget* target;
    Path path;
    int64_t rows_per_task, first_task;
  };
  std::array<Plan, kMaxTargets + 1> plans{};
  int64_t n_tasks = 0, macs = 0;
  bool any_direct = false, any_quant = false, any_outer = false;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const WeightMatrix& w = targets[i].w;
    const Path path = detail::has_quant_path(w.type, avx512)   ? Path::quant
                      : detail::outer_path_wins(batch, w.cols) ? Path::outer
                      : detail::has_direct_path(w.type)        ? Path::direct
                                                               : Path::packed;
    const int64_t rows_per_task = path == Path::packed  ? kPackedTaskRows
                                  : path == Path::outer ? detail::outer_task_rows(w.rows, pool.size())
                                  : path == Path::quant ? task_rows(w.rows, pool.size(), 16)
                                                        : task_rows(w.rows, pool.size(), 24);
    plans[i] = {&targets[i], path, rows_per_task, n_tasks};
    n_tasks += (w.rows + rows_per_task - 1) / rows_per_task;
    macs += w.rows * w.cols * batch;
    any_direct = any_direct || path == Path::direct;
    any_quant = any_quant || path == Path::quant;
    any_outer = any_outer || path == Path::outer;
  }
  plans[targets.size()].first_task = n_tasks;

  Scratch& scratch = scratch_for(matmul_scratch, pool);
  const detail::PackedX x8 =
      any_direct ? detail::pack_x_groups(x, batch, targets[0].w.cols, avx512, scratch.x8) : detail::PackedX{};
  const detail::QuantizedX xq =
      any_quant ? detail::quantize_activations(x, batch, targets[0].w.cols, scratch.xq) : detail::QuantizedX{};
  const detail::OuterX x_outer =
      any_outer ? detail::pack_x_outer(x, batch, targets[0].w.cols, avx512, scratch.x_outer) : detail::OuterX{};
  // One captured reference keeps std::function's small-buffer storage: no allocation.
  struct Call {
    const std::array<Plan, kMaxTargets + 1>& plans;
    std::size_t n_targets;
    const float* x;
    int64_t batch;
    bool avx512;
    detail::PackedX x8;
    detail::QuantizedX xq;
    detail::OuterX x_outer;
    Scratch& scratch;
  } call{plans, targets.size(), x, batch, avx512, x8, xq, x_outer, scratch};
  const auto task = [&call](std::size_t t, int thread) {
    std::size_t i = 0;
    while (int64_t(t) >= call.plans[i + 1].first_task) ++i;
    const Plan& plan = call.plans[i];
    const WeightMatrix& w = plan.target->w;
    const int64_t r_begin = (int64_t(t) - plan.first_task) * plan.rows_per_task;
    const int64_t r_end = std::min(w.rows, r_begin + plan.rows_per_task);
    if (plan.path == Path::quant) {
      detail::multiply_rows_quant(w, call.xq, call.batch, plan.target->y, r_begin, r_end, call.avx512,
                                  call.scratch.threads[std::size_t(thread)].quant);
    } else if (plan.path == Path::outer) {
      detail::multiply_rows_outer(w, call.x_outer, plan.target->y, r_begin, r_end, call.avx512,
                                  call.scratch.threads[std::size_t(thread)].outer);
    } else if (plan.path == Path::direct) {
      detail::multiply_rows_direct(w, call.x, call.x8, call.batch, plan.target->y, r_begin, r_end,
                                   call.avx512);
    } else {
      detail::multiply_rows_packed(w, call.x, call.batch, plan.target->y, r_begin, r_end, call.avx512,
                                   call.scratch.threads[std::size_t(thread)].f32);
    }
  };
  // Below ~20 us of work, waking the other threads costs more than it saves
  // (and on an oversubscribed machine a wake-up can cost a whole time slice).
  constexpr int64_t kMinParallelMacs = int64_t(1) << 18;
  if (macs < kMinParallelMacs) {
    for (int64_t t = 0; t < n_tasks; ++t) task(size_t(t), 0);
    return;
  }
  pool.run(size_t(n_tasks), task);
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE
