#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs the main job: the
# paper's measurement on this CPU. `bifurcate bench` creates the 7b-mha-2l F16
# model once (cached in build/models/), measures the machine's roofline, sweeps
# context 2048/8192 x 1..32 samples x bifurcated/replicated, prints the table
# and the speedup table, and draws build/bench-latency.svg (+ .png when a
# converter exists). Extra arguments go to `bifurcate bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
exec build/bifurcate bench --csv build/bench-results.csv --json build/bench-results.json "$@"
