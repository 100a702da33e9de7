# Shared harness of the side-by-side benchmarks (source it; it is not a command).
#
# What every benchmark script gets from it:
#  - Alternating pairs: `bench_pairs` runs subject (A) and baseline (B) in pairs whose order
#    alternates (AB, BA, AB, …), so drift in the machine's state over the run lands on both sides
#    alike, and reports the median of the per-pair ratios A/B with its min–max.
#  - Clean exits: every process started by the script carries the environment marker
#    TIDESCALE_BENCH_RUN=NAME:PID (PID = the script's own), children and grandchildren included.
#    On exit — success, failure, Ctrl-C or TERM — every process with this run's marker, and every
#    background job of the script (subshells carry no marker of their own), is stopped (TERM,
#    then KILL after 3 s). Processes are found by marker rather than by a list of PIDs kept in
#    variables, so nothing is missed when a program was started from a subshell.
#  - A check on start: processes still carrying the marker of an earlier run of the same
#    benchmark would distort the figures, so `bench_init` lists them and refuses to run (other
#    benchmarks' processes get a warning).
#
#   source scripts/lib/bench.sh
#   bench_init NAME                     temp dir in $BENCH_TMP, teardown trap, leftover check
#   bench_start VAR NAME CMD...         background CMD; VAR = the first line it prints
#   bench_wrk URL SECS CONNS [PID]      one wrk run; sets BENCH_VALUE (req/s), BENCH_P50/P99 and,
#                                       given the server's PID, BENCH_CPU_US (its CPU per request)
#   bench_pairs LABEL PAIRS FN_A FN_B [GOAL]
#                                       FN_A / FN_B run one measurement and set BENCH_VALUE;
#                                       results in BENCH_A, BENCH_B, BENCH_R (arrays) and
#                                       BENCH_RATIO (median ratio)
#   bench_stats VALUES...               prints "median [min–max]"
#   bench_load                          prints the load averages and the core count

BENCH_MARKER_VAR=TIDESCALE_BENCH_RUN

# The PIDs of processes carrying a marker, chosen by MODE. Pure bash (no forks), so the scan
# itself never puts a marked process of its own in the list; this shell is skipped.
#   exact MARKER   that marker (this run's processes)
#   other MARKER   any other marker
bench_marked_pids() {
  local mode=$1 marker=$2 f pid kv
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    while IFS= read -r -d '' kv; do
      [[ $kv == "$BENCH_MARKER_VAR="* ]] || continue
      kv=${kv#"$BENCH_MARKER_VAR="}
      if [[ $mode == exact && $kv == "$marker" ]] || [[ $mode == other && $kv != "$marker" ]]; then
        echo "$pid"
      fi
      break
    done 2>/dev/null <"$f" || true
  done
}

# Describes one process for the leftover report: PID, marker and command line.
bench_describe() {
  local pid=$1 cmd marker=""
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  marker=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep "^$BENCH_MARKER_VAR=" || true)
  echo "  pid $pid ($marker): $cmd"
}

