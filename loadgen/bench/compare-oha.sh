#!/usr/bin/env bash
# Compares loadgen's maximum throughput with oha's against the same trivial server, in
# alternating pairs (scripts/lib/bench.sh): the median of the per-pair ratios loadgen/oha with its
# min–max, each tool's median throughput and client CPU time per 100,000 requests. Then measures
# loadgen's peak resident memory at a constant 20,000 requests per second.
#
# Usage: loadgen/bench/compare-oha.sh
# Environment:
#   OHA=path        oha binary (default: `oha` on PATH, else `cargo install oha --locked`)
#   REQUESTS=N      requests per max-rate run (default 150000)
#   SECONDS_EACH=N  length of the 20k rps run (default 10)
#   PAIRS=N         alternating loadgen/oha pairs (default 5)
#   CONNECTIONS=N   connections for the max-rate runs (default 50, oha's default)
#   PORT=N          server port on 127.0.0.1 (default 18181)
#   SERVER_THREADS=N  worker threads of the hello server (default 1)
set -euo pipefail

cd "$(dirname "$0")/../.."
source scripts/lib/bench.sh
SECONDS_EACH=${SECONDS_EACH:-10}
REQUESTS=${REQUESTS:-150000}
PAIRS=${PAIRS:-${ROUNDS:-5}}
CONNECTIONS=${CONNECTIONS:-50}
PORT=${PORT:-18181}
SERVER_THREADS=${SERVER_THREADS:-1}
URL="http://127.0.0.1:${PORT}"
TARGET_DIR=${CARGO_TARGET_DIR:-target}

bench_init compare-oha
echo "== building loadgen and the hello server (release)"
cargo build --release -q -p tidescale-loadgen --bin loadgen --example hello
LOADGEN="${TARGET_DIR}/release/loadgen"
HELLO="${TARGET_DIR}/release/examples/hello"

if [[ -z "${OHA:-}" ]]; then
    if command -v oha >/dev/null 2>&1; then
        OHA=$(command -v oha)
    elif [[ -x "${TARGET_DIR}/oha/bin/oha" ]]; then
        OHA="${TARGET_DIR}/oha/bin/oha"
    else
        echo "== oha not found: installing it with cargo install oha --locked"
        cargo install oha --locked --root "${TARGET_DIR}/oha"
        OHA="${TARGET_DIR}/oha/bin/oha"
    fi
fi
echo "== oha: ${OHA} ($("${OHA}" --version))"

bench_start LISTENING hello "${HELLO}" "127.0.0.1:${PORT}" "${SERVER_THREADS}"
echo "== server ${LISTENING}"

# Pulls a number out of JSON text: json_number KEY < json
json_number() {
    grep -o "\"$1\"[[:space:]]*:[[:space:]]*[0-9.eE+-]*" | head -n1 | sed 's/.*:[[:space:]]*//'
}

# Both tools send the same fixed number of requests per run; throughput is each tool's own
# figure, and CPU seconds (user + system, from /usr/bin/time) show the client's cost per request,
# which other work on the machine disturbs less than throughput.
TIMES="${BENCH_TMP}/times"
cpu_of() { awk '{ print $1 + $2 }' "$1"; }
OHA_CPU=()
LOADGEN_CPU=()
LOADGEN_ERRORS=0
run_oha() {
    local json
    json=$(/usr/bin/time -o "${TIMES}" -f "%U %S" "${OHA}" -n "${REQUESTS}" \
        -c "${CONNECTIONS}" --no-tui --output-format json "${URL}/")
    BENCH_VALUE=$(json_number requestsPerSec <<<"${json}")
    OHA_CPU+=("$(cpu_of "${TIMES}")")
    printf "   oha     %8.0f req/s (cpu %.2f s)\n" "${BENCH_VALUE}" "${OHA_CPU[-1]}"
}
run_loadgen() {
    local json errors
    json=$(/usr/bin/time -o "${TIMES}" -f "%U %S" "${LOADGEN}" --url "${URL}" --rate max \
        -c "${CONNECTIONS}" --duration 10m --max-requests "${REQUESTS}" --json)
    BENCH_VALUE=$(json_number achieved_rps <<<"${json}")
    LOADGEN_CPU+=("$(cpu_of "${TIMES}")")
    errors=$(json_number error_total <<<"${json}")
    LOADGEN_ERRORS=$((LOADGEN_ERRORS + errors))
    printf "   loadgen %8.0f req/s (cpu %.2f s, errors %d)\n" "${BENCH_VALUE}" "${LOADGEN_CPU[-1]}" "${errors}"
}

echo "== ${REQUESTS} requests per run, ${CONNECTIONS} connections, maximum rate; A = loadgen, B = oha"
bench_pairs "max throughput loadgen / oha" "${PAIRS}" run_loadgen run_oha 0.8
OHA_CPU_MED=$(bench_median "${OHA_CPU[@]}")
LOADGEN_CPU_MED=$(bench_median "${LOADGEN_CPU[@]}")

echo "== loadgen: ${SECONDS_EACH}s at a constant 20000 rps (open loop), sampling VmHWM"
RSS_JSON_FILE="${BENCH_TMP}/rate.json"
"${LOADGEN}" --url "${URL}" --rate 20000 --duration "${SECONDS_EACH}s" --json >"${RSS_JSON_FILE}" &
LG_PID=$!
PEAK_KB=0
while kill -0 "${LG_PID}" 2>/dev/null; do
    HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/${LG_PID}/status" 2>/dev/null || true)
    if [[ -n "${HWM}" && "${HWM}" -gt "${PEAK_KB}" ]]; then PEAK_KB=${HWM}; fi
    sleep 0.1
done
wait "${LG_PID}"
RATE_JSON=$(cat "${RSS_JSON_FILE}")
RATE_ACHIEVED=$(json_number achieved_rps <<<"${RATE_JSON}")
RATE_P99=$(grep -o '"p99":[0-9.]*' <<<"${RATE_JSON}" | head -n1 | cut -d: -f2)
RATE_DROPPED=$(json_number dropped <<<"${RATE_JSON}")
RATE_LATE=$(json_number late <<<"${RATE_JSON}")

printf "\n%-40s %s req/s\n" "oha max throughput" "$(bench_stats "${BENCH_B[@]}")"
printf "%-40s %s req/s (errors %d)\n" "loadgen max throughput" "$(bench_stats "${BENCH_A[@]}")" "${LOADGEN_ERRORS}"
printf "%-40s %s over %d pairs (goal >= 0.80)\n" "ratio loadgen/oha" "$(bench_stats "${BENCH_R[@]}")" "${PAIRS}"
awk -v n="${REQUESTS}" -v ocpu="${OHA_CPU_MED}" -v lcpu="${LOADGEN_CPU_MED}" \
    -v kb="${PEAK_KB}" -v ach="${RATE_ACHIEVED}" -v p99="${RATE_P99}" \
    -v dropped="${RATE_DROPPED}" -v late="${RATE_LATE}" 'BEGIN {
    printf "%-40s %.2f s oha, %.2f s loadgen (ratio %.2f)\n", "client CPU per 100k requests (median)", ocpu * 100000 / n, lcpu * 100000 / n, lcpu / ocpu
    printf "%-40s %.1f MiB (goal <= 50)\n", "loadgen peak RSS at 20k rps (VmHWM)", kb / 1024
    printf "%-40s %.0f req/s, p99 %.2f ms, dropped %d, late %d\n", "loadgen at 20k rps achieved", ach, p99, dropped, late
}'
