// AMX availability (amx.h): CPUID, the OS's tile state, the Linux permission
// request and BIFURCATE_AMX.
#include "kernels/amx.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace bifurcate::kernels {
namespace {

bool cpu_and_os_allow_amx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool tile = (d >> 24) & 1u, int8 = (d >> 25) & 1u;
  const bool xsave = __get_cpuid(1, &a, &b, &c, &d) != 0 && ((c >> 27) & 1u) != 0;  // OSXSAVE: xgetbv works
  if (!tile || !int8 || !xsave) return false;
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if (((lo >> 17) & 3u) != 3u) return false;  // XCR0 bits 17, 18: XTILECFG, XTILEDATA
#ifdef SYS_arch_prctl
  // Linux 5.16+: a process must ask for the 8 KiB tile data state first.
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

bool amx_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("BIFURCATE_AMX");
    if (env != nullptr && std::string_view(env) == "off") return false;
    return cpu_and_os_allow_amx();
  }();
  return allowed;
}

std::atomic<bool> g_enabled{true};

}  // namespace

bool amx_enabled() { return g_enabled.load(std::memory_order_relaxed) && amx_allowed(); }

void set_amx_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

}  // namespace bifurcate::kernels
