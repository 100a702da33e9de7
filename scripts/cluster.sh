#!/usr/bin/env bash
# A real, local, single-machine Kubernetes control plane for the tests: etcd, kube-apiserver and
# kube-controller-manager built from Go modules (tests/cluster), plus a stand-in kubelet that
# reports pods Running and Ready.
#
#   scripts/cluster.sh up                 start it (idempotent); builds the binaries if needed
#   scripts/cluster.sh down               stop everything it started, remove its network namespace
#   scripts/cluster.sh env                print the exports a shell needs (KUBECONFIG, …)
#   scripts/cluster.sh adapter --config F [-- ADAPTER-ARGS…]
#                                         register tidescale's adapter behind the aggregator and
#                                         run it in the foreground until stopped
#
# Network: everything listens on loopback or on the two ends of a veth pair this script
# creates, with its own addresses (host side HOST_IP, namespace side NS_IP). The API server binds
# HOST_IP; the adapter runs inside the namespace on NS_IP, because EndpointSlices refuse loopback
# addresses. No real interface is touched and no address is left for a program to pick.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

state="${TIDESCALE_CLUSTER_STATE:-$repo/.cluster}"
bin="$repo/.tools/cluster-bin"
kubectl="${TIDESCALE_KUBECTL:-$repo/.tools/bin/kubectl}"
netns="tidescale-cp"
veth_host="tsc-host"
veth_ns="tsc-ns"
host_ip="10.250.77.1"
ns_ip="10.250.77.2"
apiserver_port=6443
adapter_port=6443
etcd_client="http://127.0.0.1:23791"
etcd_peer="http://127.0.0.1:23801"
service_range="10.96.0.0/16"
pod_range="10.244.0.0/16"
pki="$state/pki"
logs="$state/logs"
run="$state/run"
components=(etcd kube-apiserver kube-controller-manager fakekubelet)

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# --- processes -------------------------------------------------------------------------------

