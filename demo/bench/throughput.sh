#!/usr/bin/env bash
# Throughput of the demo service's GET /kv/x (in-memory store) against a bare axum server that
# answers the same route with a fixed body, both loaded by the same client (wrk, one thread) with
# the same settings, in alternating pairs (scripts/lib/bench.sh). Prints every pair and the median
# ratio demo/bare with its min–max (goal: median >= 0.7).
#   usage: demo/bench/throughput.sh [seconds per run=5] [connections=32] [pairs=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/bench.sh
secs=${1:-5}
conns=${2:-32}
pairs=${3:-5}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }

bench_init demo-throughput
cargo build --release -q -p tidescale-demo --bin demo-service --example bare-hello
bin=${CARGO_TARGET_DIR:-target}/release

bench_start hello hello "$bin/examples/bare-hello"
hello_pid=$BENCH_LAST_PID
bench_start demo demo "$bin/demo-service" --listen 127.0.0.1:0 --log-format json
demo_pid=$BENCH_LAST_PID
curl -fsS -X PUT -H 'content-type: application/json' -d '{"v":1}' "$demo/kv/x" >/dev/null

# Besides throughput, each side's CPU time per request: on a machine shared with other work,
# throughput follows how much CPU the server was given; CPU per request much less so.
demo_cpu=()
hello_cpu=()
side() { # label url pid
  bench_wrk "$2/kv/x" "$secs" "$conns" "$3"
  printf '   %-24s %10s req/s  p50 %-8s p99 %-8s server CPU %s µs/request\n' "$1" \
    "$BENCH_VALUE" "$BENCH_P50" "$BENCH_P99" "$BENCH_CPU_US"
}
demo_side() { side "demo-service GET /kv/x" "$demo" "$demo_pid"; demo_cpu+=("$BENCH_CPU_US"); }
hello_side() { side "bare axum" "$hello" "$hello_pid"; hello_cpu+=("$BENCH_CPU_US"); }

# One unmeasured second on each side first, so neither pays for first-touch costs in a pair.
bench_wrk "$demo/kv/x" 1 "$conns"
bench_wrk "$hello/kv/x" 1 "$conns"

echo "wrk -t1 -c$conns -d${secs}s per run; A = demo-service, B = bare axum"
bench_pairs "demo-service / bare axum" "$pairs" demo_side hello_side 0.7
cpu_ratios=()
for i in "${!demo_cpu[@]}"; do
  cpu_ratios+=("$(awk -v a="${hello_cpu[$i]}" -v b="${demo_cpu[$i]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')")
done
echo "server CPU per request: demo-service $(bench_stats "${demo_cpu[@]}") µs, bare axum" \
  "$(bench_stats "${hello_cpu[@]}") µs; efficiency bare/demo $(bench_stats "${cpu_ratios[@]}") over $pairs pairs"
