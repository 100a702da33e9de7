#!/usr/bin/env bash
# Adapter benchmark on this machine, release build, in alternating pairs (scripts/lib/bench.sh):
#  1. throughput: the adapter's cached external metric GET (A) vs a bare axum + rustls "hello"
#     server (B), both loaded by wrk over HTTPS (same TLS, same settings); median ratio A/B with
#     its min–max (goal >= 0.6). wrk cannot present client certificates, so this adapter runs
#     with --insecure-dev-mode.
#  2. latency: the adapter with client-certificate authentication (AlwaysAllow) (A) and the hello
#     server (B) under an open-loop 1,000 req/s load, timed from each request's scheduled send
#     time; median p99 with its min–max (goal: the adapter's p99 <= 5 ms). The hello server's
#     figure tells the adapter's share apart from what the machine itself adds.
#  3. memory: resident set of that adapter, sampled every 100 ms while its store holds 10,000
#     series and a reader fetches the 10,000-pod list every second (goal <= 30 MiB).
#  ADAPTER_ENV (e.g. MALLOC_ARENA_MAX=2) is passed to the adapters' environment.
#   usage: [ADAPTER_ENV=...] scripts/bench-adapter.sh [seconds per run=5] [connections=32] [pairs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
secs=${1:-5}
conns=${2:-32}
pairs=${3:-5}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }

bench_init adapter
cargo build --release -q --bin tidescale --example adapter_bench
bin=${CARGO_TARGET_DIR:-target}/release
tmp=$BENCH_TMP

