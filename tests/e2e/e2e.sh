#!/usr/bin/env bash
# The user's journey on the full local cluster, through the chart:
#
#   tests/e2e/e2e.sh
#
# Needs a full cluster (make cluster-up) with the images loaded
# (scripts/build-images.sh); without one every test is skipped with the reason.
# Installs the chart as release "modelship-e2e" in namespace modelship-e2e,
# works in namespace e2e-models, and removes all of it at the end.
#
#   helm_install_operator_ready       helm install --wait with replicaCount=2; both operator
#                                     pods Ready, exactly one of them leads
#   iris_ready_and_predicts           examples/iris.yaml Ready within a bound; labels 0, 1, 2
#                                     for the three reference flowers through the Service
#                                     from the host; the Service answers a pod too
#   public_url_*, public_page_in_chromium  the public URL through the cluster's gateway
#                                     (tests/e2e/public_url.sh): predictions, the page in
#                                     Chromium, /metrics 404, a path prefix, expose removed
#   grpc_*                            gRPC (tests/e2e/grpc.sh): the grpc readiness probe, a
#                                     prediction through the Service's grpc port and through
#                                     the GRPCRoute, API keys over gRPC
#   canary_*                          the canary through the gateway (tests/e2e/canary.sh): a
#                                     10% split over REST and gRPC, promotion under load with
#                                     zero errors, a canary that cannot load gets 0%
#   api_keys_through_gateway_and_rotated  API keys through the gateway (tests/e2e/auth.sh):
#                                     401/200, then the Secret rotated under load: the new key
#                                     in, the old out, no restart, zero failed requests
#   rolling_update_under_load         spec.model changed to iris-rf over http while 4 clients
#                                     send requests (a new connection each): zero non-200
#                                     responses and zero connection errors, the new model
#                                     (version 2, iris-rf's probabilities) served afterwards
#   autoscaling_out_and_in            an autoscaled ModelDeployment under load scales out
#                                     beyond minReplicas, and back in after the load stops
#   missing_model_is_degraded_then_fixed  a 404 model URI gives Degraded/ModelFetchFailed
#                                     with the cause; a good URI (iris-rf over http) makes it Ready
#   operator_killed_standby_takes_over  only the leader reconciles; SIGKILL to the leader's
#                                     process right after three ModelDeployments are created:
#                                     all three Ready, each with exactly one Deployment,
#                                     ReplicaSet and Service; SIGSTOP to the leader: the
#                                     standby takes the Lease and reconciles; thawed, the old
#                                     leader steps down
#   delete_removes_children           kubectl delete mdep: Deployment, Service, pods gone
#   uninstall_keeps_only_the_crd      helm uninstall leaves no operator object; the CRD stays
#
# Load comes from tests/e2e/load.py on the host, through the Services'
# ClusterIPs (kube-proxy), bounded in time. The file server that serves
# iris-rf listens on the node address (the cluster's bridge, 10.233.64.1), on
# a port of its own, and stops with the script. Bounds (seconds) can be
# widened for slow machines: E2E_READY_BOUND, E2E_SCALE_BOUND.
# The harness is hack/lib/harness.sh: PASS/FAIL/SKIP per test, then
# "N passed, N failed, N skipped". REQUIRE_NO_SKIP=1 (make test-e2e) turns
# "cannot run here" into a failure.
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
RELEASE=modelship-e2e
RELEASE_NS=modelship-e2e
METRICS_READER="metrics-scraper"
NS=e2e-models
NODE_IP=10.233.64.1
FILE_PORT="${E2E_FILE_PORT:-18780}"
READY_BOUND="${E2E_READY_BOUND:-120}"
SCALE_BOUND="${E2E_SCALE_BOUND:-180}"
OPERATOR_REPLICAS=2
WORK="$(mktemp -d /tmp/modelship-e2e.XXXXXX)"
TEST_LOGS="$WORK"
# shellcheck source=../../hack/lib/harness.sh
source "$ROOT/hack/lib/harness.sh"
FILE_SERVER_PID=""

