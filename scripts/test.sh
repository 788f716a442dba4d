#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs every test in every
# flavour below. Exits non-zero if any test fails — and, under CI=true, if any
# test is skipped (e.g. the data in ../shared/testdata is missing): a skipped
# test checks nothing, so CI must not pass on one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# Each run: a build flavour (scripts/build.sh), its environment, and ctest
# arguments beyond the common ones. release-avx2 runs the release build's
# suite again with its AVX2 kernels forced (BIFURCATE_ISA: the kernels are
# chosen at run time, so an AVX-512 machine would otherwise never run them),
# all but the tests that look at the program rather than run its kernels:
# the instruction-set checks (objdump, and qemu's emulated CPU, which has no
# AVX-512 whatever is forced) and the replicas behind HAProxy (the balancer's
# routing; 11 s run alone).
# run           flavour   build tree      environment         ctest arguments
RUNS=(
  "release        release   build           -                   "
  "release-avx2   release   build           BIFURCATE_ISA=avx2  -E ^(isa_|cluster_)"
  "sanitize       sanitize  build-sanitize  -                   "
  "tsan           tsan      build-tsan      -                   -R Scheduler|ServerHttp"
  "fuzz           fuzz      build-fuzz      -                   "
)
built=" "
for line in "${RUNS[@]}"; do
  read -r run flavour dir environment extra <<<"$line"
  if [[ "$built" != *" $flavour "* ]]; then
    scripts/build.sh "$flavour"
    built+="$flavour "
  fi
  [ "$environment" = "-" ] && environment=""
  echo "== tests ($run) =="
  log="$dir/ctest-output-$run.log"
  # shellcheck disable=SC2086
  env $environment ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 600 $extra 2>&1 | tee "$log"
  # ctest marks a test that called GTEST_SKIP "***Skipped" (gtest_discover_tests sets the skip regex).
  if [ "${CI:-}" = "true" ] && grep -q '\*\*\*Skipped' "$log"; then
    echo "test.sh: CI=true and $(grep -c '\*\*\*Skipped' "$log") test(s) skipped in the $run run:" >&2
    grep '\*\*\*Skipped' "$log" >&2
    exit 1
  fi
done
