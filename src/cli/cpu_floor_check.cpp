// The program's first check, before any code compiled for the x86-64-v3
// floor (AVX2, FMA, F16C, BMI2) can run: on an older CPU, a clear message and
// exit code 1 instead of SIGILL. This file alone is compiled for plain x86-64
// (CMakeLists.txt), and its function sits in .preinit_array, which the loader
// runs before every static constructor of the program.
#include <unistd.h>

namespace {

bool cpu_has_floor() {
  __builtin_cpu_init();
#if defined(__clang__)
  // clang 14 knows no level names, nor "f16c": the features it can ask (a CPU with them has the rest).
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
         __builtin_cpu_supports("bmi2");
#else
  return __builtin_cpu_supports("x86-64-v3");
#endif
}

void check_cpu_floor(int, char**, char**) {
  if (cpu_has_floor()) return;
  static constexpr char kMessage[] =
      "bifurcate: error: this CPU lacks the x86-64-v3 instructions bifurcate is built for (AVX2, FMA, F16C, "
      "BMI2: Intel Haswell, AMD Zen and later)\n";
  [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  _exit(1);
}

[[gnu::used, gnu::section(".preinit_array")]] void (*const kCheckCpuFloor)(int, char**, char**) = check_cpu_floor;

}  // namespace