eval "$("$CLUSTER_SH" env)"

cleanup() {
  if [ -n "$FILE_SERVER_PID" ]; then kill "$FILE_SERVER_PID" 2>/dev/null || true; fi
  if [ -n "${CLUSTER_OK:-}" ]; then
    kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    helm uninstall "$RELEASE" -n "$RELEASE_NS" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$RELEASE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# shellcheck source=public_url.sh
source "$ROOT/tests/e2e/public_url.sh"
# shellcheck source=grpc.sh
source "$ROOT/tests/e2e/grpc.sh"
# shellcheck source=canary.sh
source "$ROOT/tests/e2e/canary.sh"
# shellcheck source=auth.sh
source "$ROOT/tests/e2e/auth.sh"

# skip_all REASON: the suite cannot run here; every test is reported skipped.
skip_all() {
  local t
  for t in helm_install_operator_ready $AFTER_INSTALL; do skip_test "$t" "$1"; done
}
AFTER_INSTALL="iris_ready_and_predicts $PUBLIC_TESTS $GRPC_TESTS $CANARY_TESTS $AUTH_TESTS rolling_update_under_load autoscaling_out_and_in
  missing_model_is_degraded_then_fixed operator_killed_standby_takes_over public_url_through_ingress
  delete_removes_children
  uninstall_keeps_only_the_crd"

# load_was_clean SUMMARY WHAT MIN: load.py's summary holds at least MIN requests, every one
# answered 200, no connection error; prints it and a MEASURED line (non-zero exit otherwise).
load_was_clean() {
  python3 - "$@" <<'PY'
import json, sys
path, what, least = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open(path))
print(f"load {what}:", json.dumps(s))
assert s["requests"] >= least, "too few requests to mean anything: %d" % s["requests"]
assert s["status"] == {"200": s["requests"]}, "non-200 responses: %s" % s["status"]
assert not s["errors"], "connection errors: %s" % s["errors"]
print("MEASURED %s under load: %d requests, %d non-200, %d connection errors"
      % (what, s["requests"], s["requests"] - s["status"].get("200", 0), sum(s["errors"].values())))
PY
}

# wait_for SECONDS WHAT 'SHELL CODE': evaluate the code once a second (its
# command substitutions anew each time) until it succeeds.
wait_for() {
  local bound="$1" what="$2" code="$3" t0=$SECONDS
  until eval "$code" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt "$bound" ] || { echo "FAILED: $what not within $bound s"; return 1; }
    sleep 1
  done
}
service_ip() { kubectl -n "$NS" get service "$1" -o jsonpath='{.spec.clusterIP}'; }

# start_file_server: iris-rf (and its card) over http on the node address.
start_file_server() {
  mkdir -p "$WORK/files"
  cp "$ROOT/models/iris-rf.onnx" "$ROOT/models/iris-rf.card.json" "$WORK/files/"
  python3 -m http.server --bind "$NODE_IP" --directory "$WORK/files" "$FILE_PORT" >"$WORK/file-server.log" 2>&1 &
  FILE_SERVER_PID=$!
  wait_for 20 "the file server on $NODE_IP:$FILE_PORT" 'curl -sf -o /dev/null "http://$NODE_IP:$FILE_PORT/iris-rf.onnx"'
}

