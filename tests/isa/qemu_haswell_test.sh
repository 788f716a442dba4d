#!/usr/bin/env bash
# Usage: qemu_haswell_test.sh BIFURCATE QEMU_X86_64
# The program on CPUs it has never met, emulated by qemu-user (QEMU 7.2
# emulates AVX2/FMA/F16C but no AVX-512):
#  1. on a Haswell (x86-64-v3, no AVX-512) it picks the avx2 kernels and
#     generates the same greedy text as the native run (whatever path the
#     host runs): no AVX-512 instruction is reached on that path;
#  2. on a Westmere (below the floor) it says so and exits 1, not SIGILL.
set -uo pipefail
bin="$1"
qemu="$2"
fail() { echo "qemu_haswell_test: $*" >&2; exit 1; }
quiet_qemu() { "$qemu" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }

args=(generate --temp 0 -np 2 -n 24 -t 1)
native=$("$bin" "${args[@]}" 2>/dev/null) || fail "native run failed"
emulated=$(quiet_qemu -cpu Haswell "$bin" "${args[@]}") || fail "the run on an emulated Haswell failed (exit $?)"
[ -n "$native" ] || fail "native run printed nothing"
if [ "$native" != "$emulated" ]; then
  diff <(echo "$native") <(echo "$emulated") >&2
  fail "the emulated Haswell's greedy text differs from the native run's"
fi
version=$(quiet_qemu -cpu Haswell "$bin" --version) || fail "--version on an emulated Haswell failed"
grep -q "^kernels: avx2 " <<<"$version" || fail "an emulated Haswell should run the avx2 kernels; --version says: $version"

old=$("$qemu" -cpu Westmere "$bin" --version 2>&1)
code=$?
[ "$code" -eq 1 ] || fail "below the floor (Westmere) the exit code is $code, expected 1; output: $old"
grep -q "lacks the x86-64-v3 instructions" <<<"$old" || fail "below the floor the message is missing; output: $old"
echo "qemu_haswell_test: Haswell runs the avx2 kernels with the native greedy text; Westmere gets the message"
