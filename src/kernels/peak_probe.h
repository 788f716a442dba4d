// The machine's compute ceilings, measured with register-only loops that do
// not depend on any kernel under test (bench's roofline, DESIGN.md §5, §8):
// every pool thread runs independent chains of one instruction on values
// already in registers, so neither memory nor a kernel's overheads enter.
#pragma once

#include "kernels/isa.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

// FP32 fused multiply-add: 2 FLOPs per lane per instruction (512-bit
// vfmadd231ps on the avx512 paths, else 256-bit).
// Best of `reps` runs, all threads at once.
double fma_ceiling_flops(ThreadPool& pool, int reps, Isa isa = active_isa());

// Int8 dot products of the integer matmul path (matmul_quant.h): vpdpbusd
// (the avx512vnni path) or, on the others, vpmaddubsw + vpmaddwd + vpaddd; 2 ops (a
// multiply and an add) per 8-bit product.
double int8_dot_ceiling_ops(ThreadPool& pool, int reps, Isa isa = active_isa());

}  // namespace bifurcate::kernels
