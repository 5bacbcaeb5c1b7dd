#!/usr/bin/env bash
# Proof tests of the local cluster (make test-cluster):
#   hack/cluster/test/run.sh [control-plane] [full]
# Brings each mode up, proves it works, brings it down and proves that
# nothing is left behind. The harness is hack/lib/harness.sh: it closes with
# "N passed, N failed, N skipped"; REQUIRE_NO_SKIP=1 makes a skip a failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="$here/../cluster.sh"
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"
# shellcheck source=../lib/node.sh
source "$here/../lib/node.sh"
# shellcheck source=../lib/gateway.sh
source "$here/../lib/gateway.sh"
TEST_LOGS="${TEST_LOGS:-$(mktemp -d /tmp/modelship-cluster-tests.XXXXXX)}"
# shellcheck source=../../lib/harness.sh
source "$here/../../lib/harness.sh"

modes=("$@")
[ "${#modes[@]}" -gt 0 ] || modes=(control-plane full)

# show: pass stdin through, and copy it to stderr (the test's log). A reader
# that stops early (grep -q) must not fail the pipeline: what is written after
# it stopped meets a closed pipe (SIGPIPE, exit 141 under pipefail), a race
# that failed pod_network_stays_local and helm_install_and_uninstall now and
# then under load.
show() {
  local out; out="$(cat)"
  printf '%s\n' "$out" >&2
  ( trap '' PIPE; printf '%s\n' "$out" ) 2>/dev/null || true
}

k() { "$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" "$@"; }
TESTDATA="$CLUSTER_SRC/testdata"
TESTAPP_IMAGE=modelship.local/testapp:dev

# --- what a cluster leaves on the host ---------------------------------------
iptables_rules() {
  grep -E '^(-A|:)' | grep -vE '^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT' | sed 's/ \[[0-9]*:[0-9]*\]$//' || true
}

host_snapshot() {
  # This cluster's processes (others, e.g. private control planes of other
  # tests, may run beside it) and any container's.
  echo "## processes"
  { pgrep -af -- "$STATE_DIR/" || true; local n; for n in containerd-shim ^pause ^testapp ^runc; do pgrep -a "$n" || true; done; } |
    { grep -v pgrep || true; } | awk '{print $2}' | sort
  echo "## mounts"; awk '{print $2, $3}' /proc/self/mounts | grep -vE '^/proc/' | sort
  echo "## links"; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "## addresses"; ip -o addr show | awk '{print $2, $4}' | sort
  echo "## routes"; ip route show table all | sort
  echo "## rules"; ip rule show
  echo "## netns"; ip netns list 2>/dev/null | sort
  local t
  for t in filter nat mangle raw; do
    # Rules and chains; an empty built-in table (iptables-nft makes them on
    # first use) holds nothing.
    echo "## iptables $t"; iptables-save -t "$t" 2>/dev/null | iptables_rules
    echo "## ip6tables $t"; ip6tables-save -t "$t" 2>/dev/null | iptables_rules
  done
  echo "## cgroups"; find /sys/fs/cgroup -maxdepth 2 -type d | sort
  echo "## sysctls"; local s; for s in "${SYSCTLS[@]}"; do echo "$s $(cat "$(sysctl_path "$s")" 2>/dev/null)"; done
  echo "## files"; local p; for p in "${HOST_PATHS[@]}" "$STATE_DIR"; do [ -e "$p" ] && echo "$p"; done
  # /run/mount is util-linux's own record of mounts (utab), made the first
  # time anything on the machine mounts with mount(8); the mounts themselves
  # are compared above.
  find /run /var/lib /var/log /etc /opt -mindepth 1 -maxdepth 1 | grep -vx /run/mount | sort
  return 0
}

