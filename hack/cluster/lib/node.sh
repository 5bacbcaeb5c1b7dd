# shellcheck shell=bash
# Full mode: the node. A bridge for pods, containerd + runc, kubelet,
# kube-proxy (iptables) and metrics-server. These touch the host (a network
# device, a route, iptables chains, cgroups, sysctls), so there is one full
# cluster per machine; everything is written down first so that down can
# undo exactly what up did.

# Host paths the runtime or kubelet may create outside the state dir.
HOST_PATHS=(/run/containerd /var/lib/cni /run/netns /var/log/pods /var/log/containers
  /var/lib/kubelet /var/lib/containerd /opt/containerd /run/kubernetes /etc/cni /opt/cni)
# Sysctls that up or the kubelet/kube-proxy may change; restored by down.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables)
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack umoci ethtool socat jq)

sysctl_path() { echo "/proc/sys/$(echo "$1" | tr . /)"; }

ensure_node_packages() {
  local missing=() p
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "full mode needs root to install ${missing[*]} and to run a node"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# record_host_state: what exists before up, for down to restore.
record_host_state() {
  local f="$RUN_DIR/host-before" p s
  mkdir -p "$RUN_DIR"
  : > "$f"
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "path $p" >> "$f"; done
  for s in "${SYSCTLS[@]}"; do
    [ -r "$(sysctl_path "$s")" ] && echo "sysctl $s $(tr '\t' ' ' < "$(sysctl_path "$s")")" >> "$f"
  done
  ip -o netns list 2>/dev/null | awk '{print "netns " $1}' >> "$f"
}

# check_node_free: before anything is recorded or made, so that a refused
# up leaves nothing that a down could mistake for its own.
check_node_free() {
  [ "$(id -u)" -eq 0 ] || die "full mode runs a node and needs root; MODE=control-plane does not"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE exists already (made for $(ip -d link show "$BRIDGE" | sed -n 's/^ *alias modelship://p')): one full cluster per machine; run cluster-down with that MODELSHIP_CLUSTER_DIR"
  fi
  if ip route show table all | grep -q "10\.233\."; then
    die "the host already routes part of 10.233.0.0/16; the cluster's ranges would collide"
  fi
  return 0
}

setup_network() {
  log "network: bridge $BRIDGE $BRIDGE_IP for pods $POD_CIDR, services $SERVICE_CIDR unreachable on the host"
  ip link add "$BRIDGE" type bridge
  ip addr add "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  # The bridge names its owner, so that no other cluster's down removes it.
  ip link set "$BRIDGE" alias "modelship:$STATE_DIR"
  ip link set "$BRIDGE" up
  # A packet to a ClusterIP that kube-proxy did not rewrite dies here...
  ip route add unreachable "$SERVICE_CIDR"
  # ...but the host's own connections are routed before kube-proxy's DNAT
  # (at connect time), so an unreachable route would fail them all: for
  # them alone (iif lo) the range leads onto the cluster's bridge, and
  # MODELSHIP-OUTPUT rejects, after DNAT, whatever still goes to it.
  ip rule add pref "$SERVICE_RULE_PREF" iif lo to "$SERVICE_CIDR" lookup "$SERVICE_ROUTE_TABLE"
  ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$BRIDGE_IP" table "$SERVICE_ROUTE_TABLE"
  iptables -w -N MODELSHIP-OUTPUT
  iptables -w -A MODELSHIP-OUTPUT -d "$SERVICE_CIDR" -j REJECT --reject-with icmp-net-unreachable
  iptables -w -I OUTPUT 1 -j MODELSHIP-OUTPUT
  # Pods talk to each other, the host and its API server, never beyond:
  # forwarded traffic that enters or leaves through the bridge must stay on
  # it. In place before forwarding is switched on.
  iptables -w -N MODELSHIP-FORWARD
  iptables -w -A MODELSHIP-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -A MODELSHIP-FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -j MODELSHIP-FORWARD
  echo 1 > /proc/sys/net/ipv4/ip_forward
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables

  mkdir -p "$CNI_CONF_DIR" "$STATE_DIR/cni/ipam"
  cat > "$CNI_CONF_DIR/10-modelship.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "modelship",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${BRIDGE_IP%.*}.10", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
CNI
}

# Every mounted cgroup hierarchy gets a directory for the kubelet's tree.
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | grep '^/sys/fs/cgroup/'
}

setup_cgroups() {
  local h
  while read -r h; do
    mkdir -p "$h/$CGROUP_PARENT"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" > "$h/$CGROUP_PARENT/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h/$CGROUP_PARENT/cpuset.mems"
    fi
  done < <(cgroup_hierarchies)
}

