#!/usr/bin/env bash
# Several `bifurcate serve` replicas on loopback behind HAProxy, routed by
# prompt prefix (deploy/haproxy/haproxy.cfg; README "One machine to several").
#
#   scripts/cluster.sh up     [-k K] [-m MODEL] [--port P] [--threads T] [--balance prefix|roundrobin] [-- SERVE-ARGS...]
#   scripts/cluster.sh status
#   scripts/cluster.sh down
#
# up starts K replicas (default 3) on ports P+1..P+K and HAProxy on P
# (default 8080; its stats page on P+324), waits until every replica
# answers /health with 200 and the balancer forwards, and prints the
# address. Everything it starts is recorded by PID in the state directory
# (--dir, default build/cluster/): logs, the generated haproxy.cfg, *.pid.
# down stops exactly those processes (SIGTERM, so replicas drain; SIGKILL
# after --drain-seconds + 10 s). Both are idempotent: up on a running
# cluster with the same settings does nothing, down on a stopped one too.
# The program is build/bifurcate unless BIFURCATE_BIN says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

command="${1:-}"; [ $# -gt 0 ] && shift
replicas=3 model="" port=8080 threads=1 balance=prefix dir=build/cluster serve_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -k) replicas="$2"; shift 2 ;;
    -m) model="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --balance) balance="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "cluster.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || die "-k must be a positive integer, got '$replicas'"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ $((port + replicas)) -le 65535 ] ||
  die "--port must leave room for $replicas replica ports in 1024..65535, got '$port'"
case "$balance" in prefix|roundrobin) ;; *) die "--balance must be prefix or roundrobin, got '$balance'" ;; esac
bin="${BIFURCATE_BIN:-build/bifurcate}"
stats_port=$((port + 324))

# A PID file's process, if it is still the one we started (its command line
# contains $2), so a recycled PID is never signalled.
live_pid() {
  local file="$1" name="$2" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
  echo "$pid"
}

pid_files() { ls "$dir"/*.pid 2>/dev/null || true; }

# What a recorded process's command line contains: haproxy, or the program
# the replicas were started with (recorded by up).
process_name() {
  case "$(basename "$1")" in
    haproxy.pid) echo haproxy ;;
    *) cat "$dir/program" 2>/dev/null || echo bifurcate ;;
  esac
}

http_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

cluster_down() {
  local pids=() f pid
  for f in $(pid_files); do
    if pid="$(live_pid "$f" "$(process_name "$f")")"; then pids+=("$pid"); kill -TERM "$pid" 2>/dev/null || true; fi
  done
  local deadline=$((SECONDS + 40))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$dir"/*.pid "$dir/settings" "$dir/program"
  [ ${#pids[@]} -gt 0 ] && echo "cluster.sh: stopped ${#pids[@]} process(es)" >&2
  return 0
}

cluster_status() {
  local f pid up=0 total=0
  for f in $(pid_files); do
    total=$((total + 1))
    if pid="$(live_pid "$f" "$(process_name "$f")")"; then
      up=$((up + 1))
      local name; name="$(basename "$f" .pid)"
      local p; p="$(cat "$dir/$name.port" 2>/dev/null || echo '?')"
      local health=""; [ "$name" != haproxy ] && health=" health $(http_status "http://127.0.0.1:$p/health")"
      echo "$name pid $pid port $p$health"
    else
      echo "$(basename "$f" .pid) not running"
    fi
  done
  [ $total -eq 0 ] && { echo "no cluster in $dir"; return 1; }
  [ $up -eq $total ]
}

# The balancer's configuration: the committed file with this cluster's ports
# and replicas.
write_config() {
  local servers_hash="" servers_track="" i
  for i in $(seq 1 "$replicas"); do
    servers_hash+="  server replica$i 127.0.0.1:$((port + i)) check"$'\n'
    servers_track+="  server replica$i 127.0.0.1:$((port + i)) track by_prefix/replica$i"$'\n'
  done
  awk -v hash="$servers_hash" -v track="$servers_track" -v port="$port" -v stats="$stats_port" -v balance="$balance" '
    /# servers begin/ { print; skip = 1; block++; printf "%s", (block == 1 ? hash : track); next }
    /# servers end/   { skip = 0 }
    skip { next }
    /^  bind 127.0.0.1:8080$/ { print "  bind 127.0.0.1:" port; next }
    /^  bind 127.0.0.1:8404$/ { print "  bind 127.0.0.1:" stats; next }
    /^  balance hash var\(txn.prefix_key\)$/ && balance == "roundrobin" { print "  balance roundrobin"; next }
    { print }' deploy/haproxy/haproxy.cfg >"$dir/haproxy.cfg"
}

cluster_up() {
  command -v haproxy >/dev/null || die "haproxy is not installed (scripts/install-deps.sh installs it)"
  command -v curl >/dev/null || die "curl is not installed (scripts/install-deps.sh installs it)"
  [ -x "$bin" ] || die "$bin not found: build first (scripts/build.sh release) or set BIFURCATE_BIN"
  mkdir -p "$dir"
  local settings="k=$replicas m=$model port=$port threads=$threads balance=$balance args=${serve_args[*]:-}"
  if [ -f "$dir/settings" ] && [ "$(cat "$dir/settings")" = "$settings" ] && cluster_status >/dev/null; then
    echo "cluster.sh: already up at http://127.0.0.1:$port ($replicas replicas)" >&2
    return 0
  fi
  cluster_down
  echo "$settings" >"$dir/settings"
  echo "$bin serve" >"$dir/program"
  local i model_args=()
  [ -n "$model" ] && model_args=(-m "$model")
  for i in $(seq 1 "$replicas"); do
    "$bin" serve "${model_args[@]}" --host 127.0.0.1 --port $((port + i)) --threads "$threads" "${serve_args[@]}" \
      >"$dir/replica$i.log" 2>&1 </dev/null &
    echo $! >"$dir/replica$i.pid"
    echo $((port + i)) >"$dir/replica$i.port"
  done
  write_config
  haproxy -c -q -f "$dir/haproxy.cfg" || die "the generated $dir/haproxy.cfg is invalid"
  haproxy -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 </dev/null &
  echo $! >"$dir/haproxy.pid"
  echo "$port" >"$dir/haproxy.port"

  local deadline=$((SECONDS + ${CLUSTER_START_TIMEOUT:-180}))
  for i in $(seq 1 "$replicas"); do
    until [ "$(http_status "http://127.0.0.1:$((port + i))/health")" = 200 ]; do
      live_pid "$dir/replica$i.pid" "$bin serve" >/dev/null ||
        { tail -5 "$dir/replica$i.log" >&2; cluster_down; die "replica $i exited while starting (log above)"; }
      [ $SECONDS -lt $deadline ] || { cluster_down; die "replica $i not healthy in time"; }
      sleep 0.3
    done
  done
  # The balancer needs `rise` good checks before it forwards.
  until [ "$(http_status "http://127.0.0.1:$port/health")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { cluster_down; die "haproxy does not forward in time ($dir/haproxy.log)"; }
    sleep 0.3
  done
  echo "cluster.sh: up at http://127.0.0.1:$port ($replicas replicas, balance $balance; stats http://127.0.0.1:$stats_port/stats)" >&2
}

case "$command" in
  up) cluster_up ;;
  down) cluster_down ;;
  status) cluster_status ;;
  *) usage ;;
esac
