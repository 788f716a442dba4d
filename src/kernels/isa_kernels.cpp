// This path's table of entry points (isa_kernels.h); compiled once per path
// like the kernels it lists.
#include "kernels/isa_entry_points.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE {

extern const IsaKernels kTable;
const IsaKernels kTable = {
#if defined(__AVX512VNNI__)
    Isa::avx512vnni,
#elif defined(__AVX512F__)
    Isa::avx512,
#else
    Isa::avx2,
#endif
    matmul_quantizes_activations,
    matmul_shared_input,
    attend_segment,
    fma_ceiling_flops,
    int8_dot_ceiling_ops,
};

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE
