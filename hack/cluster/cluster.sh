#!/usr/bin/env bash
# Entry point of the local Kubernetes cluster (see docs/local-cluster.md):
#   cluster.sh build                       build or reuse the binaries; print their dir
#   cluster.sh up                          start the cluster (MODE=full|control-plane); no-op when up
#   cluster.sh down                        stop it and remove everything it made
#   cluster.sh gateway                     start the gateway (Traefik, Gateway API) on a
#                                          full cluster; no-op when up; down stops it
#   cluster.sh s3                          start the S3 server (versitygw) on a full
#                                          cluster; no-op when up; down stops it
#   cluster.sh prometheus [--set K=V...]   start (or reload) Prometheus with the chart's rules;
#                                          prometheus-dir builds it, prints where promtool is
#   cluster.sh status                      show what runs; exit 1 when not up
#   cluster.sh image NAME SRC [ENTRYPOINT...]  build an OCI image from a binary or
#                                          rootfs directory and import it into containerd
#   cluster.sh env                         print export lines for PATH, KUBECONFIG and the
#                                          gateway's MODELSHIP_GATEWAY_{NAME,NAMESPACE,PORT}
#   cluster.sh fault ACTION TARGET         for tests (lib/faults.sh): stop|start|restart a
#                                          control-plane component; cut-api|restore-api
#                                          NAMESPACE/POD cuts a pod off the API server
set -euo pipefail
# Everything started from here (containerd, whose snapshots non-root
# containers must be able to read, above all) gets the usual umask;
# private files are made private one by one.
umask 022
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/build.sh
source "$here/lib/build.sh"
# shellcheck source=lib/pki.sh
source "$here/lib/pki.sh"
# shellcheck source=lib/procs.sh
source "$here/lib/procs.sh"
# shellcheck source=lib/control-plane.sh
source "$here/lib/control-plane.sh"
# shellcheck source=lib/node.sh
source "$here/lib/node.sh"
# shellcheck source=lib/image.sh
source "$here/lib/image.sh"
# shellcheck source=lib/gateway.sh
source "$here/lib/gateway.sh"
# shellcheck source=lib/s3.sh
source "$here/lib/s3.sh"
# shellcheck source=lib/prometheus.sh
source "$here/lib/prometheus.sh"
# shellcheck source=lib/down.sh
source "$here/lib/down.sh"
# shellcheck source=lib/audit.sh
source "$here/lib/audit.sh"
# shellcheck source=lib/faults.sh
source "$here/lib/faults.sh"

# Components of each mode, in start order.
components() {
  case "$1" in
    control-plane) echo etcd kube-apiserver kube-controller-manager ;;
    full) echo etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy metrics-server ;;
    *) die "unknown MODE '$1' (full or control-plane)" ;;
  esac
}

dead_components() { # of the mode recorded in the state dir
  local c
  for c in $(components "$(cat "$RUN_DIR/mode")"); do proc_alive "$c" || echo "$c"; done
}

# The image archives built from the cache's binaries live beside them,
# named for the image recipe too, so that a change to it rebuilds them.
cached_image() { # cached_image NAME BINARY -> prints the archive path
  local tar recipe
  recipe="$(sha256sum "$here/lib/image.sh" | cut -c1-12)"
  tar="$(dirname "$BIN")/images/$(basename "$2")-$recipe.tar"
  [ -f "$tar" ] || build_image "$1" "$BIN/$2" "$tar"
  echo "$tar"
}

cluster_up() {
  components "${MODE:?}" >/dev/null
  if [ -f "$RUN_DIR/mode" ]; then
    local running dead
    running="$(cat "$RUN_DIR/mode")"
    dead="$(dead_components)"
    [ -n "$dead" ] && die "the $running cluster in $STATE_DIR is only partly up (not running: ${dead//$'\n'/ }); run cluster-down first"
    [ "$running" = "$MODE" ] || die "a $running cluster is up in $STATE_DIR; run cluster-down before starting a $MODE one"
    log "$MODE cluster already up ($STATE_DIR); nothing to do"
    return 0
  fi
  if [ -d "$STATE_DIR" ]; then
    log "$STATE_DIR holds an unfinished cluster; cleaning it up first"
    cluster_down
  fi
  [ "$MODE" = full ] && check_node_free
  BIN="$(build_binaries)"
  local start=$SECONDS address=127.0.0.1
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$CONF_DIR"
  if [ "$MODE" = full ]; then
    ensure_node_packages
    record_host_state
    setup_network
    setup_cgroups
    address="$BRIDGE_IP"
  fi
  make_pki "$address"
  start_etcd
  start_apiserver "$address"
  start_controller_manager
  if [ "$MODE" = full ]; then
    start_scheduler
    start_containerd
    import_image "$(cached_image "$PAUSE_IMAGE" pause)"
    start_kubelet
    start_kube_proxy
    start_metrics_server
  fi
  wait_for_default_serviceaccount
  echo "$MODE" > "$RUN_DIR/mode"
  echo "$((SECONDS - start))" > "$RUN_DIR/start-seconds"
  log "$MODE cluster up in $((SECONDS - start))s: KUBECONFIG=$KUBECONFIG_FILE, API server https://$address:$APISERVER_PORT"
}

cluster_status() {
  if [ ! -f "$RUN_DIR/mode" ]; then
    echo "no cluster is up in $STATE_DIR"
    return 1
  fi
  BIN="$(bin_dir)"
  local mode c ok=0
  mode="$(cat "$RUN_DIR/mode")"
  echo "mode: $mode   state: $STATE_DIR   kubeconfig: $KUBECONFIG_FILE"
  local pss total=0
  for c in $(components "$mode"); do
    if proc_alive "$c"; then
      # PSS: the components share one binary's pages, so RSS would count them many times.
      pss="$(awk '/^Pss:/ {print int($2 / 1024)}' "/proc/$(proc_pid "$c")/smaps_rollup" 2>/dev/null || echo 0)"
      total=$((total + ${pss:-0}))
      printf '  %-24s running (pid %s, %s MiB)\n' "$c" "$(proc_pid "$c")" "$pss"
    else printf '  %-24s NOT RUNNING (log: %s)\n' "$c" "$LOG_DIR/$c.log"; ok=1; fi
  done
  if [ -f "$RUN_DIR/traefik.pid" ]; then
    if proc_alive traefik; then
      printf '  %-24s running (pid %s), Gateway %s/%s on 127.0.0.1:%s\n' gateway "$(proc_pid traefik)" \
        "$GATEWAY_NAMESPACE" "$GATEWAY_NAME" "$GATEWAY_PORT"
    else printf '  %-24s NOT RUNNING (log: %s)\n' gateway "$LOG_DIR/traefik.log"; ok=1; fi
  fi
  echo "  memory of the components (PSS): $total MiB"
  if kctl get --raw /readyz >/dev/null 2>&1; then echo "  api server ready"; else echo "  api server NOT ready"; ok=1; fi
  [ "$mode" = full ] && kctl get nodes -o wide 2>/dev/null | sed 's/^/  /'
  return "$ok"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  build) build_binaries ;;
  up) cluster_up ;;
  down) cluster_down ;;
  gateway) gateway_up ;;
  s3) s3_up ;;
  s3-env) s3_env ;;
  prometheus) prometheus_up "$@" ;;
  prometheus-dir) build_prometheus ;;
  status) cluster_status ;;
  image) image_cmd "$@" ;;
  fault) fault_cmd "$@" ;;
  env)
    echo "export PATH=\"$(build_binaries):\$PATH\""
    echo "export KUBECONFIG=\"$KUBECONFIG_FILE\""
    echo "export MODELSHIP_GATEWAY_NAME=$GATEWAY_NAME MODELSHIP_GATEWAY_NAMESPACE=$GATEWAY_NAMESPACE MODELSHIP_GATEWAY_PORT=$GATEWAY_PORT" ;;
  *) sed -n '2,19s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
