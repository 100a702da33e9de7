#!/usr/bin/env bash
# Compares loadgen's maximum throughput with oha's against the same trivial server, in one run,
# and measures loadgen's peak resident memory at a constant 20,000 requests per second.
# The two tools take turns for several rounds so that noise from other work on the machine hits
# both alike; the medians and their ratio are reported.
#
# Usage: loadgen/bench/compare-oha.sh
# Environment:
#   OHA=path        oha binary (default: `oha` on PATH, else `cargo install oha --locked`)
#   REQUESTS=N      requests per max-rate run (default 150000)
#   SECONDS_EACH=N  length of the 20k rps run (default 10)
#   ROUNDS=N        alternating oha/loadgen rounds (default 4)
#   CONNECTIONS=N   connections for the max-rate runs (default 50, oha's default)
#   PORT=N          server port on 127.0.0.1 (default 18181)
#   SERVER_THREADS=N  worker threads of the hello server (default 1)
set -euo pipefail

cd "$(dirname "$0")/../.."
SECONDS_EACH=${SECONDS_EACH:-10}
REQUESTS=${REQUESTS:-150000}
ROUNDS=${ROUNDS:-4}
CONNECTIONS=${CONNECTIONS:-50}
PORT=${PORT:-18181}
SERVER_THREADS=${SERVER_THREADS:-1}
URL="http://127.0.0.1:${PORT}"
TARGET_DIR=${CARGO_TARGET_DIR:-target}

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "== building loadgen and the hello server (release)"
cargo build --release -q -p tidescale-loadgen --bin loadgen --example hello
LOADGEN="${TARGET_DIR}/release/loadgen"
HELLO="${TARGET_DIR}/release/examples/hello"

if [[ -z "${OHA:-}" ]]; then
    if command -v oha >/dev/null 2>&1; then
        OHA=$(command -v oha)
    else
        echo "== oha not found: installing it with cargo install oha --locked"
        cargo install oha --locked --root "${TARGET_DIR}/oha"
        OHA="${TARGET_DIR}/oha/bin/oha"
    fi
fi
echo "== oha: ${OHA} ($("${OHA}" --version))"

"${HELLO}" "127.0.0.1:${PORT}" "${SERVER_THREADS}" >/dev/null &
SERVER_PID=$!
trap 'kill ${SERVER_PID} 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then break; fi
    sleep 0.1
done

