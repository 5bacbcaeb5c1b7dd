# shellcheck shell=bash
# Faults for tests (cluster.sh fault ...): stop, start or restart one
# control-plane component, and cut one pod off the API server.
#
#   fault stop|start|restart COMPONENT   etcd, kube-apiserver or kube-controller-manager;
#                                        start waits until it is healthy again
#   fault cut-api NAMESPACE/POD          drop the pod's traffic to and from the API
#                                        server (its address and the kubernetes
#                                        Service), by a chain inside the pod's own
#                                        network namespace: nothing on the host changes
#   fault restore-api NAMESPACE/POD      remove that chain
#
# A cut drops packets (no reset), as a partition does: the pod's open
# connections hang rather than fail, so its client sees what it would see
# on a real network split.

FAULT_COMPONENTS="etcd kube-apiserver kube-controller-manager"
FAULT_CHAIN=MODELSHIP-FAULT

fault_cmd() {
  local action="${1:-}" target="${2:-}"
  [ -f "$RUN_DIR/mode" ] || die "no cluster is up in $STATE_DIR"
  MODE="$(cat "$RUN_DIR/mode")"
  BIN="$(bin_dir)"
  case "$action" in
    stop|start|restart)
      case " $FAULT_COMPONENTS " in
        *" $target "*) ;;
        *) die "fault $action: COMPONENT must be one of: $FAULT_COMPONENTS (not '$target')" ;;
      esac
      [ "$action" = start ] || { stop_proc "$target"; log "fault: $target stopped"; }
      [ "$action" = stop ] || fault_start "$target" ;;
    cut-api) fault_netns "$target" cut ;;
    restore-api) fault_netns "$target" restore ;;
    *) die "fault: ACTION must be stop, start, restart, cut-api or restore-api (not '$action')" ;;
  esac
}

# fault_start COMPONENT: starts it as up did, unless it runs already.
fault_start() {
  if proc_alive "$1"; then log "fault: $1 is running already"; return 0; fi
  local address=127.0.0.1
  [ "$MODE" = full ] && address="$BRIDGE_IP"
  case "$1" in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver "$address" ;;
    kube-controller-manager) start_controller_manager ;;
  esac
  log "fault: $1 started"
}

# pod_netns NAMESPACE/POD: the path of the pod sandbox's network namespace.
pod_netns() {
  local ns="${1%%/*}" pod="${1#*/}" id crictl
  { [ "$ns" != "$1" ] && [ -n "$pod" ]; } || die "fault: name the pod as NAMESPACE/POD (not '$1')"
  crictl=("$BIN/crictl" -r "unix://$CONTAINERD_SOCK" -i "unix://$CONTAINERD_SOCK" --timeout 20s)
  id="$("${crictl[@]}" pods --namespace "$ns" --name "^$pod\$" --state ready -q 2>/dev/null | head -1)"
  [ -n "$id" ] || die "fault: no running sandbox for pod $1 on this node"
  "${crictl[@]}" inspectp "$id" 2>/dev/null | jq -er '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path'
}

# fault_netns NAMESPACE/POD cut|restore
fault_netns() {
  [ "$MODE" = full ] || die "fault: cutting a pod needs a full cluster (pods run only there)"
  local netns ipt
  netns="$(pod_netns "$1")"
  ipt=(nsenter --net="$netns" iptables -w)
  # Idempotent both ways: the chain is flushed and unhooked first.
  "${ipt[@]}" -D OUTPUT -j "$FAULT_CHAIN" 2>/dev/null || true
  "${ipt[@]}" -D INPUT -j "$FAULT_CHAIN" 2>/dev/null || true
  "${ipt[@]}" -F "$FAULT_CHAIN" 2>/dev/null || true
  "${ipt[@]}" -X "$FAULT_CHAIN" 2>/dev/null || true
  if [ "$2" = restore ]; then log "fault: pod $1 reaches the API server again"; return 0; fi
  "${ipt[@]}" -N "$FAULT_CHAIN"
  # Both ways, both addresses: the node address the Service leads to and the
  # Service itself (a pod's packets leave it before kube-proxy's DNAT).
  "${ipt[@]}" -A "$FAULT_CHAIN" -p tcp -d "$BRIDGE_IP" --dport "$APISERVER_PORT" -j DROP
  "${ipt[@]}" -A "$FAULT_CHAIN" -p tcp -d "$KUBERNETES_SERVICE_IP" --dport 443 -j DROP
  "${ipt[@]}" -A "$FAULT_CHAIN" -p tcp -s "$BRIDGE_IP" --sport "$APISERVER_PORT" -j DROP
  "${ipt[@]}" -A "$FAULT_CHAIN" -p tcp -s "$KUBERNETES_SERVICE_IP" --sport 443 -j DROP
  "${ipt[@]}" -I OUTPUT 1 -j "$FAULT_CHAIN"
  "${ipt[@]}" -I INPUT 1 -j "$FAULT_CHAIN"
  log "fault: pod $1 cut off the API server (netns $netns)"
}
