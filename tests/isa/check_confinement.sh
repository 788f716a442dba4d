#!/usr/bin/env bash
# Usage: check_confinement.sh BINARY [--expect-wide]
# Fails when any function of BINARY outside the AVX-512 paths' namespaces
# (kernels::isa_avx512, kernels::isa_avx512vnni; src/kernels/isa_target.h)
# contains an AVX-512 instruction: EVEX-encoded (first opcode byte 0x62 in
# 64-bit mode) or naming a zmm, mask (k0-k7) or upper (16-31) vector
# register. Such a function would die with SIGILL on an AVX2-only CPU, e.g. an
# inline helper whose AVX-512 copy the linker kept for every caller.
# --expect-wide: also fail when NO function uses AVX-512 (the check would be
# vacuous, e.g. if the wide paths were not built or not recognised).
set -euo pipefail
binary="$1"
expect_wide="${2:-}"
command -v objdump >/dev/null || { echo "check_confinement: objdump not found (binutils)" >&2; exit 2; }
report=$(objdump -d --no-addresses "$binary") || {
  echo "check_confinement: objdump failed on $binary" >&2; exit 2; }
# awk: per function (a "<symbol>:" header), whether it holds a wide instruction.
result=$(awk -F'\t' '
  /^[0-9a-f]* ?<.*>:$/ { fn = $0; sub(/^[0-9a-f]* ?</, "", fn); sub(/>:$/, "", fn); next }
  NF >= 3 {
    bytes = $2; asm = $3
    gsub(/^ +| +$/, "", bytes)
    n = split(bytes, b, " ")
    i = 1
    while (i <= n && b[i] ~ /^(26|2e|36|3e|64|65|67)$/) i++   # segment / address-size prefixes
    wide = (i <= n && b[i] == "62") || asm ~ /%zmm|%k[0-7]([^0-9]|$)|%[xy]mm(1[6-9]|2[0-9]|3[01])/
    if (!wide || seen[fn]) next
    seen[fn] = 1
    if (fn ~ /isa_avx512/) allowed++
    else { bad++; print "LEAK\t" fn "\t" asm }
  }
  END { print "ALLOWED\t" allowed + 0; print "BAD\t" bad + 0 }' <<<"$report")
allowed=$(awk -F'\t' '$1 == "ALLOWED" { print $2 }' <<<"$result")
bad=$(awk -F'\t' '$1 == "BAD" { print $2 }' <<<"$result")
echo "check_confinement: $binary: $allowed function(s) of the AVX-512 paths use AVX-512; $bad other(s) do"
if [ "$bad" -gt 0 ]; then
  echo "AVX-512 instructions outside kernels::isa_avx512*: these would fail on an AVX2-only CPU:" >&2
  awk -F'\t' '$1 == "LEAK" { print "  " $2 "    (first: " $3 ")" }' <<<"$result" | c++filt | head -50 >&2
  exit 1
fi
if [ "$expect_wide" = "--expect-wide" ] && [ "$allowed" -eq 0 ]; then
  echo "check_confinement: no AVX-512 code found at all, though the build has the AVX-512 paths" >&2
  exit 1
fi
