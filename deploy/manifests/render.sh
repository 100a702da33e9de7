#!/usr/bin/env bash
# Regenerates deploy/manifests/base/ from the Helm chart's default render (release "tidescale" in
# namespace "tidescale", CRD included). The generated certificate material is replaced by
# placeholders: a kustomize user supplies their own (overlays/cert-manager shows one way).
# tests/deploy_chart.rs checks that the base still equals the chart's default render.
#   usage: deploy/manifests/render.sh   (needs helm: scripts/install-kubectl.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
helm="${HELM:-.tools/bin/helm}"
base=deploy/manifests/base
placeholder="$(printf 'REPLACE: PEM generated for your cluster' | base64 -w0)"
"$helm" template tidescale deploy/helm/tidescale --namespace tidescale --include-crds |
  sed -E \
    -e "s#^(  (tls\.crt|tls\.key|ca\.crt): ).*#\1${placeholder}#" \
    -e "s#^(  caBundle: ).*#\1${placeholder}#" >"$base/tidescale.yaml"
echo "wrote $base/tidescale.yaml"