# alive NAME: true when the process group recorded for NAME still runs.
alive() {
  local pidfile="$run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# start NAME CMD…: runs CMD in a new session (its own process group), logs to logs/NAME.log.
start() {
  local name="$1"
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo "$!" >"$run/$name.pid"
}

# stop_group NAME: SIGTERM to NAME's process group, SIGKILL after 15 s.
stop_group() {
  local pidfile="$run/$1.pid" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$1 ignored SIGTERM for 15 s; SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

# wait_for WHAT SECONDS CMD…: retries CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
  local what="$1" seconds="$2" i
  shift 2
  for i in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what not ready after ${seconds}s (logs in $logs)"
}

# --- network ---------------------------------------------------------------------------------

net_up() {
  if ! ip netns list | grep -qw "$netns"; then
    ip netns add "$netns"
  fi
  if ! ip link show "$veth_host" >/dev/null 2>&1; then
    ip link add "$veth_host" type veth peer name "$veth_ns" netns "$netns"
  fi
  ip addr replace "$host_ip/30" dev "$veth_host"
  ip link set "$veth_host" up
  ip -n "$netns" addr replace "$ns_ip/30" dev "$veth_ns"
  ip -n "$netns" link set "$veth_ns" up
  ip -n "$netns" link set lo up
}

net_down() {
  local pid
  if ip netns list | grep -qw "$netns"; then
    # Whatever still runs inside (an adapter started by `adapter`) is ours: stop it by pid.
    for pid in $(ip netns pids "$netns"); do
      kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in $(ip netns pids "$netns"); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$netns"
  fi
  if ip link show "$veth_host" >/dev/null 2>&1; then
    ip link del "$veth_host"
  fi
}

# --- certificates ----------------------------------------------------------------------------

# new_ca NAME CN: a self-signed EC P-256 CA.
new_ca() {
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$pki/$1.key" -out "$pki/$1.crt" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

# new_cert NAME CA SUBJECT USAGE [SANS]: an EC P-256 leaf signed by CA; USAGE serverAuth or clientAuth.
new_cert() {
  local name="$1" ca="$2" subject="$3" usage="$4" sans="${5:-}"
  local ext="$pki/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    if [ -n "$sans" ]; then echo "subjectAltName=$sans"; fi
  } >"$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

# kubeconfig FILE USER CERT|"" KEY|TOKEN: a kubeconfig for the API server, with a client
# certificate (CERT and KEY files) or a bearer token (CERT empty, TOKEN).
kubeconfig() {
  local file="$1" user="$2" cert="$3" secret="$4" creds
  if [ -n "$cert" ]; then
    creds="    client-certificate-data: $(base64 -w0 <"$cert")
    client-key-data: $(base64 -w0 <"$secret")"
  else
    creds="    token: $secret"
  fi
  cat >"$file.part" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidescale-test
  cluster:
    server: https://$host_ip:$apiserver_port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
$creds
contexts:
- name: tidescale-test
  context: {cluster: tidescale-test, user: $user}
current-context: tidescale-test
EOF
  mv "$file.part" "$file"
}

certs() {
  if [ -f "$pki/done" ]; then return 0; fi
  rm -rf "$pki"
  mkdir -p "$pki"
  new_ca ca tidescale-test-ca
  new_ca front-proxy-ca tidescale-test-front-proxy-ca
  new_ca adapter-ca tidescale-test-adapter-ca
  new_cert apiserver ca "/CN=kube-apiserver" serverAuth \
    "IP:$host_ip,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  new_cert admin ca "/O=system:masters/CN=tidescale-admin" clientAuth
  new_cert controller-manager ca "/CN=system:kube-controller-manager" clientAuth
  new_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
  new_cert adapter adapter-ca "/CN=tidescale-adapter" serverAuth \
    "DNS:tidescale-adapter.tidescale.svc,DNS:tidescale-adapter.tidescale.svc.cluster.local"
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$pki/sa.key"
  openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  kubeconfig "$state/admin.kubeconfig" tidescale-admin "$pki/admin.crt" "$pki/admin.key"
  kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager \
    "$pki/controller-manager.crt" "$pki/controller-manager.key"
  touch "$pki/done"
}

# --- up / down -------------------------------------------------------------------------------

readyz() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://$host_ip:$apiserver_port/readyz" | grep -qx ok
}

all_alive() {
  local c
  for c in "${components[@]}"; do alive "$c" || return 1; done
}

cmd_up() {
  local began=$SECONDS c
  mkdir -p "$logs" "$run"
  if all_alive && readyz; then
    log "already up"
    return 0
  fi
  # A partial cluster (a crash, an interrupted up) is cleared first, so up always ends whole.
  cmd_down quiet
  mkdir -p "$logs" "$run"
  "$repo/scripts/build-cluster.sh"
  for c in "${components[@]}"; do
    [ -x "$bin/$c" ] || die "missing $bin/$c (scripts/build-cluster.sh builds it)"
  done
  net_up
  certs

  rm -rf "$state/etcd-data"
  start etcd "$bin/etcd" --data-dir "$state/etcd-data" --listen-client "$etcd_client" --listen-peer "$etcd_peer"
  wait_for "etcd" 60 curl -sf --max-time 2 "$etcd_client/health"

  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="$etcd_client" \
    --bind-address="$host_ip" --advertise-address="$host_ip" --secure-port="$apiserver_port" \
    --cert-dir="$state/apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$service_range" \
    --authorization-mode=RBAC \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 readyz

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10357 --cert-dir="$state/kcm-certs" \
    --leader-elect=false --use-service-account-credentials \
    --controllers=deployment,replicaset,statefulset,namespace,horizontalpodautoscaling,serviceaccount,serviceaccount-token \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --horizontal-pod-autoscaler-sync-period=2s \
    --profiling=false --v=1
  start fakekubelet "$bin/fakekubelet" --kubeconfig "$state/admin.kubeconfig" --pod-cidr "$pod_range"

  # Ready for tests: the controllers' service accounts exist (so the HPA runs as its own
  # identity) and the ConfigMap extension servers read is published.
  wait_for "the HPA controller's service account" 90 \
    "$kubectl" --kubeconfig "$state/admin.kubeconfig" -n kube-system get serviceaccount horizontal-pod-autoscaler
  wait_for "extension-apiserver-authentication" 60 \
    "$kubectl" --kubeconfig "$state/admin.kubeconfig" -n kube-system get configmap extension-apiserver-authentication
  wait_for "the fake node" 60 \
    "$kubectl" --kubeconfig "$state/admin.kubeconfig" get node tidescale-fake-node
  for c in "${components[@]}"; do alive "$c" || die "$c exited during start-up (see $logs/$c.log)"; done
  log "up in $((SECONDS - began))s; $(cmd_env | head -1)"
}

cmd_down() {
  local quiet="${1:-}" i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    stop_group "${components[$i]}"
  done
  net_down
  rm -rf "$state/etcd-data"
  [ -n "$quiet" ] || log "down"
}

cmd_env() {
  echo "export KUBECONFIG=$state/admin.kubeconfig"
  echo "export PATH=$repo/.tools/bin:\$PATH"
  echo "export TIDESCALE_CLUSTER_STATE=$state"
  echo "export TIDESCALE_CLUSTER_HOST_IP=$host_ip"
  echo "export TIDESCALE_CLUSTER_NETNS=$netns"
  echo "export TIDESCALE_CLUSTER_ADAPTER_ADDR=$ns_ip:$adapter_port"
}

# --- adapter ---------------------------------------------------------------------------------
# Registers tidescale's adapter the way a deployment would (a Service without selector and its
# EndpointSlice on the namespace-side address, the three APIServices with the CA that signed the
# serving certificate, the RBAC objects of contract §3.7), then runs `tidescale adapter` in the
# foreground inside the network namespace, as the adapter's own service account.

adapter_manifests() {
  local ca_bundle="$1"
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: tidescale}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: tidescale-adapter, namespace: tidescale}
---
apiVersion: v1
kind: Service
metadata: {name: tidescale-adapter, namespace: tidescale}
spec:
  ports: [{name: https, port: 443, targetPort: $adapter_port, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: tidescale-adapter-1
  namespace: tidescale
  labels: {kubernetes.io/service-name: tidescale-adapter, endpointslice.kubernetes.io/managed-by: tidescale-cluster-script}
addressType: IPv4
ports: [{name: https, port: $adapter_port, protocol: TCP}]
endpoints: [{addresses: ["$ns_ip"], conditions: {ready: true}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tidescale-adapter:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: tidescale-adapter, namespace: tidescale}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: "tidescale-adapter-auth-reader", namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: tidescale-adapter, namespace: tidescale}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "tidescale-adapter:pod-reader"}
rules: [{apiGroups: [""], resources: [pods, namespaces, services], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tidescale-adapter:pod-reader"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tidescale-adapter:pod-reader"}
subjects: [{kind: ServiceAccount, name: tidescale-adapter, namespace: tidescale}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "tidescale:custom-metrics-reader"}
rules: [{apiGroups: [custom.metrics.k8s.io], resources: ["*"], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tidescale:hpa-custom-metrics"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tidescale:custom-metrics-reader"}
subjects: [{kind: ServiceAccount, name: horizontal-pod-autoscaler, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "tidescale:external-metrics-reader"}
rules: [{apiGroups: [external.metrics.k8s.io], resources: ["*"], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tidescale:hpa-external-metrics"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tidescale:external-metrics-reader"}
subjects: [{kind: ServiceAccount, name: horizontal-pod-autoscaler, namespace: kube-system}]
EOF
  local name group version priority
  for name in v1beta1.custom.metrics.k8s.io v1beta2.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io; do
    version="${name%%.*}"
    group="${name#*.}"
    priority=100
    [ "$name" = v1beta2.custom.metrics.k8s.io ] && priority=200
    cat <<EOF
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $name}
spec:
  group: $group
  version: $version
  service: {namespace: tidescale, name: tidescale-adapter, port: 443}
  caBundle: $ca_bundle
  groupPriorityMinimum: 100
  versionPriority: $priority
EOF
  done
}

cmd_adapter() {
  local config="" tidescale="${TIDESCALE_BIN:-$repo/target/debug/tidescale}" token
  while [ $# -gt 0 ]; do
    case "$1" in
      --config)
        config="${2:-}"
        shift 2
        ;;
      --)
        shift
        break
        ;;
      *) die "adapter: unknown argument $1 (usage: adapter --config FILE [-- ADAPTER-ARGS…])" ;;
    esac
  done
  if [ -z "$config" ] || [ ! -f "$config" ]; then
    die "adapter: --config FILE is required and must exist"
  fi
  [ -x "$tidescale" ] || die "adapter: $tidescale missing (cargo build --bin tidescale, or set TIDESCALE_BIN)"
  readyz || die "adapter: the cluster is not up (scripts/cluster.sh up)"
  # One adapter at a time: a previous one that was just killed gets 10 s to go away.
  local i
  for i in $(seq 1 50); do
    [ -z "$(ip netns pids "$netns")" ] && break
    sleep 0.2
  done
  if [ -n "$(ip netns pids "$netns")" ]; then
    die "adapter: something already runs in namespace $netns (another adapter?)"
  fi
  local admin=(--kubeconfig "$state/admin.kubeconfig")
  adapter_manifests "$(base64 -w0 <"$pki/adapter-ca.crt")" | "$kubectl" "${admin[@]}" apply -f - >&2
  token="$("$kubectl" "${admin[@]}" -n tidescale create token tidescale-adapter --duration=48h)"
  kubeconfig "$state/adapter.kubeconfig" tidescale-adapter "" "$token"
  log "adapter on https://$ns_ip:$adapter_port inside netns $netns"
  if [ -n "${TIDESCALE_ADAPTER_VIA_RUN:-}" ]; then
    # The same adapter served by `tidescale run` next to its controller (which watches only
    # the adapter's own namespace: its service account may read nothing else).
    exec ip netns exec "$netns" "$tidescale" run --adapter-config "$config" \
      --adapter-listen "$ns_ip:$adapter_port" --leader-elect=false --namespace tidescale \
      --metrics-listen 127.0.0.1:8080 --log-format text \
      --tls-cert-file "$pki/adapter.crt" --tls-private-key-file "$pki/adapter.key" \
      --kubeconfig "$state/adapter.kubeconfig" \
      --authentication-kubeconfig "$state/adapter.kubeconfig" \
      --authorization-kubeconfig "$state/adapter.kubeconfig" \
      "$@"
  fi
  exec ip netns exec "$netns" "$tidescale" adapter --config "$config" \
    --listen "$ns_ip:$adapter_port" \
    --tls-cert-file "$pki/adapter.crt" --tls-private-key-file "$pki/adapter.key" \
    --kubeconfig "$state/adapter.kubeconfig" \
    --authentication-kubeconfig "$state/adapter.kubeconfig" \
    --authorization-kubeconfig "$state/adapter.kubeconfig" \
    "$@"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  adapter)
    shift
    cmd_adapter "$@"
    ;;
  *)
    echo "usage: $0 up|down|env|adapter --config FILE [-- ADAPTER-ARGS…]" >&2
    exit 2
    ;;
esac
