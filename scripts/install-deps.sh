#!/usr/bin/env bash
# Installs every tool the test suite uses, from the package registries only. Idempotent: tools
# already present are left alone. Run as root or with sudo available.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus >/dev/null || need_apt+=(prometheus)
# The local control plane (scripts/cluster.sh, scripts/build-cluster.sh): certificates, the
# network namespace, and Go's toolchain from the module proxy when Go is missing.
command -v openssl >/dev/null || need_apt+=(openssl)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v curl >/dev/null || need_apt+=(curl)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v setsid >/dev/null || need_apt+=(util-linux)
# The dashboards' type check (@grafana/schema with TypeScript, installed by install-kubectl.sh).
command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "install-deps: redis $(redis-server --version | awk '{print $3}'), $(promtool --version 2>&1 | head -1)"
