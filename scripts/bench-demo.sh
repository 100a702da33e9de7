#!/usr/bin/env bash
# The demo's figures: reaction to ×4 load steps, and replica-seconds at equal SLO on the spike
# and sine profiles, each against the native HPA's defaults on the same traffic.
#   usage: scripts/bench-demo.sh [OUT_DIR=target/bench-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-demo}
mkdir -p "$out"
cargo build --release -q --bin tidescale
bin=target/release/tidescale

run() { # name profile duration
  echo "== $1: --profile $2 --duration $3 --compare hpa-defaults" >&2
  "$bin" demo --profile "$2" --duration "$3" --compare hpa-defaults --quiet --report "$out/$1" >/dev/null
}
run steps steps 400s   # 10 cycles of 20 s at base load and 20 s at four times base
run spike spike 180s
run sine sine 180s

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(name):
    return {r["label"]: r for r in json.load(open(f"{out}/{name}/summary.json"))}
s = load("steps")
t, h = s["tidescale"], s["hpa-defaults"]
print(f"reaction to a x4 step (median of {len(t['reactions'])} steps): first scale-up decision "
      f"{t['median_decision_s']:.1f} s (hpa-defaults {h['median_decision_s']:.1f} s), "
      f"new replica ready {t['median_ready_s']:.1f} s (hpa-defaults {h['median_ready_s']:.1f} s)")
for name in ("spike", "sine"):
    r = load(name); t, h = r["tidescale"], r["hpa-defaults"]
    print(f"{name}: replica-seconds {t['replica_seconds']:.0f} vs {h['replica_seconds']:.0f} "
          f"({t['replica_seconds']/h['replica_seconds']:.2f}x), p95 SLO seconds {100*t['slo_share']:.1f} % vs "
          f"{100*h['slo_share']:.1f} %, failed {t['failed']} vs {h['failed']}")
PY
