// Whether the integer matmul may use AMX tiles (tdpbsud), for the batches
// above 4 of matmul_quant_lanes.cpp. Compiled for the floor; no inline code.
#pragma once

namespace bifurcate::kernels {

// True when the CPU has AMX-TILE and AMX-INT8, the OS saves the tile state
// and granted this process its use (Linux: arch_prctl ARCH_REQ_XCOMP_PERM,
// asked once, at the first call), BIFURCATE_AMX is not "off", and
// set_amx_enabled(false) is not in force.
bool amx_enabled();

// Turns AMX off (false) or back on where amx_enabled() allows it (true): the
// tests compare the AMX tiles with the vpdpbusd tiles in one process.
void set_amx_enabled(bool on);

}  // namespace bifurcate::kernels