# metrics_token: a token of $METRICS_READER, bound to the chart's metrics reader
# ClusterRole by the install's metrics.readers.
metrics_token() { kubectl -n "$RELEASE_NS" create token "$METRICS_READER" --duration=10m; }
# operator_metric POD NAME: the value of a metric on one operator pod (0 when absent).
# Prints nothing when the pod does not answer, so that no check passes on a
# pod it could not read.
operator_metric() {
  local ip out
  ip="$(kubectl -n "$RELEASE_NS" get pod "$1" -o jsonpath='{.status.podIP}')"
  # The chart's secure metrics: HTTPS (self-signed) and a token of a metrics reader.
  out="$(curl -sSk --fail --max-time 5 -H "Authorization: Bearer $(metrics_token)" "https://$ip:8080/metrics")" || return 1
  awk -v m="$2" '$1 == m {v = $2} END {print v + 0}' <<<"$out"
}
# operator_pid POD: the operator process of that pod, on this node.
operator_pid() {
  local pid
  for pid in $(pgrep -x modelship-opera); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -x "POD_NAME=$1" >/dev/null; then echo "$pid"; return 0; fi
  done
  return 1
}
# children_are_single NAME...: each ModelDeployment has exactly one
# Deployment, ReplicaSet and Service, the Deployment owned by it.
children_are_single() {
  local name uid counts
  for name in "$@"; do
    uid="$(kubectl -n "$NS" get mdep "$name" -o jsonpath='{.metadata.uid}')"
    counts="$(for kind in deployment replicaset service; do
      kubectl -n "$NS" get "$kind" -l app.kubernetes.io/instance="$name" -o name | wc -l; done | tr '\n' ' ')"
    [ "$counts" = "1 1 1 " ] || fail "$name: deployments, replicasets, services = $counts, not one each"
    [ "$(kubectl -n "$NS" get deployment "$name" -o jsonpath='{.metadata.ownerReferences[0].uid}')" = "$uid" ] \
      || fail "$name: the Deployment is not owned by the ModelDeployment"
  done
}
operator_pods() {
  kubectl -n "$RELEASE_NS" get pods -l app.kubernetes.io/instance="$RELEASE" \
    --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}
lease_holder() { kubectl -n "$RELEASE_NS" get lease "$RELEASE" -o jsonpath='{.spec.holderIdentity}'; }

# infer IP FEATURES: the label the model at the Service IP predicts.
infer() {
  curl -sS --fail-with-body --max-time 10 "http://$1/v2/models/$2/infer" \
    -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[$3]}]}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["outputs"][0]["data"][0])'
}

test_helm_install_operator_ready() {
  local t0=$SECONDS
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  # A CRD kept by an earlier, uninstalled release belongs to that release's
  # name: hand it over to this one, as docs/chart.md says. One that Helm never
  # managed (the operator's integration tests install it by hand) is adopted.
  if kubectl get crd modeldeployments.modelship.io >/dev/null 2>&1; then
    kubectl label crd modeldeployments.modelship.io --overwrite app.kubernetes.io/managed-by=Helm
    kubectl annotate crd modeldeployments.modelship.io --overwrite \
      meta.helm.sh/release-name="$RELEASE" meta.helm.sh/release-namespace="$RELEASE_NS"
  fi
  expose_values "$WORK/values-expose.yaml"
  helm install "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --create-namespace --wait --timeout 180s \
    --set replicaCount="$OPERATOR_REPLICAS" -f "$WORK/values-expose.yaml" \
    --set "metrics.readers[0].name=$METRICS_READER" --set "metrics.readers[0].namespace=$RELEASE_NS"
  kubectl -n "$RELEASE_NS" create serviceaccount "$METRICS_READER" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$RELEASE_NS" get pods -o wide
  kubectl -n "$RELEASE_NS" wait pod -l app.kubernetes.io/instance="$RELEASE" --for=condition=Ready --timeout=30s
  echo "MEASURED helm install --wait to operator Ready ($OPERATOR_REPLICAS replicas): $((SECONDS - t0)) s"
  [ "$(operator_pods | wc -l)" = "$OPERATOR_REPLICAS" ] || fail "not $OPERATOR_REPLICAS operator pods"
  wait_for 30 "a leader" 'test -n "$(lease_holder)"'
  local leaders=0 pod
  for pod in $(operator_pods); do
    leaders=$((leaders + $(operator_metric "$pod" modelship_operator_leader)))
    kubectl -n "$RELEASE_NS" logs "$pod" | grep -E 'became the leader|standing by'
  done
  [ "$leaders" = 1 ] || fail "$leaders operator pods say they lead, not 1"
  echo "leader: $(lease_holder)"
}