# Starts the run: marker, temporary directory, teardown on every exit path, leftover check.
# Processes left by an earlier run of the same benchmark stop it (the next run would measure
# next to them); processes of other benchmark runs only get a warning, since a run of another
# benchmark may be going on on purpose.
bench_init() {
  BENCH_NAME=$1
  export "$BENCH_MARKER_VAR=$BENCH_NAME:$$"
  local others=() same=() pid marker
  mapfile -t others < <(bench_marked_pids other "$BENCH_NAME:$$")
  for pid in "${others[@]}"; do
    marker=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep "^$BENCH_MARKER_VAR=" || true)
    if [[ $marker == "$BENCH_MARKER_VAR=$BENCH_NAME:"* ]]; then
      same+=("$pid")
    else
      echo "warning: another benchmark's process is running, the figures may suffer:" >&2
      bench_describe "$pid" >&2
    fi
  done
  if ((${#same[@]})); then
    echo "processes left from an earlier $BENCH_NAME run are still up; stop them first:" >&2
    for pid in "${same[@]}"; do bench_describe "$pid" >&2; done
    exit 1
  fi
  echo "== $BENCH_NAME: no process left from an earlier run"
  BENCH_TMP=$(mktemp -d)
  trap bench_teardown EXIT
  # An interrupted run exits with the conventional status; the EXIT trap then tears down.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# Whether PID runs; a zombie (exited, not yet reaped) counts as gone.
bench_alive() {
  local stat
  { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Stops every process carrying this run's marker and removes the temporary directory.
bench_teardown() {
  local status=$? pids=() alive pid
  trap - INT TERM HUP
  # Bash reports each job it sees killed; those lines are the teardown itself, not news.
  exec 2>/dev/null
  mapfile -t pids < <(bench_marked_pids exact "$BENCH_NAME:$$")
  # Subshells started with `( … ) &` are forks, not programs: their /proc/PID/environ is the
  # script's own initial environment, without the marker. They are this shell's jobs, though.
  mapfile -t -O "${#pids[@]}" pids < <(jobs -p)
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 30); do
      alive=0
      for pid in "${pids[@]}"; do bench_alive "$pid" && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  # Reap what this shell started, so no zombie outlives the script either.
  wait 2>/dev/null || true
  [[ -n ${BENCH_TMP:-} ]] && rm -rf "$BENCH_TMP"
  exit "$status"
}

# Starts CMD in the background (output in $BENCH_TMP/NAME.out/.err) and waits up to 10 s for its
# first stdout line, which is stored in VAR; its PID is left in BENCH_LAST_PID. Runs in the
# caller's shell: never call it in $(…).
bench_start() {
  local var=$1 name=$2 pid
  shift 2
  "$@" >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.err" &
  pid=$!
  BENCH_LAST_PID=$pid
  for _ in $(seq 200); do
    if [[ -s $BENCH_TMP/$name.out ]]; then
      IFS= read -r "${var?}" <"$BENCH_TMP/$name.out"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it was ready: $(tail -5 "$BENCH_TMP/$name.err")" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "$name did not print its address within 10 s: $(tail -5 "$BENCH_TMP/$name.err")" >&2
  return 1
}

# CPU time (user + system) PID has used so far, in clock ticks of 10 ms.
bench_cpu_ticks() {
  local stat
  IFS= read -r stat <"/proc/$1/stat"
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}

# One wrk run (one thread, keep-alive). Sets BENCH_VALUE (req/s), BENCH_REQUESTS, BENCH_P50 and
# BENCH_P99 (as wrk prints them); with a SERVER_PID, also BENCH_CPU_US: the server's CPU time
# per request in µs, which other work on the machine disturbs much less than throughput.
# Socket errors are reported; non-2xx answers fail the run.
bench_wrk() {
  local url=$1 secs=$2 conns=$3 server=${4:-} out before=0
  out=$BENCH_TMP/wrk.last
  [[ -n $server ]] && before=$(bench_cpu_ticks "$server")
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$url" >"$out"
  BENCH_VALUE=$(awk '/^Requests\/sec/ {print $2}' "$out")
  BENCH_REQUESTS=$(awk '/requests in/ {print $1}' "$out")
  BENCH_CPU_US=
  if [[ -n $server ]]; then
    BENCH_CPU_US=$(awk -v t="$(($(bench_cpu_ticks "$server") - before))" -v n="$BENCH_REQUESTS" \
      'BEGIN { printf "%.2f", (n > 0 ? t * 10000 / n : 0) }')
  fi
  BENCH_P50=$(awk '$1=="50%" {print $2}' "$out")
  BENCH_P99=$(awk '$1=="99%" {print $2}' "$out")
  if grep -q 'Non-2xx' "$out"; then
    echo "$url: $(grep 'Non-2xx' "$out")" >&2
    return 1
  fi
  if grep -q 'Socket errors' "$out"; then echo "   $url: $(grep 'Socket errors' "$out")" >&2; fi
  [[ -n $BENCH_VALUE ]] || { echo "$url: wrk printed no throughput" >&2; return 1; }
}

# "median [min–max]" of the arguments (numbers): whole numbers from 100 up, else 3 significant
# digits.
bench_stats() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "n/a"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    f = (m >= 100 || m <= -100) ? "%.0f" : "%.3g"
    printf f " [" f "–" f "]\n", m, v[1], v[NR] }'
}

# The median alone.
bench_median() { bench_stats "$@" | cut -d' ' -f1; }

bench_load() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"; }

# Runs PAIRS alternating pairs of FN_A (subject) and FN_B (baseline), each of which performs one
# measurement and sets BENCH_VALUE. Prints every pair and a summary line: the median ratio A/B
# with its min–max and, when GOAL is given, how many pairs fell below it.
bench_pairs() {
  local label=$1 pairs=$2 fa=$3 fb=$4 goal=${5:-} i a b r misses=0
  BENCH_A=()
  BENCH_B=()
  BENCH_R=()
  echo "== $label: $pairs alternating pairs ($(bench_load))"
  for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then
      "$fa" "$i"; a=$BENCH_VALUE
      "$fb" "$i"; b=$BENCH_VALUE
    else
      "$fb" "$i"; b=$BENCH_VALUE
      "$fa" "$i"; a=$BENCH_VALUE
    fi
    r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')
    BENCH_A+=("$a")
    BENCH_B+=("$b")
    BENCH_R+=("$r")
    if [[ -n $goal ]] && awk -v r="$r" -v g="$goal" 'BEGIN { exit !(r < g) }'; then
      misses=$((misses + 1))
    fi
    printf '   pair %d/%d (%s first): A %s  B %s  ratio %.3f\n' "$i" "$pairs" \
      "$( ((i % 2)) && echo A || echo B)" "$a" "$b" "$r"
  done
  BENCH_RATIO=$(bench_median "${BENCH_R[@]}")
  printf '%s: A %s, B %s; ratio A/B %s over %d pairs' "$label" \
    "$(bench_stats "${BENCH_A[@]}")" "$(bench_stats "${BENCH_B[@]}")" \
    "$(bench_stats "${BENCH_R[@]}")" "$pairs"
  if [[ -n $goal ]]; then
    local verdict=OK
    awk -v r="$BENCH_RATIO" -v g="$goal" 'BEGIN { exit !(r < g) }' && verdict="BELOW GOAL"
    printf ' (goal >= %s: %s; %d of %d pairs below it)' "$goal" "$verdict" "$misses" "$pairs"
  fi
  printf ' [%s]\n' "$(bench_load)"
}
