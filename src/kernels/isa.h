// The kernels' instruction-set paths and the one this process runs.
//
// The whole program is compiled for the x86-64-v3 floor (AVX2, FMA, F16C).
// The kernels that have wider code are compiled once more per wider path,
// each copy in its own namespace (kernels/isa_target.h says how), and one
// path is chosen once per process: the widest this CPU runs, or a narrower one
// named by the environment variable BIFURCATE_ISA (avx2, avx512, avx512vnni).
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace bifurcate::kernels {

// Narrowest first; each path needs everything the ones before it need.
//   avx2        AVX2 + FMA + F16C (the floor)
//   avx512      + AVX-512 F/BW/DQ/VL: 512-bit matmul and attention kernels
//   avx512vnni  + AVX512-VNNI and VBMI: vpdpbusd in the integer matmul, vpermb in its unpacking
enum class Isa { avx2, avx512, avx512vnni };

// "avx2", "avx512" or "avx512vnni": the BIFURCATE_ISA spelling.
const char* isa_name(Isa isa);
std::optional<Isa> parse_isa(std::string_view name);

// The widest path this CPU and OS run (CPUID, plus the OS's saved vector state).
Isa cpu_isa();

// Every path this CPU runs, narrowest first (kernel tests compare them all).
std::span<const Isa> runnable_isas();

// The path this process uses: cpu_isa(), or BIFURCATE_ISA's choice. Chosen at
// the first call and fixed after. Throws Error, naming BIFURCATE_ISA, when its
// value is unknown or wider than this CPU runs.
Isa active_isa();

// The active path's choice rule for a given BIFURCATE_ISA value (nullptr:
// unset) on a CPU whose widest path is `cpu`: what active_isa() applies,
// exposed for tests. Throws Error as active_isa() does.
Isa choose_isa(const char* env_value, Isa cpu);

}  // namespace bifurcate::kernels