test_iris_ready_and_predicts() {
  local t0=$SECONDS ip
  kubectl -n "$NS" apply -f "$ROOT/examples/iris.yaml"
  kubectl -n "$NS" wait mdep/iris --for=condition=Ready --timeout="${READY_BOUND}s" \
    || { kubectl -n "$NS" describe mdep iris; fail "iris not Ready within $READY_BOUND s"; }
  echo "MEASURED apply to Ready: $((SECONDS - t0)) s (bound $READY_BOUND s)"
  kubectl -n "$NS" get mdep iris
  ip="$(kubectl -n "$NS" get service iris -o jsonpath='{.spec.clusterIP}')"
  # The three reference flowers: setosa, versicolor, virginica.
  [ "$(infer "$ip" iris 5.1,3.5,1.4,0.2)" = 0 ] || fail "setosa"
  [ "$(infer "$ip" iris 6.0,2.9,4.5,1.5)" = 1 ] || fail "versicolor"
  [ "$(infer "$ip" iris 6.9,3.1,5.4,2.1)" = 2 ] || fail "virginica"
  echo "labels 0, 1, 2 from the host through $ip"
  # From a pod: a one-shot pod of the server image itself, fetching the
  # model through the Service's http:// URL (its own HTTP client).
  kubectl -n "$NS" run from-pod --restart=Never --image=modelship/server:dev --image-pull-policy=IfNotPresent \
    --overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":65532,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"from-pod","image":"modelship/server:dev","imagePullPolicy":"IfNotPresent","args":["fetch","http://'"$ip"'/v2/models/iris","/tmp/out"],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
  local phase=""
  for _ in $(seq 1 60); do
    phase="$(kubectl -n "$NS" get pod from-pod -o jsonpath='{.status.phase}')"
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 1
  done
  kubectl -n "$NS" logs from-pod || true
  kubectl -n "$NS" delete pod from-pod --wait=false
  [ "$phase" = Succeeded ] || fail "a pod could not reach the model's Service (phase $phase)"
}

# iris-rf's reference probabilities for its least certain reference flower
# (from the generator's reference file): an answer that matches them comes
# from iris-rf, not from the logistic regression it replaced.
rf_reference() {
  python3 - "$ROOT/models/reference/iris-rf.json" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
probs = ref["outputs"]["probabilities"]["data"]
rows = [probs[i:i + 3] for i in range(0, len(probs), 3)]
i = min(range(len(rows)), key=lambda r: max(rows[r]))
print(json.dumps({"input": ref["input"]["data"][4 * i:4 * i + 4], "probabilities": rows[i]}))
PY
}

