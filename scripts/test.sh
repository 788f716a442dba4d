#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs every test:
# the Release build, then the ASan+UBSan build. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
for flavour in release sanitize; do
  scripts/build.sh "$flavour"
  dir=build; [ "$flavour" = sanitize ] && dir=build-sanitize
  echo "== tests ($flavour) =="
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 600
done
