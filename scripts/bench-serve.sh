#!/usr/bin/env bash
# The HTTP serving benchmark: the shared-prefix workload of `bifurcate
# bench-serve` run in process and then over loopback HTTP against `bifurcate
# serve`, once as is (bifurcated attention + prefix cache: "tree") and once
# with --no-prefix-cache --attention replicated ("replicated"); prints one
# markdown table (TTFT, inter-token latency, throughput, cache hit rate, and
# HTTP throughput over in-process). Files go to -o DIR (build/bench-serve/);
# the table of several runs: node bench/serve_http.mjs --report DIR1 DIR2 ...
# The server's and the client's CPU seconds are reported apart (they share
# this machine's cores), and tokens per server CPU second beside tokens per
# wall second: on a loaded machine the wall clock measures the neighbours.
#
#   scripts/bench-serve.sh                      # the 7b-mha-2l F16 model (created once), 2 x 4 requests
#   scripts/bench-serve.sh -m model.gguf -G 4 -Q 8 -S 2048 -U 64 -n 4 -T 64 -R 0,2 -j 2 -o build/bench-serve/run1
set -euo pipefail
cd "$(dirname "$0")/.."
model="" G=2 Q=4 S=1024 U=32 N=4 T=32 R=0 J=0 out=build/bench-serve
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model="$2" ;; -G) G="$2" ;; -Q) Q="$2" ;; -S) S="$2" ;; -U) U="$2" ;; -n) N="$2" ;; -T) T="$2" ;;
    -R) R="$2" ;; -j) J="$2" ;; -o) out="$2" ;;
    *) echo "bench-serve.sh: unknown flag '$1' (see the top of this script)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -x build/bifurcate ] || scripts/build.sh release
mkdir -p "$out"
model_flag=()
[ -n "$model" ] && model_flag=(-m "$model")
# In process, one process per mode, its CPU seconds (user, system) beside it.
TIMEFORMAT='%U %S'
for mode in tree replicated; do
  { time build/bifurcate bench-serve "${model_flag[@]}" -G "$G" -Q "$Q" -S "$S" -U "$U" -n "$N" -T "$T" -R "$R" \
      --threads "$J" --modes "$mode" --workload-out "$out/workload.jsonl" --json "$out/inprocess-$mode.json" \
      >/dev/null 2>"$out/inprocess-$mode.log"; } 2>"$out/inprocess-$mode.cpu"
done
[ -n "$model" ] || model=build/models/7b-mha-2l-f16-llama-spm.gguf

for mode in tree replicated; do
  flags=()
  [ "$mode" = replicated ] && flags=(--no-prefix-cache --attention replicated)
  build/bifurcate serve -m "$model" --port 0 --threads "$J" --max-n 1024 --max-tokens 1000000 "${flags[@]}" \
    2>"$out/serve-$mode.log" &
  pid=$!
  url=""
  for _ in $(seq 600); do
    url=$(sed -n 's/^listening on \(http:.*\)$/\1/p' "$out/serve-$mode.log")
    [ -n "$url" ] && node -e "fetch('$url/health').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))" && break
    sleep 0.1
  done
  if ! node bench/serve_http.mjs --url "$url" --workload "$out/workload.jsonl" --label "$mode" \
      --json "$out/http-$mode.json" --server-pid "$pid"; then
    kill -TERM "$pid"  # not left running without its client
    exit 1
  fi
  kill -TERM "$pid"
  wait "$pid"
done
node bench/serve_http.mjs --report "$out" | tee "$out/table.md"