test_rolling_update_under_load() {
  local ip stop="$WORK/rollout.stop" load t0
  ip="$(service_ip iris)"
  python3 "$ROOT/tests/e2e/load.py" "http://$ip/v2/models/iris/infer" --seconds 300 --threads 4 \
    --new-connections --stop-file "$stop" --summary "$WORK/rollout-load.json" &
  load=$!
  sleep 3
  t0=$SECONDS
  kubectl -n "$NS" patch mdep iris --type=merge \
    -p "{\"spec\":{\"model\":{\"uri\":\"http://$NODE_IP:$FILE_PORT/iris-rf.onnx\",\"version\":\"2\"}}}"
  local generation; generation="$(kubectl -n "$NS" get mdep iris -o jsonpath='{.metadata.generation}')"
  wait_for 30 "the operator to observe generation $generation" \
    'test "$(kubectl -n "$NS" get mdep iris -o jsonpath="{.status.observedGeneration}")" = "$generation"'
  kubectl -n "$NS" rollout status deployment/iris --timeout="${READY_BOUND}s"
  # The old pod drains (5 s) and exits; the load goes on until it is gone.
  wait_for 60 "the old pod to go" \
    'test "$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=iris -o name | wc -l)" = 1'
  kubectl -n "$NS" wait mdep/iris --for=condition=Ready --timeout=30s
  echo "MEASURED model change to rolled out, old pod gone: $((SECONDS - t0)) s"
  sleep 2
  touch "$stop"
  wait "$load" || fail "the load generator failed"
  kubectl -n "$NS" get mdep iris
  python3 - "$WORK/rollout-load.json" <<'PY' || fail "requests failed during the rolling update"
import json, sys
s = json.load(open(sys.argv[1]))
print("load during the rollout:", json.dumps(s))
assert s["requests"] >= 100, "too few requests to mean anything: %d" % s["requests"]
assert s["status"] == {"200": s["requests"]}, "non-200 responses: %s" % s["status"]
assert not s["errors"], "connection errors: %s" % s["errors"]
assert s["model_version"].get("-", 0) > 0 and s["model_version"].get("2", 0) > 0, \
    "both the old and the new model should have answered during the run: %s" % s["model_version"]
print("MEASURED rolling update under load: %d requests, %d non-200, %d connection errors"
      % (s["requests"], s["requests"] - s["status"].get("200", 0), sum(s["errors"].values())))
PY
  # The new model answers: iris-rf's probabilities for the reference flower.
  local ref features
  ref="$(rf_reference)"
  features="$(echo "$ref" | python3 -c 'import json, sys; print(json.load(sys.stdin)["input"])')"
  curl -sS --fail-with-body --max-time 10 "http://$ip/v2/models/iris/versions/2/infer" \
    -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":$features}]}" \
    >"$WORK/rf-answer.json"
  python3 - "$WORK/rf-answer.json" "$ref" <<'PY' || fail "the model served after the update is not iris-rf"
import json, sys
answer, ref = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
got = next(o for o in answer["outputs"] if o["name"] == "probabilities")["data"]
print("iris-rf probabilities", got, "reference", ref["probabilities"])
assert answer["model_version"] == "2", answer
assert all(abs(a - b) < 1e-4 for a, b in zip(got, ref["probabilities"])), (got, ref["probabilities"])
PY
}

test_autoscaling_out_and_in() {
  kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: scaled}
spec:
  model: {uri: builtin://iris}
  resources:
    requests: {cpu: 25m, memory: 32Mi}
  autoscaling:
    minReplicas: 1
    maxReplicas: 3
    targetCPUUtilizationPercentage: 50
    behavior:
      scaleUp:
        stabilizationWindowSeconds: 0
        policies: [{type: Pods, value: 2, periodSeconds: 5}]
      scaleDown:
        stabilizationWindowSeconds: 15
        policies: [{type: Percent, value: 100, periodSeconds: 5}]
YAML
  kubectl -n "$NS" wait mdep/scaled --for=condition=Ready --timeout="${READY_BOUND}s"
  # The HPA needs a first CPU sample from metrics-server before load means anything.
  wait_for 90 "a CPU reading on the HPA" \
    'test -n "$(kubectl -n "$NS" get hpa scaled -o jsonpath="{.status.currentMetrics[0].resource.current.averageUtilization}")"'
  kubectl -n "$NS" get hpa scaled
  local ip stop="$WORK/scale.stop" load t0
  ip="$(service_ip scaled)"
  python3 "$ROOT/tests/e2e/load.py" "http://$ip/v2/models/scaled/infer" --seconds "$SCALE_BOUND" --threads 4 \
    --stop-file "$stop" --summary "$WORK/scale-load.json" &
  load=$!
  t0=$SECONDS
  if ! wait_for "$SCALE_BOUND" "scale-out beyond minReplicas (2+ ready replicas)" \
    'test "$(kubectl -n "$NS" get mdep scaled -o jsonpath="{.status.readyReplicas}")" -ge 2'; then
    touch "$stop"; wait "$load" || true; kubectl -n "$NS" describe hpa scaled; return 1
  fi
  echo "MEASURED load start to 2+ ready replicas: $((SECONDS - t0)) s"
  kubectl -n "$NS" get hpa scaled
  kubectl -n "$NS" get mdep scaled
  touch "$stop"
  wait "$load"
  t0=$SECONDS
  wait_for "$SCALE_BOUND" "scale-in back to 1 replica after the load" \
    'test "$(kubectl -n "$NS" get deployment scaled -o jsonpath="{.spec.replicas}/{.status.replicas}")" = 1/1'
  echo "MEASURED load stop to 1 replica: $((SECONDS - t0)) s"
  kubectl -n "$NS" get hpa scaled
  kubectl -n "$NS" get mdep scaled
  kubectl -n "$NS" delete mdep scaled --wait=true
}