pids_of_cluster() { cat "$RUN_DIR"/*.pid 2>/dev/null | sort -n | tr '\n' ' '; }

# Every TCP/UDP socket that a cluster process listens on is on loopback or,
# in full mode, on the bridge address.
assert_listens_only_locally() {
  local pid bad=0 line
  for pid in $(pids_of_cluster); do
    while read -r line; do
      echo "$line"
      case "$(echo "$line" | awk '{print $5}')" in
        127.0.0.1:*|"[::1]:"*|"$BRIDGE_IP:"*) ;;
        *) echo "^ listens beyond loopback and the bridge"; bad=1 ;;
      esac
    done < <(ss -ltunpH | grep -E "pid=$pid," || true)
  done
  [ "$bad" -eq 0 ] || fail "a cluster process listens on a non-local address"
}

# --- the binary cache ----------------------------------------------------------
# The key is the pins' content: a copy of this folder elsewhere, its comments
# and go.mod's module line changed, has the same key; a pin change has another.
t_cache_key_ignores_the_folder() {
  local copy; copy="$(mktemp -d)/moved/elsewhere"
  mkdir -p "$copy"
  cp -r "$CLUSTER_SRC/versions.env" "$CLUSTER_SRC/build" "$CLUSTER_SRC/lib" "$copy/"
  local key moved
  key="$(pins_hash)"
  moved="$(CLUSTER_SRC="$copy" pins_hash)"
  echo "key here: $key, key of the copy in $copy: $moved"
  [ "$key" = "$moved" ] || fail "a copy of the folder elsewhere has another cache key"
  sed -i '1s/.*/# these pins moved to another folder/' "$copy/versions.env"
  sed -i 's#^module .*#module example.invalid/another/folder#' "$copy/build/go.mod"
  [ "$(CLUSTER_SRC="$copy" pins_hash)" = "$key" ] || fail "a comment or the module line changed the cache key"
  # The gateway's pins key Traefik's own cache, not the Kubernetes one.
  [ "$(CLUSTER_SRC="$copy" traefik_hash)" = "$(traefik_hash)" ] || fail "a copy of the folder has another Traefik cache key"
  sed -i 's/^TRAEFIK_VERSION=.*/TRAEFIK_VERSION=v0.0.1/' "$copy/versions.env"
  [ "$(CLUSTER_SRC="$copy" pins_hash)" = "$key" ] || fail "the Traefik pin changed the Kubernetes cache key"
  [ "$(CLUSTER_SRC="$copy" traefik_hash)" != "$(traefik_hash)" ] || fail "a Traefik pin change kept its cache key"
  sed -i 's/^HELM_VERSION=.*/HELM_VERSION=v0.0.1/' "$copy/versions.env"
  [ "$(CLUSTER_SRC="$copy" pins_hash)" != "$key" ] || fail "a pin change kept the cache key"
  [ "$(bin_dir)" = "$CACHE_ROOT/$key/bin" ] || fail "the binary cache is not named by the key alone: $(bin_dir)"
  rm -rf "$(dirname "$(dirname "$copy")")"
}

# --- control-plane mode --------------------------------------------------------
t_cp_up() {
  MODE=control-plane "$CLUSTER" up
  echo "control-plane start: $(cat "$RUN_DIR/start-seconds")s"
}

t_cp_up_again_is_noop() {
  local before; before="$(pids_of_cluster)"
  MODE=control-plane "$CLUSTER" up 2>&1 | show | grep -q "already up" || fail "second up did not say 'already up'"
  [ "$before" = "$(pids_of_cluster)" ] || fail "second up changed the processes: $before -> $(pids_of_cluster)"
  "$CLUSTER" status
}

t_cp_listens_only_on_loopback() { assert_listens_only_locally; }

t_cp_gateway_is_refused() {
  local out rc=0
  out="$("$CLUSTER" gateway 2>&1)" || rc=$?
  echo "$out"
  [ "$rc" -ne 0 ] || fail "cluster.sh gateway started on a control-plane cluster"
  grep -q "needs a full cluster" <<<"$out" || fail "cluster.sh gateway did not say why it refused"
}

t_crd_and_custom_object_apply() {
  k apply -f "$TESTDATA/widget-crd.yaml"
  k wait --for=condition=Established --timeout=30s crd/widgets.cluster-test.modelship.dev
  k create namespace crd-test
  k -n crd-test apply -f - <<'YAML'
apiVersion: cluster-test.modelship.dev/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
YAML
  [ "$(k -n crd-test get widget w1 -o jsonpath='{.spec.size}')" = 3 ] || fail "widget w1 did not read back"
  # The API server validates against the CRD's schema.
  if k -n crd-test apply -f - <<'YAML' 2>&1; then fail "a widget of size 0 was accepted"; fi
apiVersion: cluster-test.modelship.dev/v1
kind: Widget
metadata: {name: w0}
spec: {size: 0}
YAML
}

t_owned_deployment_is_garbage_collected() {
  k create namespace gc-test
  k -n gc-test create configmap owner
  local uid; uid="$(k -n gc-test get configmap owner -o jsonpath='{.metadata.uid}')"
  k -n gc-test apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: owned
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: $uid}]
spec:
  replicas: 1
  selector: {matchLabels: {app: owned}}
  template:
    metadata: {labels: {app: owned}}
    spec: {containers: [{name: app, image: $TESTAPP_IMAGE, imagePullPolicy: Never}]}
YAML
  # The deployment controller makes a ReplicaSet, the ReplicaSet controller a pod.
  eventually 30 sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n gc-test get replicasets -o name | grep -q ."
  eventually 30 sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n gc-test get pods -o name | grep -q ."
  k -n gc-test get deployments,replicasets,pods
  k -n gc-test delete configmap owner
  eventually 60 sh -c "! '$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n gc-test get deployment owned 2>/dev/null"
  eventually 60 sh -c "[ -z \"\$('$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n gc-test get replicasets -o name)\" ]"
  k -n gc-test get deployments,replicasets,pods
}

t_hpa_controller_reconciles() {
  k create namespace hpa-cp-test
  k -n hpa-cp-test create deployment target --image="$TESTAPP_IMAGE"
  k -n hpa-cp-test apply -f - <<'YAML'
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: target}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: target}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
YAML
  # Without metrics the controller still reports why it cannot scale.
  eventually 40 sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n hpa-cp-test get hpa target -o jsonpath='{.status.conditions[*].type}' | grep -q AbleToScale"
  k -n hpa-cp-test get hpa target -o yaml
}

t_private_control_plane_runs_beside() {
  local dir; dir="$(mktemp -d)/private"
  MODE=control-plane MODELSHIP_CLUSTER_DIR="$dir" MODELSHIP_CLUSTER_PORT_BASE=17000 "$CLUSTER" up
  local pk=("$BIN/kubectl" --kubeconfig="$dir/kubeconfig")
  grep -q "https://127.0.0.1:17443" "$dir/kubeconfig" || fail "private kubeconfig does not point at port 17443"
  "${pk[@]}" create namespace only-in-private
  if k get namespace only-in-private 2>/dev/null; then fail "the private cluster shares state with the default one"; fi
  MODELSHIP_CLUSTER_DIR="$dir" "$CLUSTER" down
  [ ! -e "$dir" ] || fail "$dir still exists after down"
  rmdir "$(dirname "$dir")"
  if pgrep -af -- "$dir/"; then fail "private cluster processes are left"; fi
  k get --raw /readyz >/dev/null || fail "the default cluster stopped answering"
  if [ "$(cat "$RUN_DIR/mode")" = full ]; then
    ip link show "$BRIDGE" >/dev/null || fail "the private cluster's down removed the full cluster's bridge"
    "$CLUSTER" status || fail "the full cluster is not whole any more"
  fi
}

t_cp_down_removes_everything() {
  local pids; pids="$(pids_of_cluster)"
  "$CLUSTER" down
  [ ! -e "$STATE_DIR" ] || fail "$STATE_DIR still exists"
  local pid
  for pid in $pids; do ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs"; done
  ! ss -ltnH | grep -E ":($APISERVER_PORT|$ETCD_CLIENT_PORT|$KCM_PORT) " || fail "a cluster port still listens"
}

# --- full mode -------------------------------------------------------------------
t_full_up() {
  MODE=full "$CLUSTER" up
  echo "full start: $(cat "$RUN_DIR/start-seconds")s"
  k get nodes -o wide
}

t_full_up_again_is_noop() {
  local before; before="$(pids_of_cluster)"
  MODE=full "$CLUSTER" up 2>&1 | show | grep -q "already up" || fail "second up did not say 'already up'"
  [ "$before" = "$(pids_of_cluster)" ] || fail "second up changed the processes"
}

