// The public kernel entry points that differ per instruction-set path: each
// calls the table (isa_kernels.h) of the path asked for, by default the
// process's active_isa(). Compiled for the floor, like the callers.
#include <span>

#include "kernels/attention_segment.h"
#include "kernels/isa_kernels.h"
#include "kernels/matmul.h"
#include "kernels/peak_probe.h"
#include "util/error.h"

namespace bifurcate::kernels {
namespace isa_avx2 {
extern const IsaKernels kTable;
}
#ifdef BIFURCATE_HAS_AVX512_PATHS
namespace isa_avx512 {
extern const IsaKernels kTable;
}
namespace isa_avx512vnni {
extern const IsaKernels kTable;
}
#endif

const IsaKernels& isa_kernels(Isa isa) {
  switch (isa) {
    case Isa::avx2: return isa_avx2::kTable;
#ifdef BIFURCATE_HAS_AVX512_PATHS
    case Isa::avx512: return isa_avx512::kTable;
    case Isa::avx512vnni: return isa_avx512vnni::kTable;
#else
    default: break;
#endif
  }
  throw Error(str("this build has no ", isa_name(isa), " kernels (clang builds have the avx2 path only)"));
}

bool matmul_quantizes_activations(gguf::GgmlType type, Isa isa) {
  return isa_kernels(isa).matmul_quantizes_activations(type);
}

void matmul(const WeightMatrix& w, const float* x, int64_t batch, float* y, ThreadPool& pool,
            MatmulScratch& scratch, Isa isa) {
  const MatmulTarget target{w, y};
  isa_kernels(isa).matmul_shared_input(std::span(&target, 1), x, batch, pool, scratch);
}

void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t batch, ThreadPool& pool,
                         MatmulScratch& scratch, Isa isa) {
  isa_kernels(isa).matmul_shared_input(targets, x, batch, pool, scratch);
}

void attend_segment(const AttentionShape& shape, const SegmentKeys& keys, const StackedQueries& queries,
                    float* out, float* lse, SegmentScratch& scratch, Isa isa) {
  isa_kernels(isa).attend_segment(shape, keys, queries, out, lse, scratch);
}

double fma_ceiling_flops(ThreadPool& pool, int reps, Isa isa) { return isa_kernels(isa).fma_ceiling_flops(pool, reps); }

double int8_dot_ceiling_ops(ThreadPool& pool, int reps, Isa isa) {
  return isa_kernels(isa).int8_dot_ceiling_ops(pool, reps);
}

}  // namespace bifurcate::kernels
