# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the other scripts
# Shared settings and helpers of the local cluster scripts. Sourced by
# hack/cluster/cluster.sh; every path here is absolute.

CLUSTER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SRC/../.." && pwd)"
# shellcheck source=../versions.env
source "$CLUSTER_SRC/versions.env"

# --- parameters (environment) -------------------------------------------
MODE="${MODE:-full}"
# State directory: certificates, kubeconfigs, data, logs, pid files.
STATE_DIR="${MODELSHIP_CLUSTER_DIR:-$REPO_ROOT/.cluster}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$REPO_ROOT/$STATE_DIR" ;; esac
# Every TCP port the cluster listens on is PORT_BASE + a fixed offset.
PORT_BASE="${MODELSHIP_CLUSTER_PORT_BASE:-16000}"
CACHE_ROOT="${MODELSHIP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelship/cluster}"

# --- ports ----------------------------------------------------------------
ETCD_CLIENT_PORT=$((PORT_BASE + 379))
ETCD_PEER_PORT=$((PORT_BASE + 380))
ETCD_METRICS_PORT=$((PORT_BASE + 381))
APISERVER_PORT=$((PORT_BASE + 443))
KCM_PORT=$((PORT_BASE + 257))
SCHEDULER_PORT=$((PORT_BASE + 259))
METRICS_SERVER_PORT=$((PORT_BASE + 444))
KUBE_PROXY_METRICS_PORT=$((PORT_BASE + 249))
KUBE_PROXY_HEALTHZ_PORT=$((PORT_BASE + 256))
# The gateway (lib/gateway.sh): Traefik's entry point, which is also the
# Gateway listener's port, and its ping.
GATEWAY_PORT=$((PORT_BASE + 80))
GATEWAY_PING_PORT=$((PORT_BASE + 82))
# The kubelet's ports stay fixed (one node per machine): 10250 on the bridge
# address, healthz on 127.0.0.1:10248.
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248

# --- networks (full mode; see docs/local-cluster.md) ------------------------
BRIDGE=msbr0
POD_CIDR=10.233.64.0/24
BRIDGE_IP=10.233.64.1
SERVICE_CIDR=10.233.0.0/18
KUBERNETES_SERVICE_IP=10.233.0.1
# Policy routing for the host's own connections to Services (lib/node.sh).
SERVICE_RULE_PREF=2330
SERVICE_ROUTE_TABLE=2330
CLUSTER_NAME=modelship-local
NODE_NAME=modelship-node

# --- layout -----------------------------------------------------------------
PKI_DIR="$STATE_DIR/pki"
LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"
CONF_DIR="$STATE_DIR/conf"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
# containerd and kubelet state: under the state dir so that down removes it.
CONTAINERD_DIR="$STATE_DIR/containerd"
CONTAINERD_SOCK="$STATE_DIR/run/containerd.sock"
KUBELET_DIR="$STATE_DIR/kubelet"
CNI_CONF_DIR="$STATE_DIR/cni/net.d"
CNI_BIN_DIR=/usr/lib/cni
# Network namespaces are made by the CNI/containerd under /var/run/netns;
# their names start with cni-.
CGROUP_PARENT=modelship-kubepods

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pins_hash names the binary cache: anything that changes what the big
# build produces (pins, the multi-call main, link flags, Go) changes it.
# Only content goes in, never a path: comments (which name this folder) and
# go.mod's module line are left out, so moving the folder keeps the cache.
# The gateway's pins have a cache of their own (lib/gateway.sh).
pins_hash() {
  {
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -e '^TRAEFIK_VERSION=' -e '^GATEWAY_API_VERSION=' -e '^VERSITYGW_VERSION=' "$CLUSTER_SRC/versions.env"
    grep -v -e '^module ' -e '^//' "$CLUSTER_SRC/build/go.mod"
    cat "$CLUSTER_SRC/build/go.sum" "$CLUSTER_SRC/build/tools.go" "$CLUSTER_SRC/build/cmd/kube/main.go"
    sed -n '/^build_flags() {/,/^}/p' "$CLUSTER_SRC/lib/build.sh"
    go env GOVERSION GOARCH
  } | sha256sum | cut -c1-16
}

# small_hash: the pause and test programs, rebuilt in seconds when they change.
small_hash() {
  cat "$CLUSTER_SRC/build/cmd/pause/main.go" "$CLUSTER_SRC/build/cmd/testapp/main.go" | sha256sum | cut -c1-16
}

bin_dir() { echo "$CACHE_ROOT/$(pins_hash)/bin"; }
