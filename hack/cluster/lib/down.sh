# shellcheck shell=bash
# cluster down: undo everything up did, in reverse order, whatever state a
# failed up left behind. Safe to run when nothing is up.

# Processes started from the cache's binaries for this state dir, whether
# or not their pid files survived.
stray_pids() {
  local dir pid exe
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
    case "$exe" in "$CACHE_ROOT"/*|*/containerd|*/containerd-shim-runc-v2) ;; *) continue ;; esac
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/" && echo "$pid"
  done
  return 0
}

bridge_owner() {
  ip -d link show "$BRIDGE" 2>/dev/null | sed -n 's/^ *alias modelship:\(.*\)$/\1/p'
}

# $crictl and the pod ids are split into words on purpose.
# shellcheck disable=SC2046
remove_pods() {
  [ -S "$CONTAINERD_SOCK" ] || return 0
  local crictl="$BIN/crictl -r unix://$CONTAINERD_SOCK -i unix://$CONTAINERD_SOCK --timeout 20s"
  log "removing pods"
  $crictl stopp $($crictl pods -q 2>/dev/null) >/dev/null 2>&1 || true
  $crictl rmp -f $($crictl pods -q 2>/dev/null) >/dev/null 2>&1 || true
}

kill_cgroup_processes() {
  local h pid
  while read -r h; do
    [ -d "$h/$CGROUP_PARENT" ] || continue
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$h/$CGROUP_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done < <(cgroup_hierarchies)
}

remove_cgroups() {
  local h
  while read -r h; do
    [ -d "$h/$CGROUP_PARENT" ] || continue
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      find "$h/$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h/$CGROUP_PARENT" ] || break
      sleep 0.5
    done
    [ -d "$h/$CGROUP_PARENT" ] && log "WARNING: could not remove cgroup $h/$CGROUP_PARENT"
  done < <(cgroup_hierarchies)
  return 0
}

# Rules that jump to, and chains named, KUBE-*, CNI-* or MODELSHIP-* in
# every table, for IPv4 and IPv6: what kube-proxy, the kubelet, the CNI
# bridge plugin and up made.
remove_iptables() {
  local ipt table rule chain chains
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      # Jumps from the built-in chains first, then our chains' rules, then the chains.
      while read -r rule; do
        [ -n "$rule" ] || continue
        eval "$ipt -w -t $table $rule" 2>/dev/null || true
      done < <("$ipt-save" -t "$table" 2>/dev/null | grep -E '^-A ' | grep -E -- '-j (KUBE|CNI|MODELSHIP)-' |
        grep -vE '^-A (KUBE|CNI|MODELSHIP)-' | sed 's/^-A /-D /' || true)
      chains="$("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\|MODELSHIP\)-[^ ]*\) .*/\1/p' || true)"
      for chain in $chains; do "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}

unmount_under() { # unmount_under DIR: every mount at or below DIR, deepest first
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "WARNING: could not unmount $m"
  done < <(awk -v d="$1" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r)
}

# stop_processes NODE: the gateway, the components in reverse start order (the kubelet
# and the pods before containerd when NODE is true), then any stray process
# of this state dir.
stop_processes() {
  stop_proc traefik
  stop_proc prometheus
  stop_proc versitygw
  if "$1"; then
    stop_proc kubelet
    remove_pods
    stop_proc containerd
  fi
  local p
  for p in metrics-server kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_proc "$p"; done
  local strays; strays="$(stray_pids)"
  if [ -n "$strays" ]; then
    log "killing leftover processes: ${strays//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $strays 2>/dev/null || true
  fi
}

# remove_pod_netns HOST_BEFORE: network namespaces the runtime made for pods
# (cni-*), not the ones there before up.
remove_pod_netns() {
  local ns
  for ns in $(ip -o netns list 2>/dev/null | awk '{print $1}' | grep '^cni-'); do
    grep -qx "netns $ns" "$1" 2>/dev/null && continue
    ip netns delete "$ns" 2>/dev/null || true
  done
}

# The bridge and the host's routing to the Service range (lib/node.sh).
remove_network() {
  if ip link show "$BRIDGE" >/dev/null 2>&1; then log "removing bridge $BRIDGE"; ip link delete "$BRIDGE"; fi
  ip route del unreachable "$SERVICE_CIDR" 2>/dev/null || true
  while ip rule del pref "$SERVICE_RULE_PREF" 2>/dev/null; do :; done
  ip route flush table "$SERVICE_ROUTE_TABLE" 2>/dev/null || true
}

# remove_node_pieces HOST_BEFORE: what a full-mode node made host-wide.
remove_node_pieces() {
  kill_cgroup_processes
  if [ -x "$BIN/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  remove_iptables
  remove_pod_netns "$1"
  unmount_under /run/containerd
  remove_network
  remove_cgroups
}

# restore_host_state HOST_BEFORE: sysctls back to their recorded values,
# host paths that up made removed.
restore_host_state() {
  local kind name value path
  while read -r kind name value; do
    [ "$kind" = sysctl ] || continue
    path="$(sysctl_path "$name")"
    [ "$(tr '\t' ' ' < "$path")" = "$value" ] || echo "$value" > "$path" 2>/dev/null || log "WARNING: could not restore $name"
  done < "$1"
  for path in "${HOST_PATHS[@]}"; do
    grep -qx "path $path" "$1" && continue
    [ -e "$path" ] || continue
    unmount_under "$path"
    if [ "$path" = /run/netns ]; then
      rmdir "$path" 2>/dev/null || true # others may keep namespaces there
    else
      rm -rf "$path"
    fi
  done
}

cluster_down() {
  local host_before="$RUN_DIR/host-before" node=false
  [ -f "$host_before" ] && node=true
  BIN="$(bin_dir)"
  stop_processes "$node"
  # The node's host-wide pieces: when this state dir made them, or when its
  # record is lost but the bridge says it is ours.
  if $node || [ "$(bridge_owner)" = "$STATE_DIR" ]; then
    remove_node_pieces "$host_before"
  fi
  if [ -f "$host_before" ]; then
    restore_host_state "$host_before"
  fi
  if [ -d "$STATE_DIR" ]; then
    unmount_under "$STATE_DIR"
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
  log "cluster is down"
}