# Test PKI: a CA, a serving certificate for 127.0.0.1, a client certificate.
python3 - "$tmp" <<'PY'
import subprocess, sys
d = sys.argv[1]
def run(*a): subprocess.run(a, check=True, capture_output=True)
run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{d}/ca-key.pem", "-out", f"{d}/ca.pem", "-days", "2", "-subj", "/CN=bench-ca")
for name, cn, ext in (("serving", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"), ("user", "bench", "extendedKeyUsage=clientAuth")):
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{d}/{name}-key.pem", "-out", f"{d}/{name}.csr", "-subj", f"/CN={cn}")
    open(f"{d}/{name}.ext", "w").write(ext + "\n")
    run("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca-key.pem", "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", f"{d}/{name}.ext")
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # url
  for _ in $(seq 200); do
    curl -fsk "$1/readyz" >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "adapter at $1 not ready" >&2
  return 1
}

bench_start hello hello "$bin/examples/adapter_bench" hello "$tmp/serving.pem" "$tmp/serving-key.pem"
hello_pid=$BENCH_LAST_PID
bench_start backend backend "$bin/examples/adapter_bench" backend 10000
cat >"$tmp/adapter.yaml" <<YAML
interval: 5s
externalMetrics:
- name: queue_depth
  labels: {queue: orders}
  scrape: {endpoints: ["$backend/metrics"], metric: queue_depth}
customMetrics:
- name: load
  resource: pods
  namespace: bench
  prometheus: {url: "$backend", query: "load", podLabel: pod}
YAML

p1=$(free_port)
# shellcheck disable=SC2086 # ADAPTER_ENV is a list of NAME=VALUE words
env ${ADAPTER_ENV:-} "$bin/tidescale" adapter --config "$tmp/adapter.yaml" --listen "127.0.0.1:$p1" \
  --tls-cert-file "$tmp/serving.pem" --tls-private-key-file "$tmp/serving-key.pem" --insecure-dev-mode \
  >"$tmp/a1.out" 2>"$tmp/a1.err" &
a1pid=$!
p2=$(free_port)
# shellcheck disable=SC2086
env ${ADAPTER_ENV:-} "$bin/tidescale" adapter --config "$tmp/adapter.yaml" --listen "127.0.0.1:$p2" \
  --tls-cert-file "$tmp/serving.pem" --tls-private-key-file "$tmp/serving-key.pem" \
  --client-ca-file "$tmp/ca.pem" --authorization-mode AlwaysAllow \
  >"$tmp/a2.out" 2>"$tmp/a2.err" &
a2pid=$!
wait_ready "https://127.0.0.1:$p1"
wait_ready "https://127.0.0.1:$p2"
path=/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth
curl -fsk "https://127.0.0.1:$p1$path" | grep -q '"value":"42"' || { echo "adapter does not serve the metric" >&2; exit 1; }

# Besides throughput, each server's CPU time per request, which other work on the machine
# disturbs much less than throughput.
adapter_cpu=()
hello_cpu=()
wrk_side() { # label url pid
  bench_wrk "$2" "$secs" "$conns" "$3"
  printf '   %-30s %10s req/s  p50 %-8s p99 %-8s server CPU %s µs/request\n' "$1" \
    "$BENCH_VALUE" "$BENCH_P50" "$BENCH_P99" "$BENCH_CPU_US"
}
adapter_wrk() { wrk_side "adapter external metric GET" "https://127.0.0.1:$p1$path" "$a1pid"; adapter_cpu+=("$BENCH_CPU_US"); }
hello_wrk() { wrk_side "bare axum + rustls hello" "$hello/" "$hello_pid"; hello_cpu+=("$BENCH_CPU_US"); }
bench_wrk "https://127.0.0.1:$p1$path" 1 "$conns" # unmeasured warm-up of both sides
bench_wrk "$hello/" 1 "$conns"
echo "wrk -t1 -c$conns -d${secs}s per run over HTTPS (HTTP/1.1); A = adapter, B = bare hello"
bench_pairs "throughput adapter / bare TLS hello" "$pairs" adapter_wrk hello_wrk 0.6
cpu_ratios=()
for i in "${!adapter_cpu[@]}"; do
  cpu_ratios+=("$(awk -v a="${hello_cpu[$i]}" -v b="${adapter_cpu[$i]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')")
done
echo "server CPU per request: adapter $(bench_stats "${adapter_cpu[@]}") µs, bare hello" \
  "$(bench_stats "${hello_cpu[@]}") µs; efficiency hello/adapter $(bench_stats "${cpu_ratios[@]}") over $pairs pairs"

latency_side() { # label url; BENCH_VALUE = p99 in ms
  local line
  line=$("$bin/examples/adapter_bench" load "$2" 1000 "$secs" "$tmp/ca.pem" "$tmp/user.pem" "$tmp/user-key.pem")
  printf '   %-30s %s\n' "$1" "$line"
  BENCH_VALUE=$(awk '{ for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }' <<<"$line")
  if ! grep -q 'errors 0$' <<<"$line"; then echo "   $1: requests failed" >&2; fi
}
adapter_latency() { latency_side "adapter (client certificate):" "https://127.0.0.1:$p2$path"; }
hello_latency() { latency_side "bare hello:" "$hello/"; }
pods=$(curl -fsk --cert "$tmp/user.pem" --key "$tmp/user-key.pem" "https://127.0.0.1:$p2/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/load" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
echo "open loop at 1,000 req/s for ${secs}s per run, latency from the scheduled send time;" \
  "series served by the pods metric: $pods; A = adapter, B = bare hello (values: p99 ms)"
bench_pairs "latency p99 at 1,000 req/s" "$pairs" adapter_latency hello_latency
echo "adapter p99 $(bench_stats "${BENCH_A[@]}") ms over $pairs runs (goal <= 5 ms: $(
  awk -v p="$(bench_median "${BENCH_A[@]}")" 'BEGIN { print (p <= 5 ? "OK" : "ABOVE GOAL") }'))"

echo "== memory: resident set sampled every 100 ms for ${secs}s while the adapter refreshes and serves"
# Resident set sampled every 100 ms while the adapter serves and refreshes (two 10,000-series
# sources re-read every 5 s), so the figure covers whole refresh cycles, not one lucky instant.
(while kill -0 "$a2pid" 2>/dev/null; do awk '/^VmRSS/ {print $2}' "/proc/$a2pid/status"; sleep 0.1; done) >"$tmp/rss.samples" 2>/dev/null &
sampler=$!
# Meanwhile a reader fetches the whole 10,000-pod list once a second (an HPA does once per 15 s sync).
for _ in $(seq "$secs"); do
  curl -fsk --cert "$tmp/user.pem" --key "$tmp/user-key.pem" -o /dev/null \
    "https://127.0.0.1:$p2/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/load"
  sleep 1
done
kill "$sampler" 2>/dev/null || true
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$a2pid/status")
awk -v h="$hwm" '{ n++; s += $1; if ($1 > m) m = $1 } END {
  printf "adapter RSS with 10,000 series, %d samples over the run: max %.1f MiB, mean %.1f MiB (lifetime peak %.1f MiB); goal <= 30 MiB %s\n",
    n, m/1024, s/n/1024, h/1024, (m/1024 <= 30 ? "OK" : "ABOVE GOAL") }' "$tmp/rss.samples"