t_second_full_cluster_is_refused() {
  local dir; dir="$(mktemp -d)/second"
  if MODE=full MODELSHIP_CLUSTER_DIR="$dir" MODELSHIP_CLUSTER_PORT_BASE=17000 "$CLUSTER" up; then
    fail "a second full cluster started"
  fi
  MODELSHIP_CLUSTER_DIR="$dir" "$CLUSTER" down
  rmdir "$(dirname "$dir")"
  ip link show "$BRIDGE" >/dev/null || fail "the refused cluster's down removed the bridge"
  "$CLUSTER" status || fail "the full cluster is not whole any more"
}

t_full_listens_only_on_loopback_and_bridge() { assert_listens_only_locally; }

t_service_cidr_is_unreachable_on_host() {
  # Forwarded packets (from pods) to a ClusterIP without rules hit the
  # unreachable route; the host's own are rejected after kube-proxy's DNAT.
  ip route show | show | grep -q "^unreachable $SERVICE_CIDR" || fail "no unreachable route for $SERVICE_CIDR"
  local start=$SECONDS
  if curl -s --max-time 10 http://10.233.0.254:81/; then fail "a ClusterIP without a Service answered"; fi
  [ $((SECONDS - start)) -lt 5 ] || fail "a packet to an unused ClusterIP was not rejected at once"
}

t_pod_network_stays_local() {
  # Forwarded traffic in or out of the bridge through any other interface is dropped...
  iptables -w -S MODELSHIP-FORWARD | show | grep -q -- "-i $BRIDGE ! -o $BRIDGE -j DROP" || fail "no rule keeps pod traffic on the bridge"
  if iptables -w -t nat -S POSTROUTING | show | grep -q "MASQUERADE.*$POD_CIDR"; then fail "pod traffic is masqueraded"; fi
  # ...and a pod has no name server but its own loopback.
  local conf
  while read -r conf; do
    if show < "$conf" | grep nameserver | grep -vqx 'nameserver 127.0.0.1'; then fail "$conf names a name server"; fi
  done < <(find "$CONTAINERD_DIR/root/io.containerd.grpc.v1.cri/sandboxes" -name resolv.conf)
}

t_image_from_local_binary_is_imported() {
  "$CLUSTER" image "$TESTAPP_IMAGE" "$BIN/testapp"
  "$BIN/crictl" -r "unix://$CONTAINERD_SOCK" -i "unix://$CONTAINERD_SOCK" images | show | grep -q "modelship.local/testapp"
}

t_pod_from_local_image_becomes_ready() {
  k create namespace app-test
  k -n app-test apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: testapp}
spec:
  replicas: 1
  selector: {matchLabels: {app: testapp}}
  template:
    metadata: {labels: {app: testapp}}
    spec:
      # As the project's pods run: not root, read-only root filesystem.
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: testapp
        image: $TESTAPP_IMAGE
        imagePullPolicy: Never
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: testapp}
spec:
  selector: {app: testapp}
  ports: [{port: 80, targetPort: 8080}]
YAML
  k -n app-test rollout status deployment/testapp --timeout=120s
  k -n app-test get pods -o wide
}

t_service_reached_from_host() {
  local ip; ip="$(k -n app-test get service testapp -o jsonpath='{.spec.clusterIP}')"
  echo "ClusterIP $ip"
  eventually 30 sh -c "curl -sf --max-time 3 http://$ip/ | grep 'hello from testapp-'"
}

# The gateway: Traefik routes an HTTPRoute on the Gateway to testapp's
# endpoints (pod IPs) from the host; only on 127.0.0.1; a second start is a
# no-op. curl connects to 127.0.0.1 itself (--resolve): no name is looked up.
gateway_get() { # gateway_get HOST: the status and body of GET / through the gateway
  curl -sS --max-time 5 --resolve "$1:$GATEWAY_PORT:127.0.0.1" -w '\n%{http_code}' "http://$1:$GATEWAY_PORT/"
}
t_gateway_routes_to_a_service() {
  "$CLUSTER" gateway
  echo "gateway start: $(cat "$RUN_DIR/gateway-start-seconds")s; Traefik build: $(cat "$(traefik_dir)/.build-seconds")s (cold)"
  local before; before="$(pids_of_cluster)"
  "$CLUSTER" gateway 2>&1 | show | grep -q "already up" || fail "a second gateway start did not say 'already up'"
  [ "$before" = "$(pids_of_cluster)" ] || fail "a second gateway start changed the processes"
  k -n app-test apply -f - <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: testapp}
