#!/usr/bin/env bash
# Configures and builds bifurcate. Usage: scripts/build.sh [FLAVOUR]
# Flavours and their build trees:
#   release   build/           -O3 -march=native
#   sanitize  build-sanitize/  ASan + UBSan
#   avx2      build-avx2/      -O3 -mavx2 -mfma -mf16c (no AVX-512: the AVX2 kernels)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
case "$flavour" in
  release)  dir=build;          opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-sanitize; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_SANITIZE=ON) ;;
  avx2)     dir=build-avx2;     opts=(-DCMAKE_BUILD_TYPE=Release -DBIFURCATE_NATIVE=OFF) ;;
  *) echo "build.sh: unknown flavour '$flavour' (use release, sanitize or avx2)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
