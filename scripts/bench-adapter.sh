#!/usr/bin/env bash
# Adapter benchmark, one run on this machine, release build:
#  1. throughput: a bare axum + rustls "hello" server vs the adapter's cached external metric
#     GET, both loaded by wrk over HTTPS (same TLS, same settings); prints the ratio (goal >= 0.6).
#     wrk cannot present client certificates, so this adapter runs with --insecure-dev-mode.
#  2. latency: the adapter with client-certificate authentication (AlwaysAllow) under an
#     open-loop 1,000 req/s load; prints p50/p99 (goal p99 <= 5 ms).
#  3. memory: resident set of that adapter, sampled every 100 ms during the latency run while its
#     store holds 10,000 series and a reader fetches the 10,000-pod list every second (goal <= 30 MiB).
#  The 1,000 req/s load is also run against the hello server, so the adapter's p99 can be told
#  apart from what the machine itself adds. ADAPTER_ENV (e.g. MALLOC_ARENA_MAX=2) is passed to
#  the adapters' environment.
#   usage: [ADAPTER_ENV=...] scripts/bench-adapter.sh [seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin tidescale --example adapter_bench
bin=$target/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

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

start() { # name command... -> prints the first stdout line (the URL)
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$tmp/$name.out" ] && { head -1 "$tmp/$name.out"; return; }
    sleep 0.05
  done
  echo "$name did not start: $(cat "$tmp/$name.err")" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # url
  for _ in $(seq 200); do
    curl -fsk "$1/readyz" >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "adapter at $1 not ready" >&2; exit 1
}

hello=$(start hello "$bin/examples/adapter_bench" hello "$tmp/serving.pem" "$tmp/serving-key.pem")
backend=$(start backend "$bin/examples/adapter_bench" backend 10000)
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
env ${ADAPTER_ENV:-} "$bin/tidescale" adapter --config "$tmp/adapter.yaml" --listen "127.0.0.1:$p1" \
  --tls-cert-file "$tmp/serving.pem" --tls-private-key-file "$tmp/serving-key.pem" --insecure-dev-mode \
  >"$tmp/a1.out" 2>"$tmp/a1.err" &
pids+=($!)
p2=$(free_port)
env ${ADAPTER_ENV:-} "$bin/tidescale" adapter --config "$tmp/adapter.yaml" --listen "127.0.0.1:$p2" \
  --tls-cert-file "$tmp/serving.pem" --tls-private-key-file "$tmp/serving-key.pem" \
  --client-ca-file "$tmp/ca.pem" --authorization-mode AlwaysAllow \
  >"$tmp/a2.out" 2>"$tmp/a2.err" &
a2pid=$!
pids+=($a2pid)
wait_ready "https://127.0.0.1:$p1"
wait_ready "https://127.0.0.1:$p2"
path=/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth
curl -fsk "https://127.0.0.1:$p1$path" | grep -q '"value":"42"' || { echo "adapter does not serve the metric" >&2; exit 1; }

run() { # id label url
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$3" >"$tmp/$1.wrk"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$tmp/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$tmp/$1.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$tmp/$1.wrk")
  printf '%-40s %12s req/s   p50 %-9s p99 %s\n' "$2" "$rps" "$p50" "$p99"
  grep -q 'Non-2xx' "$tmp/$1.wrk" && { echo "$2: non-2xx answers" >&2; exit 1; }
  echo "$rps" >"$tmp/$1.rps"
}

echo "== throughput: wrk -t1 -c$conns -d${secs}s over HTTPS (HTTP/1.1), same machine, one run"
run hello "bare axum + rustls hello" "$hello/"
run adapter "adapter external metric GET" "https://127.0.0.1:$p1$path"
awk -v a="$(cat "$tmp/adapter.rps")" -v b="$(cat "$tmp/hello.rps")" \
  'BEGIN { r = a / b; printf "ratio adapter/hello: %.2f (goal >= 0.60) %s\n", r, (r >= 0.6 ? "OK" : "BELOW GOAL") }'

echo "== load average before the latency run: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores, shared)"
echo "== latency at 1,000 req/s (open loop, client certificate authentication, 10,000 series in the store)"
pods=$(curl -fsk --cert "$tmp/user.pem" --key "$tmp/user-key.pem" "https://127.0.0.1:$p2/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/load" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
echo "series served by the pods metric: $pods"
printf '%-40s ' "bare hello:"
"$bin/examples/adapter_bench" load "$hello/" 1000 "$secs" "$tmp/ca.pem" "$tmp/user.pem" "$tmp/user-key.pem"
printf '%-40s ' "adapter external metric GET:"
"$bin/examples/adapter_bench" load "https://127.0.0.1:$p2$path" 1000 "$secs" "$tmp/ca.pem" "$tmp/user.pem" "$tmp/user-key.pem"
echo "== memory: resident set sampled every 100 ms for ${secs}s while the adapter refreshes and serves"
# Resident set sampled every 100 ms while the adapter serves and refreshes (two 10,000-series
# sources re-read every 5 s), so the figure covers whole refresh cycles, not one lucky instant.
( while kill -0 "$a2pid" 2>/dev/null; do awk '/^VmRSS/ {print $2}' "/proc/$a2pid/status"; sleep 0.1; done ) >"$tmp/rss.samples" 2>/dev/null &
sampler=$!
pids+=($sampler)
# Meanwhile a reader fetches the whole 10,000-pod list once a second (an HPA does once per 15 s sync).
( for _ in $(seq "$secs"); do curl -fsk --cert "$tmp/user.pem" --key "$tmp/user-key.pem" -o /dev/null \
    "https://127.0.0.1:$p2/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/load"; sleep 1; done ) &
pids+=($!)
reader=$!
wait "$reader" 2>/dev/null || true
kill "$sampler" 2>/dev/null || true
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$a2pid/status")
awk -v h="$hwm" '{ n++; s += $1; if ($1 > m) m = $1 } END {
  printf "adapter RSS with 10,000 series, %d samples over the run: max %.1f MiB, mean %.1f MiB (lifetime peak %.1f MiB); goal <= 30 MiB %s\n",
    n, m/1024, s/n/1024, h/1024, (m/1024 <= 30 ? "OK" : "ABOVE GOAL") }' "$tmp/rss.samples"