# only_the_leader_reconciles LEADER STANDBY: the standby has run no
# reconciliation at all, though the earlier tests made the leader run many.
only_the_leader_reconciles() {
  [ "$(operator_metric "$2" modelship_operator_reconciliations_total)" = 0 ] || fail "the standby $2 reconciled"
  [ "$(operator_metric "$1" modelship_operator_reconciliations_total)" -gt 0 ] || fail "the leader never reconciled"
}

# leader_killed_mid_flight_loses_nothing LEADER: SIGKILL to the leader's
# process right after three ModelDeployments are created. Its container
# restarts under the same identity and, the Lease being its own, leads again
# at once; nothing may be lost or made twice.
leader_killed_mid_flight_loses_nothing() {
  local leader="$1" pid t0 name
  for name in kill-a kill-b kill-c; do
    printf 'apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: %s}\nspec: {model: {uri: "builtin://iris"}}\n---\n' "$name"
  done | kubectl -n "$NS" apply -f -
  pid="$(operator_pid "$leader")" || fail "no process of $leader on the node"
  kill -KILL "$pid"
  t0=$SECONDS
  echo "SIGKILL to the leader $leader (pid $pid)"
  for name in kill-a kill-b kill-c; do
    kubectl -n "$NS" wait "mdep/$name" --for=condition=Ready --timeout="${READY_BOUND}s"
  done
  echo "MEASURED leader killed mid-flight to all three Ready: $((SECONDS - t0)) s (lease held by $(lease_holder))"
  children_are_single kill-a kill-b kill-c
}

# standby_takes_over_a_frozen_leader LEADER STANDBY PID: with the leader
# frozen (SIGSTOP: a hung or cut-off process, which can neither renew nor
# release the Lease, and whose pod is not replaced), the standby takes the
# Lease once it expires and reconciles.
standby_takes_over_a_frozen_leader() {
  local leader="$1" standby="$2" pid="$3" t0=$SECONDS
  kill -STOP "$pid"
  echo "SIGSTOP to the leader $leader (pid $pid)"
  wait_for 60 "the standby $standby to take the Lease" 'test "$(lease_holder)" = "$standby"'
  echo "MEASURED leader frozen to standby holding the Lease: $((SECONDS - t0)) s (Lease duration 15 s)"
  printf 'apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: kill-d}\nspec: {model: {uri: "builtin://iris"}}\n' |
    kubectl -n "$NS" apply -f -
  kubectl -n "$NS" wait mdep/kill-d --for=condition=Ready --timeout="${READY_BOUND}s"
  [ "$(operator_metric "$standby" modelship_operator_leader)" = 1 ] || fail "$standby does not say it leads"
  [ "$(operator_metric "$standby" modelship_operator_reconciliations_total)" -gt 0 ] || fail "$standby did not reconcile"
}

# thawed_leader_steps_down LEADER STANDBY PID RESTARTS: thawed, the old
# leader finds the Lease taken and exits, so that it never reconciles beside
# the new one; restarted, it stands by.
thawed_leader_steps_down() {
  local leader="$1" standby="$2" pid="$3" restarts="$4"
  kill -CONT "$pid"
  wait_for 60 "the old leader $leader to step down and come back" \
    'test "$(kubectl -n "$RELEASE_NS" get pod "$leader" -o jsonpath="{.status.containerStatuses[0].restartCount}")" -gt "$restarts" &&
     kubectl -n "$RELEASE_NS" wait pod "$leader" --for=condition=Ready --timeout=1s'
  kubectl -n "$RELEASE_NS" logs "$leader" --previous | grep -E 'lost the leader Lease' || fail "$leader did not say it lost the Lease"
  kubectl -n "$RELEASE_NS" get pods
  [ "$(lease_holder)" = "$standby" ] || fail "the Lease went back to $(lease_holder)"
  [ "$(operator_metric "$leader" modelship_operator_leader)" = 0 ] || fail "the restarted $leader leads too"
  [ "$(operator_metric "$leader" modelship_operator_reconciliations_total)" = 0 ] || fail "the restarted $leader reconciles"
}

test_operator_killed_standby_takes_over() {
  local leader standby pid restarts
  leader="$(lease_holder)"
  standby="$(operator_pods | grep -vx "$leader" | head -n 1)"
  if [ -z "$leader" ] || [ -z "$standby" ]; then fail "need a leader and a standby (leader '$leader', standby '$standby')"; fi
  only_the_leader_reconciles "$leader" "$standby"
  leader_killed_mid_flight_loses_nothing "$leader"

  leader="$(lease_holder)"
  standby="$(operator_pods | grep -vx "$leader" | head -n 1)"
  restarts="$(kubectl -n "$RELEASE_NS" get pod "$leader" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
  pid="$(operator_pid "$leader")" || fail "no process of $leader on the node"
  # Whatever fails from here on, the frozen process is thawed ($pid expanded
  # now: the trap runs after this function's locals are gone).
  # shellcheck disable=SC2064
  trap "kill -CONT $pid 2>/dev/null || true" EXIT
  standby_takes_over_a_frozen_leader "$leader" "$standby" "$pid"
  thawed_leader_steps_down "$leader" "$standby" "$pid" "$restarts"
  children_are_single kill-a kill-b kill-c kill-d
  kubectl -n "$NS" delete mdep kill-a kill-b kill-c kill-d --wait=true
}

test_missing_model_is_degraded_then_fixed() {
  local t0=$SECONDS
  kubectl -n "$NS" apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: fetched}
spec:
  model: {uri: "http://$NODE_IP:$FILE_PORT/missing.onnx", name: iris-rf}
EOF
  local reason=""
  for _ in $(seq 1 120); do
    reason="$(kubectl -n "$NS" get mdep fetched -o jsonpath='{.status.conditions[?(@.type=="Degraded")].reason}')"
    [ "$reason" = ModelFetchFailed ] && break
    sleep 1
  done
  kubectl -n "$NS" get mdep fetched -o jsonpath='{.status.conditions}'; echo
  [ "$reason" = ModelFetchFailed ] || fail "Degraded reason is '$reason', not ModelFetchFailed"
  kubectl -n "$NS" get mdep fetched -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}' | grep 404 >/dev/null \
    || fail "the Degraded message does not give the cause (404)"
  echo "MEASURED 404 URI to Degraded/ModelFetchFailed: $((SECONDS - t0)) s"
  t0=$SECONDS
  kubectl -n "$NS" patch mdep fetched --type=merge -p "{\"spec\":{\"model\":{\"uri\":\"http://$NODE_IP:$FILE_PORT/iris-rf.onnx\"}}}"
  kubectl -n "$NS" wait mdep/fetched --for=condition=Ready --timeout="${READY_BOUND}s" \
    || { kubectl -n "$NS" describe mdep fetched; fail "not Ready after the URI was fixed"; }
  echo "MEASURED fixed URI to Ready: $((SECONDS - t0)) s"
  local ip; ip="$(kubectl -n "$NS" get service fetched -o jsonpath='{.spec.clusterIP}')"
  [ "$(infer "$ip" iris-rf 6.9,3.1,5.4,2.1)" = 2 ] || fail "iris-rf does not predict virginica"
  kubectl -n "$NS" delete mdep fetched --wait=true
}

test_delete_removes_children() {
  kubectl -n "$NS" get deployment,service iris
  kubectl -n "$NS" delete mdep iris --wait=true
  for _ in $(seq 1 60); do
    if [ -z "$(kubectl -n "$NS" get deployment,service,hpa,replicaset,pod -l app.kubernetes.io/instance=iris -o name)" ]; then
      echo "children of iris are gone"; return 0
    fi
    sleep 1
  done
  kubectl -n "$NS" get deployment,service,hpa,replicaset,pod -l app.kubernetes.io/instance=iris
  fail "children of iris are still there after 60 s"
}

test_uninstall_keeps_only_the_crd() {
  helm uninstall "$RELEASE" -n "$RELEASE_NS" --wait
  local left
  left="$(kubectl get deployment,serviceaccount,service,role,rolebinding,lease -n "$RELEASE_NS" -l app.kubernetes.io/instance="$RELEASE" -o name; \
          kubectl get clusterrole,clusterrolebinding -l app.kubernetes.io/instance="$RELEASE" -o name)"
  [ -z "$left" ] || fail "left behind: $left"
  kubectl get crd modeldeployments.modelship.io
  # Leave the cluster as found: a CRD this run made goes; one that was there
  # goes back to its owner.
  if [ -z "$CRD_OWNER" ]; then
    kubectl delete crd modeldeployments.modelship.io
  elif [ "$CRD_OWNER" = unowned/ ]; then
    echo "the CRD was here before, without a Helm owner: kept"
  else
    kubectl annotate crd modeldeployments.modelship.io --overwrite \
      meta.helm.sh/release-name="${CRD_OWNER%%/*}" meta.helm.sh/release-namespace="${CRD_OWNER#*/}"
  fi
}

echo "chart end-to-end tests (logs in $WORK)"
if ! kubectl get --raw /readyz >/dev/null 2>&1; then
  skip_all "no cluster at $KUBECONFIG: make cluster-up"
elif [ -z "$(kubectl get nodes -o name 2>/dev/null)" ]; then
  skip_all "the cluster has no node: full mode needed (make cluster-up)"
elif ! ctr --address "$MODELSHIP_CLUSTER_DIR/run/containerd.sock" -n k8s.io images ls -q 2>/dev/null | grep 'modelship/server:dev' >/dev/null; then
  skip_all "images not loaded: scripts/build-images.sh"
elif helm status "$RELEASE" -n "$RELEASE_NS" >/dev/null 2>&1 || helm list -A -q | grep . >/dev/null; then
  skip_all "a modelship release is already installed (helm list -A); the CRD has one owner"
else
  CLUSTER_OK=1
  # release-name/release-namespace of a CRD kept from before this run: empty
  # when there is none, unowned/ for one without a Helm owner (kept at the end).
  CRD_OWNER=""
  if kubectl get crd modeldeployments.modelship.io >/dev/null 2>&1; then
    CRD_OWNER="$(kubectl get crd modeldeployments.modelship.io -o go-template='{{with .metadata.annotations}}{{with index . "meta.helm.sh/release-name"}}{{.}}{{end}}/{{with index . "meta.helm.sh/release-namespace"}}{{.}}{{end}}{{end}}')"
    case "$CRD_OWNER" in ""|/) CRD_OWNER=unowned/ ;; esac
  fi
  export CRD_OWNER
  start_file_server
  run_test helm_install_operator_ready test_helm_install_operator_ready
  if [ "$HARNESS_FAILED" = 0 ]; then
    for t in $AFTER_INSTALL; do run_test "$t" "test_$t"; done
  else
    for t in $AFTER_INSTALL; do skip_test "$t" "the operator is not installed"; done
  fi
fi
harness_summary