spec:
  parentRefs: [{name: $GATEWAY_NAME, namespace: $GATEWAY_NAMESPACE}]
  hostnames: [testapp.localhost]
  rules: [{backendRefs: [{name: testapp, port: 80}]}]
YAML
  eventually 30 sh -c "curl -sf --max-time 3 --resolve testapp.localhost:$GATEWAY_PORT:127.0.0.1 http://testapp.localhost:$GATEWAY_PORT/ | grep 'hello from testapp-'"
  gateway_get testapp.localhost | show | tail -n 1 | grep -qx 200 || fail "the routed host did not answer 200"
  gateway_get other.localhost | show | tail -n 1 | grep -qx 404 || fail "a host without a route did not get 404"
  "$CLUSTER" status | show | grep -q "gateway .*running" || fail "status does not show the gateway"
  assert_listens_only_locally
}

run_pod() { # run_pod NAMESPACE NAME SERVICEACCOUNT ARGS...: run to completion, print logs
  local ns="$1" name="$2" sa="$3"; shift 3
  local args; args="$(printf '"%s",' "$@")"
  k -n "$ns" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  serviceAccountName: $sa
  containers:
  - name: main
    image: $TESTAPP_IMAGE
    imagePullPolicy: Never
    args: [${args%,}]
YAML
  eventually 90 sh -c "'$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n $ns get pod $name -o jsonpath='{.status.phase}' | grep -qE 'Succeeded|Failed'"
  k -n "$ns" logs "$name"
  [ "$(k -n "$ns" get pod "$name" -o jsonpath='{.status.phase}')" = Succeeded ] || fail "pod $name failed"
}

t_service_reached_from_another_pod() {
  local ip; ip="$(k -n app-test get service testapp -o jsonpath='{.spec.clusterIP}')"
  run_pod app-test client default -get "http://$ip/" | show | grep -q 'hello from testapp-'
}

t_pod_talks_to_api_server_as_its_service_account() {
  k -n app-test create serviceaccount prober
  run_pod app-test whoami prober -whoami | show | grep -qx 'system:serviceaccount:app-test:prober'
}

top_has_numbers() {
  k -n app-test top pod --no-headers 2>&1 | show | grep -qE '^testapp-[^ ]+ +[0-9]+m +[0-9]+Mi'
}
t_kubectl_top_pod_returns_numbers() { eventually 120 top_has_numbers; }

hpa_scaled_out() {
  local util replicas
  util="$(k -n hpa-test get hpa burner -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}')"
  replicas="$(k -n hpa-test get hpa burner -o jsonpath='{.status.desiredReplicas}')"
  echo "utilization ${util:-none}%, desired replicas ${replicas:-none}"
  [ -n "$util" ] && [ "$util" -gt 0 ] && [ "${replicas:-0}" -gt 1 ]
}
t_hpa_scales_out_cpu_burner() {
  k create namespace hpa-test
  # Each pod burns 0.2 CPU against a request of 0.04: 500% of its target.
  # The burn stops by itself after 4 minutes; the namespace goes at the end.
  k -n hpa-test apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: burner}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      containers:
      - name: burner
        image: $TESTAPP_IMAGE
        imagePullPolicy: Never
        args: ["-burn", "0.2", "-burn-for", "4m"]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
        resources: {requests: {cpu: 40m}, limits: {cpu: 250m, memory: 64Mi}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
YAML
  eventually 180 hpa_scaled_out
  k -n hpa-test get hpa burner
  eventually 60 sh -c "[ \"\$('$BIN/kubectl' --kubeconfig='$KUBECONFIG_FILE' -n hpa-test get deployment burner -o jsonpath='{.status.replicas}')\" -gt 1 ]"
  k delete namespace hpa-test --wait=false
}

t_helm_install_and_uninstall() {
  local helm_home; helm_home="$(mktemp -d)"
  export HELM_CACHE_HOME="$helm_home/cache" HELM_CONFIG_HOME="$helm_home/config" HELM_DATA_HOME="$helm_home/data"
  export KUBECONFIG="$KUBECONFIG_FILE"
  "$BIN/helm" version
  "$BIN/helm" install smoke "$TESTDATA/chart" -n helm-test --create-namespace --wait --timeout 60s
  "$BIN/helm" -n helm-test status smoke | show | grep -q 'STATUS: deployed'
  [ "$(k -n helm-test get configmap smoke-greeting -o jsonpath='{.data.greeting}')" = "hello from helm" ] || fail "chart's ConfigMap missing"
  "$BIN/helm" uninstall smoke -n helm-test --wait --timeout 60s
  if k -n helm-test get configmap smoke-greeting 2>/dev/null; then fail "ConfigMap still there after uninstall"; fi
  rm -rf "$helm_home"
}