# Pulls a number out of JSON text: json_number KEY < json
json_number() {
    grep -o "\"$1\"[[:space:]]*:[[:space:]]*[0-9.eE+-]*" | head -n1 | sed 's/.*:[[:space:]]*//'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Both tools send the same fixed number of requests per round; throughput is each tool's own
# figure, and CPU seconds (user + system, from /usr/bin/time) show the client's cost per request,
# which other work on the machine disturbs less than throughput.
cpu_of() { awk '{ print $1 + $2 }' "$1"; }
OHA_ALL=()
LOADGEN_ALL=()
OHA_CPU=()
LOADGEN_CPU=()
LOADGEN_ERRORS=0
TIMES=$(mktemp)
run_oha() {
    OHA_ALL+=("$(/usr/bin/time -o "${TIMES}" -f "%U %S" "${OHA}" -n "${REQUESTS}" \
        -c "${CONNECTIONS}" --no-tui --output-format json "${URL}/" | json_number requestsPerSec)")
    OHA_CPU+=("$(cpu_of "${TIMES}")")
}
run_loadgen() {
    local json
    json=$(/usr/bin/time -o "${TIMES}" -f "%U %S" "${LOADGEN}" --url "${URL}" --rate max \
        -c "${CONNECTIONS}" --duration 10m --max-requests "${REQUESTS}" --json)
    LOADGEN_ALL+=("$(json_number achieved_rps <<<"${json}")")
    LOADGEN_CPU+=("$(cpu_of "${TIMES}")")
    LOADGEN_ERRORS=$((LOADGEN_ERRORS + $(json_number error_total <<<"${json}")))
}
for round in $(seq 1 "${ROUNDS}"); do
    echo "== round ${round}/${ROUNDS}: ${REQUESTS} requests each, ${CONNECTIONS} connections, maximum rate"
    # Who goes first alternates, so a burst of outside work does not always hit the same tool.
    if (( round % 2 )); then run_oha; run_loadgen; else run_loadgen; run_oha; fi
    printf "   oha %.0f req/s (cpu %.2f s), loadgen %.0f req/s (cpu %.2f s)\n" \
        "${OHA_ALL[-1]}" "${OHA_CPU[-1]}" "${LOADGEN_ALL[-1]}" "${LOADGEN_CPU[-1]}"
done
rm -f "${TIMES}"
OHA_RPS=$(printf "%s\n" "${OHA_ALL[@]}" | median)
LOADGEN_RPS=$(printf "%s\n" "${LOADGEN_ALL[@]}" | median)
OHA_CPU_MED=$(printf "%s\n" "${OHA_CPU[@]}" | median)
LOADGEN_CPU_MED=$(printf "%s\n" "${LOADGEN_CPU[@]}" | median)

RATE_SECONDS=${SECONDS_EACH}
echo "== loadgen: ${RATE_SECONDS}s at a constant 20000 rps (open loop), sampling VmHWM"
RSS_JSON_FILE=$(mktemp)
"${LOADGEN}" --url "${URL}" --rate 20000 --duration "${RATE_SECONDS}s" --json >"${RSS_JSON_FILE}" &
LG_PID=$!
PEAK_KB=0
while kill -0 "${LG_PID}" 2>/dev/null; do
    HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/${LG_PID}/status" 2>/dev/null || true)
    if [[ -n "${HWM}" && "${HWM}" -gt "${PEAK_KB}" ]]; then PEAK_KB=${HWM}; fi
    sleep 0.1
done
wait "${LG_PID}"
RATE_JSON=$(cat "${RSS_JSON_FILE}")
rm -f "${RSS_JSON_FILE}"
RATE_ACHIEVED=$(json_number achieved_rps <<<"${RATE_JSON}")
RATE_P99=$(grep -o '"p99":[0-9.]*' <<<"${RATE_JSON}" | head -n1 | cut -d: -f2)
RATE_DROPPED=$(json_number dropped <<<"${RATE_JSON}")
RATE_LATE=$(json_number late <<<"${RATE_JSON}")

awk -v oha="${OHA_RPS}" -v lg="${LOADGEN_RPS}" -v errs="${LOADGEN_ERRORS}" \
    -v kb="${PEAK_KB}" -v ach="${RATE_ACHIEVED}" -v p99="${RATE_P99}" \
    -v dropped="${RATE_DROPPED}" -v late="${RATE_LATE}" -v n="${REQUESTS}" \
    -v ocpu="${OHA_CPU_MED}" -v lcpu="${LOADGEN_CPU_MED}" 'BEGIN {
    printf "\n%-40s %12.0f req/s\n", "oha max throughput (median)", oha
    printf "%-40s %12.0f req/s (errors %d)\n", "loadgen max throughput (median)", lg, errs
    printf "%-40s %12.2f (goal >= 0.80)\n", "ratio of medians loadgen/oha", lg / oha
    printf "%-40s %12.2f s oha, %.2f s loadgen (ratio %.2f)\n", "client CPU per 100k requests (median)", ocpu * 100000 / n, lcpu * 100000 / n, lcpu / ocpu
    printf "%-40s %12.1f MiB (goal <= 50)\n", "loadgen peak RSS at 20k rps (VmHWM)", kb / 1024
    printf "%-40s %12.0f req/s, p99 %.2f ms, dropped %d, late %d\n", "loadgen at 20k rps achieved", ach, p99, dropped, late
}'