start_containerd() {
  mkdir -p "$CONTAINERD_DIR" "$(dirname "$CONTAINERD_SOCK")"
  cat > "$CONF_DIR/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj below 0 (the pause container asks for -998): clamp.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$CONTAINERD_DIR/runc"
        SystemdCgroup = false
  # Nothing is ever pulled: every registry host resolves to 127.0.0.1:1,
  # which refuses at once, so a missing image fails fast and no lookup or
  # packet for a registry leaves the machine.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CONF_DIR/registry"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
TOML
  mkdir -p "$CONF_DIR/registry/_default"
  cat > "$CONF_DIR/registry/_default/hosts.toml" <<'TOML'
server = "http://127.0.0.1:1"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
TOML
  start_proc containerd containerd --config "$CONF_DIR/containerd.toml" --log-level warn
  wait_for "containerd" 30 containerd ctr --address "$CONTAINERD_SOCK" version
}

start_kubelet() {
  mkdir -p "$KUBELET_DIR" "$STATE_DIR/pod-logs"
  cat > "$CONF_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts are refused from 1.35 on unless this is false.
failCgroupV1: false
cgroupDriver: cgroupfs
# No CAP_SYS_RESOURCE here: the kubelet cannot give itself -999.
oomScoreAdj: 0
cgroupRoot: /$CGROUP_PARENT
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization:
  mode: Webhook
# No cluster DNS, and the host's resolver is not handed to pods: a pod has
# no name server to send packets to.
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: $STATE_DIR/pod-logs
maxPods: 30
failSwapOn: false
# A shared test machine: evict or taint for disk or memory pressure only
# when nearly nothing is left, never collect images (they cannot be pulled again).
evictionHard: {memory.available: "50Mi", nodefs.available: "100Mi", imagefs.available: "100Mi", nodefs.inodesFree: "1%", imagefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
nodeStatusReportFrequency: 10s
YAML
  start_proc kubelet "$BIN/kubelet" --config="$CONF_DIR/kubelet.yaml" \
    --kubeconfig="$CONF_DIR/kubelet.kubeconfig" --root-dir="$KUBELET_DIR" --cert-dir="$KUBELET_DIR/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$BRIDGE_IP" --v=1
  wait_for "node $NODE_NAME Ready" 120 kubelet \
    sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
}

start_kube_proxy() {
  cat > "$CONF_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CONF_DIR/kube-proxy.kubeconfig}
mode: iptables
oomScoreAdj: 0
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
clusterCIDR: $POD_CIDR
# NodePorts only on the bridge address, never on the outside interface.
nodePortAddresses: ["$BRIDGE_IP/32"]
# Leave the host's conntrack and route_localnet sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false, syncPeriod: 10s, minSyncPeriod: 0s}
YAML
  start_proc kube-proxy "$BIN/kube-proxy" --config="$CONF_DIR/kube-proxy.yaml" --v=1
  wait_for "kube-proxy health" 60 kube-proxy curl -sf "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
}

# metrics_server_rbac: what metrics-server may read (the kubelets' metrics,
# pods and nodes), the delegated authentication and authorization it needs as
# an aggregated API server, and the aggregated reader role for view/edit/admin.
metrics_server_rbac() {
  cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:metrics-server"}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: "metrics-server-auth-reader", namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregated-metrics-reader"
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
YAML
}

# metrics_api_service: metrics.k8s.io served by the host's metrics-server
# process through a Service without a selector (its Endpoints name the bridge
# address), registered with the aggregator.
metrics_api_service() {
  cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: metrics-server, namespace: kube-system}
subsets:
- addresses: [{ip: $BRIDGE_IP}]
  ports: [{name: https, port: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: metrics-server, namespace: kube-system, port: 443}
YAML
}

run_metrics_server() {
  local kc="$CONF_DIR/metrics-server.kubeconfig"
  mkdir -p "$STATE_DIR/metrics-server"
  start_proc metrics-server "$BIN/metrics-server" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address="$BRIDGE_IP" --secure-port="$METRICS_SERVER_PORT" \
    --cert-dir="$STATE_DIR/metrics-server" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" --kubelet-preferred-address-types=InternalIP --kubelet-port="$KUBELET_PORT" \
    --metric-resolution=10s --kubelet-request-timeout=5s --v=1
}

# metrics-server runs on the host (not in a pod), listening on the bridge
# address; a selector-less Service with a hand-made Endpoints object and an
# APIService hand it to the API server's aggregator.
start_metrics_server() {
  { metrics_server_rbac; echo ---; metrics_api_service; } | kctl apply -f - >/dev/null
  run_metrics_server
  wait_for "metrics.k8s.io APIService available" 90 metrics-server \
    sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type==\"Available\")].status}' | grep -qx True"
}
