#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs the main job on its
# built-in default: the attention kernel benchmark, replicated vs bifurcated.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
exec build/bench/bench_attention "$@"
