// CPU detection and BIFURCATE_ISA (isa.h). Compiled for the floor like the
// rest of the program; it only reads CPUID (libgcc's __builtin_cpu_supports,
// which also checks that the OS saves the AVX-512 registers).
#include "kernels/isa.h"

#include <array>
#include <cstdlib>

#include "util/error.h"

namespace bifurcate::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512vnni: return "avx512vnni";
  }
  return "?";
}

std::optional<Isa> parse_isa(std::string_view name) {
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512vnni})
    if (name == isa_name(isa)) return isa;
  return std::nullopt;
}

Isa cpu_isa() {
#ifndef BIFURCATE_HAS_AVX512_PATHS
  return Isa::avx2;  // a build without the wider paths (clang) runs the floor's everywhere
#endif
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (!avx512) return Isa::avx2;
  // The VNNI path also uses VBMI's byte permutes (the 32-block types' batch-1
  // stream, Q4_0's lane builder): every CPU with both (Ice Lake, Zen 4 and
  // later) takes it; Cascade Lake (VNNI without VBMI) runs the avx512 path.
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
  return vnni ? Isa::avx512vnni : Isa::avx512;
}

std::span<const Isa> runnable_isas() {
  static constexpr std::array kAll{Isa::avx2, Isa::avx512, Isa::avx512vnni};
  return std::span(kAll).first(std::size_t(cpu_isa()) + 1);
}

Isa choose_isa(const char* env_value, Isa cpu) {
  if (env_value == nullptr || *env_value == '\0') return cpu;
  const std::optional<Isa> wanted = parse_isa(env_value);
  require(wanted.has_value(), "BIFURCATE_ISA='", env_value,
          "' is not an instruction-set path (use avx2, avx512 or avx512vnni)");
  require(*wanted <= cpu, "BIFURCATE_ISA=", env_value, " asks for a path this CPU does not run (it runs up to ",
          isa_name(cpu), ")");
  return *wanted;
}

Isa active_isa() {
  // Thread-safe one-time choice; a throw leaves it unset, so every caller sees the error.
  static const Isa chosen = choose_isa(std::getenv("BIFURCATE_ISA"), cpu_isa());
  return chosen;
}

}  // namespace bifurcate::kernels
