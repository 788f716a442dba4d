// AMX availability (amx.h): CPUID, the OS's tile state, the Linux permission
// request and BIFURCATE_AMX.
#include "kernels/amx.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "util/timer.h"

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

bool amx_runs_batch(int64_t batch, Isa isa) {
  return isa == Isa::avx512vnni && batch >= kAmxMinBatch && amx_enabled();
}

namespace {

constexpr int kProbeIterations = 1024;  // x 4 tdpbssd: ~20-25 ms per thread here

// tmm0-3 accumulators, tmm4 = A, tmm5 = B: all 16 rows x 64 bytes (K = 64).
// The tiles are zeroed by ldtilecfg and never leave registers in the loop.
int64_t amx_loop() {
  struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } cfg;
  for (int t = 0; t < 6; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  asm volatile("ldtilecfg %0" : : "m"(cfg));
  for (int i = 0; i < kProbeIterations; ++i) {
    asm volatile(
        "tdpbssd %%tmm5, %%tmm4, %%tmm0\n\t"
        "tdpbssd %%tmm5, %%tmm4, %%tmm1\n\t"
        "tdpbssd %%tmm5, %%tmm4, %%tmm2\n\t"
        "tdpbssd %%tmm5, %%tmm4, %%tmm3" ::: "memory");
  }
  alignas(64) int32_t c[16][16];
  asm volatile("tilestored %%tmm0, (%0,%1,1)" : : "r"(c), "r"(int64_t(64)) : "memory");
  asm volatile("tilerelease");
  return c[0][0];
}

}  // namespace

double amx_int8_ceiling_ops(ThreadPool& pool, int reps) {
  if (!amx_enabled()) return 0;
  const double ops_per_loop = 2.0 * 16 * 16 * 64 * 4 * double(kProbeIterations);
  std::vector<int64_t> sink(std::size_t(pool.size()), 0);
  double best = 0;
  for (int r = 0; r < std::max(1, reps); ++r) {
    // Timed inside each thread, after its first tile instruction: that one
    // traps once per thread (the kernel allocates the tile state), ~10x the
    // loop's time here, and which threads run the first round is not fixed.
    std::vector<double> busy(std::size_t(pool.size()), 0.0);
    pool.parallel_for(std::size_t(pool.size()), 1, [&](std::size_t begin, std::size_t end, int thread) {
      thread_local bool warmed = false;
      if (!warmed) sink[std::size_t(thread)] += amx_loop(), warmed = true;
      for (std::size_t i = begin; i < end; ++i) {
        const double t0 = now_seconds();
        sink[std::size_t(thread)] += amx_loop();
        busy[std::size_t(thread)] += now_seconds() - t0;
      }
    });
    const double slowest = *std::max_element(busy.begin(), busy.end());
    if (slowest > 0) best = std::max(best, ops_per_loop * pool.size() / slowest);
  }
  volatile int64_t keep_sum = 0;
  for (int64_t s : sink) keep_sum = keep_sum + s;
  return best;
}

}  // namespace bifurcate::kernels
