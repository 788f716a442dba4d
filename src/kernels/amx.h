// Whether the integer matmul may use AMX tiles (tdpbsud), for the batches
// above 4 of matmul_quant_lanes.cpp, and AMX's int8 ceiling. Compiled for
// the floor: the probe's tile instructions are inline assembly and run only
// where amx_enabled().
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

// AMX from batch 16 on: at batch 8 the tiles' fixed cost (16 rows a tile)
// and the fold made it slower than the vpdpbusd tiles (docs/perf-notes.md Q20).
inline constexpr int64_t kAmxMinBatch = 16;

// True when the CPU has AMX-TILE and AMX-INT8, the OS saves the tile state
// and granted this process its use (Linux: arch_prctl ARCH_REQ_XCOMP_PERM,
// asked once, at the first call), BIFURCATE_AMX is not "off", and
// set_amx_enabled(false) is not in force.
bool amx_enabled();

// Turns AMX off (false) or back on where amx_enabled() allows it (true): the
// tests compare the AMX tiles with the vpdpbusd tiles in one process.
void set_amx_enabled(bool on);

// Whether the integer matmul (matmul_quantizes_activations types) runs AMX
// tiles for `batch` activation rows on path `isa`: the avx512vnni path's
// lanes kernels do from kAmxMinBatch on, where amx_enabled().
bool amx_runs_batch(int64_t batch, Isa isa = active_isa());

// The AMX int8 ceiling (bench's roofline, as kernels/peak_probe.h's loops):
// every pool thread runs tdpbssd 16x16x64 products into 4 accumulator tiles
// on tiles already loaded, no memory in the loop; 2 ops (a multiply and an
// add) per 8-bit product, best of `reps`. 0 where amx_enabled() is false.
double amx_int8_ceiling_ops(ThreadPool& pool, int reps);

}  // namespace bifurcate::kernels
