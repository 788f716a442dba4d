#!/usr/bin/env bash
# Configures and builds bifurcate. Usage: scripts/build.sh [FLAVOUR]
# Flavours and their build trees:
#   release   build/           -O3 -march=native
#   sanitize  build-sanitize/  ASan + UBSan
#   tsan      build-tsan/      ThreadSanitizer (test.sh runs the scheduler tests in it)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
case "$flavour" in
  release)  dir=build;          opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-sanitize; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_SANITIZE=ON) ;;
  tsan)     dir=build-tsan;     opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFURCATE_TSAN=ON) ;;
  *) echo "build.sh: unknown flavour '$flavour' (use release, sanitize or tsan)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
