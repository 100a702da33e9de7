#!/usr/bin/env bash
# Benchmarks on the local control plane: tidescale's reaction to a metric change next to the
# real HPA controller's, same run, same changes (tests/cluster_reaction.rs, ignored in the
# suite). Brings the control plane up if needed; needs root (network namespace).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
scripts/cluster.sh up
cargo nextest run --test cluster_reaction --run-ignored only --no-capture
