#!/usr/bin/env bash
# Throughput of the demo service's GET /kv/x (in-memory store) against a bare axum hello server,
# loaded in the same run by the same client (wrk) with the same settings. Prints both
# throughputs, p50/p99 and the ratio (goal: ratio >= 0.7).
#   usage: demo/bench/throughput.sh [seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }

cargo build --release -q -p tidescale-demo --bin demo-service --example bare-hello
bin=target/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

start() { # name command... -> prints URL
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$tmp/$name.out" ] && { head -1 "$tmp/$name.out"; return; }
    sleep 0.05
  done
  echo "$name did not start" >&2; exit 1
}

hello=$(start hello "$bin/examples/bare-hello")
demo=$(start demo "$bin/demo-service" --listen 127.0.0.1:0 --log-format json)
curl -fsS -X PUT -H 'content-type: application/json' -d '{"v":1}' "$demo/kv/x" >/dev/null

run() { # id label url
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$3/kv/x" >"$tmp/$1.wrk"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$tmp/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$tmp/$1.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$tmp/$1.wrk")
  printf '%-28s %12s req/s   p50 %-9s p99 %s\n' "$2" "$rps" "$p50" "$p99"
  echo "$rps" >"$tmp/$1.rps"
}

echo "wrk -t1 -c$conns -d${secs}s, same machine, one run:"
run hello "bare axum hello" "$hello"
run demo "demo-service GET /kv/x" "$demo"
awk -v a="$(cat "$tmp/demo.rps")" -v b="$(cat "$tmp/hello.rps")" \
  'BEGIN { r = a / b; printf "ratio demo/hello: %.2f (goal >= 0.70) %s\n", r, (r >= 0.7 ? "OK" : "BELOW GOAL") }'
