// The entry points one instruction-set path's kernels give its table
// (isa_kernels.h): the same contracts as the public functions of the same
// names, on this path's instructions, in this path's namespace.
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE {

// matmul.cpp
bool matmul_quantizes_activations(gguf::GgmlType type);
void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t batch, ThreadPool& pool,
                         MatmulScratch& scratch);
// attention_segment.cpp
void attend_segment(const AttentionShape& shape, const SegmentKeys& keys, const StackedQueries& queries,
                    float* out, float* lse, SegmentScratch& scratch);
// peak_probe.cpp
double fma_ceiling_flops(ThreadPool& pool, int reps);
double int8_dot_ceiling_ops(ThreadPool& pool, int reps);

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE
