#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then formatting, lints, every test
# (nextest) and the doctests. This is the command the README gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-kubectl.sh

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

echo "== tests"
cargo nextest run --workspace --no-fail-fast

echo "== doctests"
cargo test --workspace --doc
