#!/usr/bin/env bash
# Configures and builds bifurcate. Usage: scripts/build.sh [FLAVOUR]
# Flavours and their build trees:
#   release   build/           -O3; runs on any x86-64-v3 CPU, kernels chosen at run time
#                              (BIFURCATE_ISA=avx2|avx512|avx512vnni forces a narrower path)
#   sanitize  build-sanitize/  ASan + UBSan (-O1, line tables: CMakeLists.txt says why)
#   tsan      build-tsan/      ThreadSanitizer; builds only the scheduler and in-process HTTP server tests (test.sh runs them),
#                              with the AVX2 kernels only (CMakeLists.txt says why)
#   fuzz      build-fuzz/      clang, libFuzzer + ASan + UBSan: the fuzz/ targets only
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
targets=()  # all
case "$flavour" in
  release)  dir=build;          opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-sanitize; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_SANITIZE=ON -DBIFURCATE_BENCH=OFF) ;;
  tsan)     dir=build-tsan;     opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_TSAN=ON -DBIFURCATE_BENCH=OFF); targets=(--target engine_scheduler_test server_http_test) ;;
  fuzz)     dir=build-fuzz;     opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_FUZZ=ON
                                      -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "build.sh: unknown flavour '$flavour' (use release, sanitize, tsan or fuzz)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
