#!/usr/bin/env bash
# Builds the release binaries for shipping: each binary without its debug sections (symbols kept,
# so a backtrace still names every function), and next to it BIN.debug with the line tables,
# linked by .gnu_debuglink. With BIN.debug beside the binary (or installed under
# /usr/lib/debug), backtraces show file:line as the unstripped build does; without it they show
# function names only.
#   usage: scripts/dist.sh [OUT_DIR=target/dist]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${CARGO_TARGET_DIR:-target}/dist}
bins=(tidescale demo-service loadgen)
for tool in objcopy; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (binutils)" >&2; exit 2; }
done
cargo build --release -q --workspace --bins
release=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$out"
for bin in "${bins[@]}"; do
  cp "$release/$bin" "$out/$bin.full"
  # The debug file keeps what a symbolizer needs; compressed, since only tools read it.
  objcopy --only-keep-debug --compress-debug-sections=zlib "$out/$bin.full" "$out/$bin.debug"
  # The link stores the debug file's name and CRC, so a stale .debug is never used.
  objcopy --strip-debug --add-gnu-debuglink="$out/$bin.debug" "$out/$bin.full" "$out/$bin"
  rm "$out/$bin.full"
  printf '%-14s %6.1f MB (built: %.1f MB)   %s.debug %.1f MB\n' "$bin" \
    "$(($(stat -c %s "$out/$bin") / 1000))e-3" "$(($(stat -c %s "$release/$bin") / 1000))e-3" \
    "$bin" "$(($(stat -c %s "$out/$bin.debug") / 1000))e-3"
done
