// matmul front: argument checks, path and instruction-set choice, and the
// split of output rows between threads. The kernels are in matmul_direct.cpp
// and matmul_packed.cpp.
#include "kernels/matmul.h"

#include <algorithm>

#include "kernels/matmul_paths.h"
#include "tensor/dtype.h"
#include "util/aligned_buffer.h"
#include "util/error.h"

namespace bifurcate::kernels {
namespace {

// F32/F16/Q8_0 always take the direct path, whatever the batch: measured
// (1 thread, CPU time, docs/perf-notes.md) its dot-product tiles reached
// ~210 GFLOP/s at batch 256 against ~94 for the then outer-product packed
// tile; they read F16/Q8_0 weights at 2 / 1.06 bytes and need no panel. The
// packed path serves the other types.
// Rows per packed task: a multiple of the 24-row chunk; the f32 panel of 96
// rows x a 1024-wide K-block (384 KiB) stays in L2.
constexpr int64_t kPackedTaskRows = 96;

// Direct: ~8 tasks per thread so dynamic claiming evens out, in multiples of
// 24 rows (every direct tile height divides 24).
int64_t direct_task_rows(int64_t rows, int threads) {
  const int64_t per_thread = (rows + threads - 1) / threads;
  return std::clamp<int64_t>((per_thread / 8 + 23) / 24 * 24, 24, 480);
}

}  // namespace

bool matmul_has_avx512() {
#ifdef __AVX512F__
  return true;
#else
  return false;
#endif
}

void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool, MatmulIsa isa) {
  const auto& traits = gguf::ggml_type_traits(w.type);
  require(tensor::is_supported_weight_type(w.type), "matmul: unsupported weight type ", traits.name);
  require(w.rows >= 0 && w.cols > 0 && w.cols % traits.block_size == 0, "matmul: bad ", traits.name,
          " weight shape ", w.rows, "x", w.cols, " (cols must be a positive multiple of ", traits.block_size,
          ")");
  require(batch >= 0, "matmul: negative batch ", batch);
  if (batch == 0 || w.rows == 0) return;

  const bool avx512 = isa == MatmulIsa::best && matmul_has_avx512();
  const bool direct = detail::has_direct_path(w.type);
  const int64_t rows_per_task = direct ? direct_task_rows(w.rows, pool.size()) : kPackedTaskRows;
  const int64_t n_tasks = (w.rows + rows_per_task - 1) / rows_per_task;

  // One captured reference keeps std::function's small-buffer storage: no allocation.
  struct Call {
    const WeightMatrix& w;
    const float* x;
    int64_t batch;
    float* y;
    bool direct, avx512;
    int64_t rows_per_task;
    detail::PackedX x8;
  } call{w, x, batch, y, direct, avx512, rows_per_task, {}};
  // The direct path's 8-row tiles read x interleaved (no L1 set aliasing of
  // 8 rows 4*cols bytes apart); packed once per call by the calling thread.
  thread_local AlignedBuffer<float> x8_buffer;
  if (direct) call.x8 = detail::pack_x_groups(x, batch, w.cols, avx512, x8_buffer);
  const auto task = [&call](std::size_t t, int /*thread*/) {
    const int64_t r_begin = int64_t(t) * call.rows_per_task;
    const int64_t r_end = std::min(call.w.rows, r_begin + call.rows_per_task);
    if (call.direct) {
      detail::multiply_rows_direct(call.w, call.x, call.x8, call.batch, call.y, r_begin, r_end, call.avx512);
    } else {
      // The packed path's f32 panel: per thread, reused across calls.
      thread_local AlignedBuffer<float> panel;
      detail::multiply_rows_packed(call.w, call.x, call.batch, call.y, r_begin, r_end, call.avx512, panel);
    }
  };
  // Below ~20 us of work, waking the other threads costs more than it saves
  // (and on an oversubscribed machine a wake-up can cost a whole time slice).
  constexpr int64_t kMinParallelMacs = int64_t(1) << 18;
  if (w.rows * w.cols * batch < kMinParallelMacs) {
    for (int64_t t = 0; t < n_tasks; ++t) task(size_t(t), 0);
    return;
  }
  pool.run(size_t(n_tasks), task);
}

}  // namespace bifurcate::kernels
