#!/usr/bin/env bash
# The whole test suite: installs what the tests need, builds the local Kubernetes control plane
# (Go, cached), then formatting, lints, every test (nextest; the cluster tests run against the
# control plane, which is up only for the tests and always taken down) and the doctests. This is
# the command the README gives and CI runs. Needs root (the control plane's network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-kubectl.sh

echo "== the local control plane's binaries (Go; skipped when up to date)"
scripts/build-cluster.sh

echo "== the stack is rustls+ring only"
for crate in openssl-sys native-tls aws-lc-sys; do
  if grep -q "^name = \"$crate\"" Cargo.lock; then
    echo "Cargo.lock contains $crate: the TLS stack must stay on ring" >&2
    exit 1
  fi
done

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== build the binaries the integration tests spawn"
cargo build --workspace --bins

echo "== the local control plane"
trap 'scripts/cluster.sh down' EXIT
scripts/cluster.sh up

echo "== tests"
cargo nextest run --workspace --no-fail-fast
scripts/cluster.sh down
trap - EXIT

echo "== doctests"
cargo test --workspace --doc
