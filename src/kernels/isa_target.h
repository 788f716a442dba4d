// Included by every file of kernel code that exists once per instruction-set
// path (isa.h): the files CMake compiles once per path (BIFURCATE_ISA_SOURCES
// in CMakeLists.txt), the headers only they include, and sampling's
// vocab_math.cpp (the AVX2 path only).
//
// How one source becomes three paths without one path's instructions leaking
// into another's:
//  - Every object is compiled for the x86-64-v3 floor. A file compiled for a
//    wider path gets BIFURCATE_ISA_AVX512 or BIFURCATE_ISA_AVX512VNNI from
//    CMake, and this header switches the rest of that file to the wider
//    target with `#pragma GCC target`, and defines __AVX512F__ etc. so the
//    kernels' `#ifdef __AVX512F__` choices work as they did under
//    -march=native.
//  - The switch comes AFTER every standard and shared header those files use,
//    included below first: their inline functions and templates are thus
//    compiled for the floor in every object. An inline function compiled for
//    AVX-512 in one object and for the floor in another is one COMDAT symbol,
//    and the linker may keep the AVX-512 copy for floor callers: the program
//    would then die on an AVX2-only CPU, even though BIFURCATE_ISA=avx2 works
//    on an AVX-512 one. (tests/isa_confinement_test.sh checks the linked
//    program for exactly that.)
//  - Everything declared after the switch lives in the path's own inline
//    namespace, kernels::BIFURCATE_ISA_NAMESPACE (isa_avx2, isa_avx512,
//    isa_avx512vnni), so the three copies of a kernel, template or inline
//    helper are distinct symbols. Code in kernels:: still names them as
//    before (simd::Avx2, detail::...), through the inline namespace.
// Clang (the fuzz flavour) ignores `#pragma GCC target`: it builds the AVX2
// path only (CMakeLists.txt).
// A new kernel source with per-path code: list it in PER_ISA (CMakeLists.txt),
// include its shared headers and then an ISA header (which includes this one),
// and open its namespaces as bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "gguf/ggml_types.h"
#include "kernels/attention_segment.h"
#include "kernels/attention_state.h"
#include "kernels/attention_types.h"
#include "kernels/isa.h"
#include "kernels/isa_kernels.h"
#include "kernels/matmul.h"
#include "kernels/peak_probe.h"
#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/aligned_buffer.h"
#include "util/error.h"
#include "util/f16.h"
#include "util/thread_pool.h"
#include "util/timer.h"

// GCC's C++ front end reads the whole file before the pragma takes effect,
// so it does not define the instruction-set macros as its C front end does:
// they are defined here, for the kernels' #ifdef __AVX512F__ choices.
#if defined(BIFURCATE_ISA_AVX512VNNI) || defined(BIFURCATE_ISA_AVX512)
#ifndef __AVX512F__
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512DQ__ 1
#define __AVX512VL__ 1
#endif
#endif
#if defined(BIFURCATE_ISA_AVX512VNNI)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi")
#define BIFURCATE_ISA_NAMESPACE isa_avx512vnni
#ifndef __AVX512VNNI__
#define __AVX512VNNI__ 1
#endif
#ifndef __AVX512VBMI__
#define __AVX512VBMI__ 1
#endif
#elif defined(BIFURCATE_ISA_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl")
#define BIFURCATE_ISA_NAMESPACE isa_avx512
#else
#define BIFURCATE_ISA_NAMESPACE isa_avx2
#endif

namespace bifurcate::kernels {
inline namespace BIFURCATE_ISA_NAMESPACE {}
}  // namespace bifurcate::kernels
