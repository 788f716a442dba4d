#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs every test in every
# flavour below. Exits non-zero if any test fails — and, under CI=true, if any
# test is skipped (e.g. the data in ../shared/testdata is missing): a skipped
# test checks nothing, so CI must not pass on one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# flavour  build tree       ctest arguments (beyond the common ones)
FLAVOURS=(
  "release  build"
  "sanitize build-sanitize"
  "avx2     build-avx2"
  "tsan     build-tsan      -R Scheduler|ServerHttp"
  "fuzz     build-fuzz"
)
for line in "${FLAVOURS[@]}"; do
  read -r flavour dir extra <<<"$line"
  scripts/build.sh "$flavour"
  echo "== tests ($flavour) =="
  log="$dir/ctest-output.log"
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 600 $extra 2>&1 | tee "$log"
  # ctest marks a test that called GTEST_SKIP "***Skipped" (gtest_discover_tests sets the skip regex).
  if [ "${CI:-}" = "true" ] && grep -q '\*\*\*Skipped' "$log"; then
    echo "test.sh: CI=true and $(grep -c '\*\*\*Skipped' "$log") test(s) skipped in the $flavour flavour:" >&2
    grep '\*\*\*Skipped' "$log" >&2
    exit 1
  fi
done