t_full_down_leaves_nothing_behind() {
  "$CLUSTER" down
  host_snapshot > "$TEST_LOGS/host-after.txt"
  if ! diff -u "$TEST_LOGS/host-before.txt" "$TEST_LOGS/host-after.txt"; then
    fail "the host differs from before cluster-up (diff above)"
  fi
}

# --- driver ------------------------------------------------------------------------
keep_cluster_logs() { # on failure, before down removes them
  if [ -d "$LOG_DIR" ]; then cp -r "$LOG_DIR" "$TEST_LOGS/cluster-logs-$1" || true; fi
}

echo "cluster tests: building or reusing binaries"
BIN="$("$CLUSTER" build)"
export BIN
"$CLUSTER" down >/dev/null 2>&1 || true
run_test cache_key_ignores_the_folder t_cache_key_ignores_the_folder

for mode in "${modes[@]}"; do
  case "$mode" in
    control-plane)
      failed_before=$HARNESS_FAILED
      run_test cp_up t_cp_up
      if [ "$HARNESS_FAILED" -eq "$failed_before" ]; then
        run_test cp_up_again_is_noop t_cp_up_again_is_noop
        run_test cp_listens_only_on_loopback t_cp_listens_only_on_loopback
        run_test cp_gateway_is_refused t_cp_gateway_is_refused
        run_test crd_and_custom_object_apply t_crd_and_custom_object_apply
        run_test owned_deployment_is_garbage_collected t_owned_deployment_is_garbage_collected
        run_test hpa_controller_reconciles t_hpa_controller_reconciles
        run_test private_control_plane_runs_beside t_private_control_plane_runs_beside
      fi
      [ "$HARNESS_FAILED" -eq "$failed_before" ] || keep_cluster_logs control-plane
      run_test cp_down_removes_everything t_cp_down_removes_everything
      ;;
    full)
      if [ "$(id -u)" -ne 0 ]; then
        skip_test full_mode "full mode runs a node and needs root"
        continue
      fi
      # The snapshot reads iptables and conntrack state, so their packages
      # come first (a fresh machine may not have them yet).
      ensure_node_packages
      host_snapshot > "$TEST_LOGS/host-before.txt"
      failed_before=$HARNESS_FAILED
      run_test full_up t_full_up
      if [ "$HARNESS_FAILED" -eq "$failed_before" ]; then
        run_test full_up_again_is_noop t_full_up_again_is_noop
        run_test second_full_cluster_is_refused t_second_full_cluster_is_refused
        run_test full_listens_only_on_loopback_and_bridge t_full_listens_only_on_loopback_and_bridge
        run_test service_cidr_is_unreachable_on_host t_service_cidr_is_unreachable_on_host
        run_test image_from_local_binary_is_imported t_image_from_local_binary_is_imported
        run_test pod_from_local_image_becomes_ready t_pod_from_local_image_becomes_ready
        run_test service_reached_from_host t_service_reached_from_host
        run_test service_reached_from_another_pod t_service_reached_from_another_pod
        run_test gateway_routes_to_a_service t_gateway_routes_to_a_service
        run_test pod_network_stays_local t_pod_network_stays_local
        run_test pod_talks_to_api_server_as_its_service_account t_pod_talks_to_api_server_as_its_service_account
        run_test kubectl_top_pod_returns_numbers t_kubectl_top_pod_returns_numbers
        run_test hpa_scales_out_cpu_burner t_hpa_scales_out_cpu_burner
        run_test helm_install_and_uninstall t_helm_install_and_uninstall
        run_test private_control_plane_runs_beside_full_cluster t_private_control_plane_runs_beside
      fi
      [ "$HARNESS_FAILED" -eq "$failed_before" ] || keep_cluster_logs full
      run_test full_down_leaves_nothing_behind t_full_down_leaves_nothing_behind
      ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
harness_summary
