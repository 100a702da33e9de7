#!/usr/bin/env bash
# The demo's figures, each effect measured on its own, on the same traffic:
#   - the long diurnal profile (15 min) under tidescale, the native HPA out of the box
#     (hpa-defaults: its cadence and pipeline AND its default behaviour) and the HPA's cadence
#     with the policy's own behaviour (hpa-same-behavior: what tidescale's loop adds);
#   - optionally (BENCH_DEMO_SHORT=1) spike and sine against tidescale-defaults (tidescale's
#     loop with the HPA's default behaviour: what the behaviour adds) and hpa-defaults.
#   usage: scripts/bench-demo.sh [OUT_DIR=target/bench-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-demo}
mkdir -p "$out"
cargo build --release -q --bin tidescale
bin=target/release/tidescale

run() { # name profile compare [duration]
  local extra=()
  if [ $# -ge 4 ]; then extra=(--duration "$4"); fi
  echo "== $1: --profile $2 --compare $3 ${extra[*]}" >&2
  "$bin" demo --profile "$2" --compare "$3" "${extra[@]}" --quiet --report "$out/$1" >/dev/null
}
run diurnal diurnal hpa-defaults,hpa-same-behavior
if [ "${BENCH_DEMO_SHORT:-0}" = 1 ]; then
  run spike spike tidescale-defaults,hpa-defaults 180s
  run sine sine tidescale-defaults,hpa-defaults 180s
fi

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    return {r["label"]: r for r in json.load(open(f"{out}/{name}/summary.json"))}
def react(r):
    m = r["median_decision_s"]
    med = "—" if m is None else f"{m:.1f} s"
    return f"{med} (n={r['steps'] - len(r['missed_steps'])} of {r['steps']})"
for name in ("diurnal", "spike", "sine"):
    if not os.path.exists(f"{out}/{name}/summary.json"):
        continue
    runs = load(name)
    t = runs["tidescale"]
    print(f"{name}: tidescale replica-seconds {t['replica_seconds']:.0f}, SLO {100*t['slo_share']:.1f} %, "
          f"reaction {react(t)}, failed {t['failed']} (dropped {t['dropped']}), late {t['late']}")
    for label, b in runs.items():
        if label == "tidescale":
            continue
        print(f"  vs {label}: replica-seconds {b['replica_seconds']:.0f} "
              f"({t['replica_seconds']/b['replica_seconds']:.2f}x), SLO {100*b['slo_share']:.1f} %, "
              f"reaction {react(b)}, failed {b['failed']} (dropped {b['dropped']}), late {b['late']}")
PY
