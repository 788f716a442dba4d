// The kernel entry points that differ per instruction-set path (isa.h), one
// table per path. Each path's table is defined by its own compilation of
// isa_kernels.cpp; isa_kernels(isa) returns it. The public functions
// (matmul.h, attention_segment.h, peak_probe.h) call through the table of
// active_isa() unless a test names a path.
#pragma once

#include <cstdint>
#include <span>

#include "gguf/ggml_types.h"
#include "kernels/attention_segment.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

struct IsaKernels {
  Isa isa;
  // matmul.h: the same contracts, on this path's kernels.
  bool (*matmul_quantizes_activations)(gguf::GgmlType type);
  void (*matmul_shared_input)(std::span<const MatmulTarget> targets, const float* x, int64_t batch,
                              ThreadPool& pool, MatmulScratch& scratch);
  // attention_segment.h
  void (*attend_segment)(const AttentionShape& shape, const SegmentKeys& keys, const StackedQueries& queries,
                         float* out, float* lse, SegmentScratch& scratch);
  // peak_probe.h: the register loops of this path's widest instructions.
  double (*fma_ceiling_flops)(ThreadPool& pool, int reps);
  double (*int8_dot_ceiling_ops)(ThreadPool& pool, int reps);
};

// The table of `isa`; Error if this build lacks that path (a clang build has only avx2).
const IsaKernels& isa_kernels(Isa isa);

}  // namespace bifurcate::kernels
