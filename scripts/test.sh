#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs every test in every
# flavour below. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# flavour  build tree       ctest arguments (beyond the common ones)
FLAVOURS=(
  "release  build"
  "sanitize build-sanitize"
  "tsan     build-tsan      -R Scheduler"
)
for line in "${FLAVOURS[@]}"; do
  read -r flavour dir extra <<<"$line"
  scripts/build.sh "$flavour"
  echo "== tests ($flavour) =="
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 600 $extra
done
