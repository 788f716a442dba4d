#!/usr/bin/env bash
# Runs one libFuzzer target the way ctest does in the fuzz flavour: from a
# fresh working corpus (so a run does not depend on earlier runs), with the
# seed directories read but never written. Exits non-zero on any crash,
# sanitizer report, leak, timeout or out-of-memory; the input that caused it
# is left in WORK_DIR/artifacts/ (reproduce: TARGET WORK_DIR/artifacts/crash-...).
# Usage: run_fuzz_target.sh TARGET WORK_DIR SEED_DIR... -- LIBFUZZER_FLAG...
set -euo pipefail
target="$1" work="$2"
shift 2
seeds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  seeds+=("$1")
  shift
done
[ $# -gt 0 ] && shift  # the "--"
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
exec "$target" "$@" -artifact_prefix="$work/artifacts/" "$work/corpus" "${seeds[@]}"
