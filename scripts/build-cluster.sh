#!/usr/bin/env bash
# Builds the local control plane's binaries (tests/cluster) into .tools/cluster-bin:
# kube-apiserver and kube-controller-manager from k8s.io/kubernetes on the Go module proxy, and
# our etcd launcher and stand-in kubelet. Installs Go only if it is missing. Skips the build when
# a stamp of the sources, go.mod/go.sum and the Go version matches the last build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
bin="$repo/.tools/cluster-bin"
go_version="1.26.8"

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  # The Go module proxy serves the toolchain itself as the module golang.org/toolchain (the
  # go command's own GOTOOLCHAIN downloads come from there).
  echo "build-cluster: Go missing; installing go$go_version from the module proxy into /usr/local/go"
  work="$(mktemp -d)"
  curl -fsSL --retry 3 -o "$work/go.zip" \
    "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-amd64.zip"
  unzip -q "$work/go.zip" -d "$work"
  rm -rf /usr/local/go
  mv "$work/golang.org/toolchain@v0.0.1-go$go_version.linux-amd64" /usr/local/go
  chmod +x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*
  rm -rf "$work"
  export PATH="/usr/local/go/bin:$PATH"
fi
export GOFLAGS="-buildvcs=false"

stamp="$({
  go version
  cd tests/cluster
  find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -d' ' -f1)"
targets=(kube-apiserver kube-controller-manager etcd fakekubelet)
up_to_date=1
for t in "${targets[@]}"; do [ -x "$bin/$t" ] || up_to_date=0; done
if [ "$up_to_date" = 1 ] && [ "$(cat "$bin/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build-cluster: up to date ($(go version | awk '{print $3}'), k8s.io/kubernetes $(grep -m1 'k8s.io/kubernetes v' tests/cluster/go.mod | awk '{print $2}'))"
  exit 0
fi

echo "build-cluster: go build (a cold module and build cache takes several minutes)"
began=$SECONDS
mkdir -p "$bin"
rm -f "$bin/.stamp"
(
  cd tests/cluster
  nice -n 10 go build -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./etcd ./fakekubelet
)
echo "$stamp" >"$bin/.stamp"
echo "build-cluster: built ${targets[*]} in $((SECONDS - began))s"
