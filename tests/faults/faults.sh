#!/usr/bin/env bash
# The operator under faults, on the full local cluster, through the chart:
#
#   tests/faults/faults.sh
#
# Needs a full cluster with the images loaded (tests/faults/run.sh does both);
# without one every test is skipped with the reason. Installs the chart as
# release "modelship-faults" (two replicas, leader election) and removes it,
# and every namespace it made, at the end.
#
#   operator_installed                helm install --wait, two replicas, one leader
#   budget_allows_one_eviction_then_refuses  replicas 2: a PodDisruptionBudget (maxUnavailable 1,
#                                     owned), soft spread on the pods; the first eviction is
#                                     allowed (201), the second refused (429) while the
#                                     replacement is not Ready (its model fetch made slow);
#                                     replicas 1: the budget is deleted
#   apiserver_restarted_during_creates  FAULTS_OBJECTS (200) ModelDeployments, most at replicas 0,
#                                     created while kube-apiserver is restarted half-way:
#                                     all converged (tests/faults/converged.py)
#   etcd_stopped_during_updates       50 spec updates while etcd is stopped for 20 s: all
#                                     converged to the new specs
#   create_delete_cycles              FAULTS_CYCLES (15; 500 with FAULTS_LONG=1) create/delete
#                                     cycles of one name with a changing spec: each status is
#                                     the new object's (UID, version), nothing left behind
#   leader_cut_off_no_two_writers     the leader's traffic to the API server dropped for
#                                     FAULTS_CUT_SECONDS (30, twice the Lease): the standby takes
#                                     over, the cut one rejoins as standby, and the audit log
#                                     shows no write from it after its Lease ran out
#   uninstall                         helm uninstall; the namespaces go
#
# Figures (operator peak RSS, reconciles per object, times) are MEASURED lines.
# The harness is hack/lib/harness.sh.
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/faults"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
AUDIT_LOG="$MODELSHIP_CLUSTER_DIR/logs/audit.log"
RELEASE=modelship-faults
RELEASE_NS=modelship-faults
METRICS_READER="metrics-scraper"
NS=faults-models
NODE_IP=10.233.64.1
FILE_PORT="${FAULTS_FILE_PORT:-18790}"
OBJECTS="${FAULTS_OBJECTS:-200}"
if [ "${FAULTS_LONG:-0}" = 1 ]; then CYCLES="${FAULTS_CYCLES:-500}"; else CYCLES="${FAULTS_CYCLES:-15}"; fi
CUT_SECONDS="${FAULTS_CUT_SECONDS:-30}"
LEASE_SECONDS=15
WORK="$(mktemp -d /tmp/modelship-faults.XXXXXX)"
TEST_LOGS="$WORK"
# shellcheck source=../../hack/lib/harness.sh
source "$ROOT/hack/lib/harness.sh"
eval "$("$CLUSTER_SH" env)"

cleanup() {
  if [ -n "${CLUSTER_OK:-}" ]; then
    # Whatever a failed test left broken is mended first.
    "$CLUSTER_SH" fault start etcd >/dev/null 2>&1 || true
    "$CLUSTER_SH" fault start kube-apiserver >/dev/null 2>&1 || true
    for pod in $(operator_pods 2>/dev/null); do
      "$CLUSTER_SH" fault restore-api "$RELEASE_NS/$pod" >/dev/null 2>&1 || true
    done
    kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    helm uninstall "$RELEASE" -n "$RELEASE_NS" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$RELEASE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

TESTS="operator_installed budget_allows_one_eviction_then_refuses apiserver_restarted_during_creates
  etcd_stopped_during_updates create_delete_cycles leader_cut_off_no_two_writers uninstall"

# wait_for SECONDS WHAT 'SHELL CODE': evaluate the code once a second until it succeeds.
wait_for() {
  local bound="$1" what="$2" code="$3" t0=$SECONDS
  until eval "$code" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt "$bound" ] || { echo "FAILED: $what not within $bound s"; return 1; }
    sleep 1
  done
}
lease_holder() { kubectl -n "$RELEASE_NS" get lease "$RELEASE" -o jsonpath='{.spec.holderIdentity}'; }
operator_pods() {
  kubectl -n "$RELEASE_NS" get pods -l app.kubernetes.io/instance="$RELEASE" \
    --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}
# operator_pid POD: the operator process of that pod, on this node.
operator_pid() {
  local pid
  for pid in $(pgrep -x modelship-opera); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -x "POD_NAME=$1" >/dev/null; then echo "$pid"; return 0; fi
  done
  return 1
}
# metrics_token: a token of $METRICS_READER, bound to the chart's metrics reader
# ClusterRole by the install's metrics.readers.
metrics_token() { kubectl -n "$RELEASE_NS" create token "$METRICS_READER" --duration=10m; }
# operator_metric POD NAME: a metric's value on one operator pod; fails when it does not answer.
operator_metric() {
  local ip out
  ip="$(kubectl -n "$RELEASE_NS" get pod "$1" -o jsonpath='{.status.podIP}')"
  # The chart's secure metrics: HTTPS (self-signed) and a token of a metrics reader.
  out="$(curl -sSk --fail --max-time 5 -H "Authorization: Bearer $(metrics_token)" "https://$ip:8080/metrics")" || return 1
  awk -v m="$2" '$1 == m {v = $2} END {print v + 0}' <<<"$out"
}
# peak_rss_mib POD: the operator's peak resident memory (VmHWM) so far.
peak_rss_mib() {
  awk '/^VmHWM:/ {print int($2 / 1024)}' "/proc/$(operator_pid "$1")/status"
}
# converged NAMESPACE: every ModelDeployment there converged (converged.py).
converged() {
  kubectl get mdep,deployments,services,poddisruptionbudgets -n "$1" -o json >"$WORK/state.json"
  python3 "$HERE/converged.py" <"$WORK/state.json"
}
# retry CMD...: until it succeeds, for at most 120 s (the API server may be down).
retry() {
  local t0=$SECONDS
  until "$@" >>"$WORK/retry.log" 2>&1; do
    [ $((SECONDS - t0)) -lt 120 ] || { echo "FAILED: $* kept failing for 120 s"; tail -5 "$WORK/retry.log"; return 1; }
    sleep 0.5
  done
}
# model_yaml NAME REPLICAS VERSION
model_yaml() {
  printf -- '---\napiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: %s}\nspec:\n  model: {uri: "builtin://iris", version: "%s"}\n  replicas: %s\n' "$1" "$3" "$2"
}
# create_or_exists FILE: kubectl create that counts AlreadyExists as done (a
# create the API server stored but whose answer a restart cut off).
create_or_exists() {
  local out
  out="$(kubectl --request-timeout=10s -n "$NS" create -f "$1" 2>&1)" && return 0
  grep -q AlreadyExists <<<"$out" && ! grep -v AlreadyExists <<<"$out" | grep -q '^Error' && return 0
  echo "$out" >&2
  return 1
}
# leader_metrics: reconciliations so far on the leading pod.
leader_reconciles() { operator_metric "$(lease_holder)" modelship_operator_reconciliations_total; }

test_operator_installed() {
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  # A CRD kept by another release (test-e2e's) is handed over, as docs/chart.md says.
  if kubectl get crd modeldeployments.modelship.io >/dev/null 2>&1; then
    kubectl label crd modeldeployments.modelship.io --overwrite app.kubernetes.io/managed-by=Helm
    kubectl annotate crd modeldeployments.modelship.io --overwrite \
      meta.helm.sh/release-name="$RELEASE" meta.helm.sh/release-namespace="$RELEASE_NS"
  fi
  helm install "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --create-namespace --wait --timeout 180s \
    --set replicaCount=2 --set leaderElection.leaseDurationSeconds="$LEASE_SECONDS" --set logLevel=info \
    --set "metrics.readers[0].name=$METRICS_READER" --set "metrics.readers[0].namespace=$RELEASE_NS"
  kubectl -n "$RELEASE_NS" create serviceaccount "$METRICS_READER" --dry-run=client -o yaml | kubectl apply -f -
  wait_for 30 "a leader" 'test -n "$(lease_holder)"'
  [ "$(operator_pods | wc -l)" = 2 ] || fail "not 2 operator pods"
  echo "leader: $(lease_holder)"
}

start_file_server() {
  mkdir -p "$WORK/files"
  cp "$ROOT/models/iris-rf.onnx" "$WORK/files/"
  python3 "$HERE/slow_files.py" --bind "$NODE_IP" --port "$FILE_PORT" --dir "$WORK/files" \
    --delay-file "$WORK/slow" >"$WORK/file-server.log" 2>&1 &
  FILE_SERVER_PID=$!
  wait_for 20 "the file server" 'curl -sf -o /dev/null "http://$NODE_IP:$FILE_PORT/iris-rf.onnx"'
}

# evict POD: the Eviction API's HTTP code for POD (201 allowed, 429 refused).
evict() {
  local body="{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{\"name\":\"$1\",\"namespace\":\"$NS\"}}"
  kubectl create --raw "/api/v1/namespaces/$NS/pods/$1/eviction" -f - <<<"$body" >"$WORK/evict-$1.out" 2>&1 \
    && { echo 201; return 0; }
  if grep -q "disruption budget" "$WORK/evict-$1.out"; then echo 429; else cat "$WORK/evict-$1.out" >&2; echo error; fi
}
ready_pods() {
  kubectl -n "$NS" get pods -l app.kubernetes.io/instance=budget -o json | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
print(" ".join(p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp") is None
    and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))))'
}

test_budget_allows_one_eviction_then_refuses() {
  start_file_server
  # The server is this test's (the suite's cleanup runs in another shell): it must not
  # outlive it, holding the files open that the caller holds, the cluster lock among them.
  trap 'kill "$FILE_SERVER_PID" 2>/dev/null || true' EXIT
  kubectl -n "$NS" apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: budget}
spec:
  model: {uri: "http://$NODE_IP:$FILE_PORT/iris-rf.onnx"}
  replicas: 2
EOF
  kubectl -n "$NS" wait mdep/budget --for=condition=Ready --timeout=120s
  wait_for 30 "the budget to count 2 healthy pods" \
    'test "$(kubectl -n "$NS" get pdb budget -o jsonpath="{.status.currentHealthy}/{.status.disruptionsAllowed}")" = 2/1'
  local uid owner max spread
  uid="$(kubectl -n "$NS" get mdep budget -o jsonpath='{.metadata.uid}')"
  owner="$(kubectl -n "$NS" get pdb budget -o jsonpath='{.metadata.ownerReferences[0].uid}')"
  [ "$owner" = "$uid" ] || fail "the budget is owned by $owner, not the ModelDeployment $uid"
  max="$(kubectl -n "$NS" get pdb budget -o jsonpath='{.spec.maxUnavailable}')"
  [ "$max" = 1 ] || fail "maxUnavailable is $max, not 1"
  spread="$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=budget \
    -o jsonpath='{.items[0].spec.topologySpreadConstraints[*].topologyKey}/{.items[0].spec.topologySpreadConstraints[*].whenUnsatisfiable}')"
  [ "$spread" = "kubernetes.io/hostname topology.kubernetes.io/zone/ScheduleAnyway ScheduleAnyway" ] \
    || fail "the pods' spread constraints are '$spread'"
  # From now on a fetch takes 60 s: the replacement stays not Ready.
  echo 60 >"$WORK/slow"
  local first second code
  read -r first second <<<"$(ready_pods)"
  [ -n "$second" ] || fail "not two Ready pods: '$first $second'"
  code="$(evict "$first")"
  [ "$code" = 201 ] || fail "the first eviction was answered $code, not 201"
  echo "evicted $first (201)"
  wait_for 30 "a replacement pod" \
    'test "$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=budget --field-selector=status.phase!=Succeeded -o name | grep -vc "pod/$first$")" = 2'
  kubectl -n "$NS" get pods -l app.kubernetes.io/instance=budget -o wide
  [ "$(ready_pods)" = "$second" ] || fail "Ready pods are '$(ready_pods)', not only $second"
  code="$(evict "$second")"
  [ "$code" = 429 ] || fail "the second eviction, while the replacement is not Ready, was answered $code, not 429"
  echo "second eviction refused: $(tail -1 "$WORK/evict-$second.out")"
  kubectl -n "$NS" get pod "$second" -o jsonpath='{.metadata.deletionTimestamp}' | grep -q . \
    && fail "$second is being deleted although its eviction was refused"
  rm -f "$WORK/slow"
  # Fewer than 2 replicas: the budget goes.
  kubectl -n "$NS" patch mdep budget --type=merge -p '{"spec":{"replicas":1}}'
  wait_for 30 "the budget to be deleted" '! kubectl -n "$NS" get pdb budget'
  kubectl -n "$NS" delete mdep budget --wait=false
}

test_apiserver_restarted_during_creates() {
  local ns="$NS-create" t0=$SECONDS before i chunk pids=() rss0 leader
  kubectl create namespace "$ns"
  leader="$(lease_holder)"
  before="$(leader_reconciles)"
  # Most at replicas 0 (the node runs at most 30 pods), one in 40 with a pod.
  for i in $(seq 1 "$OBJECTS"); do
    model_yaml "m$i" "$([ $((i % 40)) = 0 ] && echo 1 || echo 0)" v1 >>"$WORK/chunk-$(((i - 1) / 20)).yaml"
  done
  for chunk in "$WORK"/chunk-*.yaml; do
    NS="$ns" retry create_or_exists "$chunk" &
    pids+=($!)
    sleep 0.3
    if [ "${#pids[@]}" = $((OBJECTS / 40)) ]; then
      echo "restarting kube-apiserver after $(kubectl -n "$ns" get mdep -o name | wc -l) creates"
      "$CLUSTER_SH" fault restart kube-apiserver
    fi
  done
  for i in "${pids[@]}"; do wait "$i" || fail "a create did not go through"; done
  echo "MEASURED $OBJECTS creates done (kube-apiserver restarted in the middle): $((SECONDS - t0)) s"
  wait_for 180 "all $OBJECTS ModelDeployments converged" 'converged "$ns"' || { converged "$ns"; fail "not converged"; }
  converged "$ns"
  [ "$(jq '[.items[] | select(.kind == "ModelDeployment")] | length' "$WORK/state.json")" = "$OBJECTS" ] \
    || fail "not $OBJECTS ModelDeployments"
  echo "MEASURED converged after the apiserver restart: $((SECONDS - t0)) s from the first create"
  # The leader may have changed: a restart of the API server outlasting the Lease passes it on.
  [ "$(lease_holder)" = "$leader" ] && echo "MEASURED reconciles per object: $(( ($(leader_reconciles) - before) * 100 / OBJECTS ))e-2 (leader unchanged)"
  rss0="$(peak_rss_mib "$(lease_holder)")"
  echo "MEASURED operator peak RSS with $OBJECTS ModelDeployments: $rss0 MiB"
}

test_etcd_stopped_during_updates() {
  local ns="$NS-create" t0=$SECONDS i pids=()
  kubectl get namespace "$ns" >/dev/null || fail "needs apiserver_restarted_during_creates' objects"
  for i in $(seq 1 50); do
    NS="$ns" retry kubectl --request-timeout=10s -n "$ns" patch mdep "m$i" --type=merge -p '{"spec":{"model":{"version":"v2"}}}' &
    pids+=($!)
    if [ "$i" = 10 ]; then
      "$CLUSTER_SH" fault stop etcd
      t0=$SECONDS
    fi
    sleep 0.1
  done
  sleep $((20 - (SECONDS - t0)))
  "$CLUSTER_SH" fault start etcd
  echo "MEASURED etcd down $((SECONDS - t0)) s"
  for i in "${pids[@]}"; do wait "$i" || fail "an update did not go through"; done
  wait_for 180 "all converged" 'converged "$ns"' || { converged "$ns"; fail "not converged"; }
  converged "$ns"
  local v2
  v2="$(jq '[.items[] | select(.kind == "ModelDeployment" and .spec.model.version == "v2")] | length' "$WORK/state.json")"
  [ "$v2" = 50 ] || fail "$v2 ModelDeployments at v2, not 50"
  echo "MEASURED 50 updates across a 20 s etcd stop converged $((SECONDS - t0)) s after etcd stopped"
  echo "MEASURED operator peak RSS: $(peak_rss_mib "$(lease_holder)") MiB"
  kubectl delete namespace "$ns" --wait=false
}

test_create_delete_cycles() {
  local ns="$NS-cycle" i uid t0=$SECONDS before
  kubectl create namespace "$ns"
  before="$(leader_reconciles)"
  for i in $(seq 1 "$CYCLES"); do
    model_yaml cycle "$((i % 3))" "c$i" | kubectl -n "$ns" create -f - >/dev/null
    uid="$(kubectl -n "$ns" get mdep cycle -o jsonpath='{.metadata.uid}')"
    # The status, once written, is this object's: its version, its generation.
    wait_for 30 "cycle $i's status" \
      'test "$(kubectl -n "$ns" get mdep cycle -o jsonpath="{.metadata.uid}/{.status.observedGeneration}/{.status.model.version}")" = "$uid/1/c$i"' \
      || { kubectl -n "$ns" get mdep cycle -o yaml; fail "cycle $i: no status of its own"; }
    # Every third cycle waits for the children to be this object's too.
    if [ $((i % 3)) = 0 ]; then
      wait_for 30 "cycle $i's Deployment" \
        'test "$(kubectl -n "$ns" get deployment cycle -o jsonpath="{.metadata.ownerReferences[0].uid}")" = "$uid"'
    fi
    kubectl -n "$ns" delete mdep cycle --wait=false >/dev/null
    wait_for 30 "cycle $i's object to go" '! kubectl -n "$ns" get mdep cycle'
  done
  wait_for 60 "nothing left behind" \
    'test -z "$(kubectl -n "$ns" get deployments,replicasets,services,poddisruptionbudgets,pods -o name)"' \
    || { kubectl -n "$ns" get all; fail "children left behind"; }
  echo "MEASURED $CYCLES create/delete cycles: $((SECONDS - t0)) s, reconciles $(( $(leader_reconciles) - before ))"
  kubectl delete namespace "$ns" --wait=false
}

test_leader_cut_off_no_two_writers() {
  local leader standby leader_ip ns="$NS-cut" cut_start cut_end i user
  kubectl create namespace "$ns"
  leader="$(lease_holder)"
  standby="$(operator_pods | grep -vx "$leader" | head -1)"
  [ -n "$standby" ] || fail "no standby"
  leader_ip="$(kubectl -n "$RELEASE_NS" get pod "$leader" -o jsonpath='{.status.podIP}')"
  user="system:serviceaccount:$RELEASE_NS:$(kubectl -n "$RELEASE_NS" get pod "$leader" -o jsonpath='{.spec.serviceAccountName}')"
  for i in $(seq 1 5); do model_yaml "w$i" 0 v1 | kubectl -n "$ns" create -f - >/dev/null; done
  wait_for 60 "the first objects converged" 'converged "$ns"'
  cut_start="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
  "$CLUSTER_SH" fault cut-api "$RELEASE_NS/$leader"
  # Work for whoever leads: changes during the cut.
  for i in $(seq 6 15); do model_yaml "w$i" 0 v1 | kubectl -n "$ns" create -f - >/dev/null; sleep 1; done
  wait_for $((LEASE_SECONDS * 2)) "the standby to take the Lease" 'test "$(lease_holder)" = "$standby"'
  echo "MEASURED Lease passed to $standby $(( $(date +%s) - $(date -d "$cut_start" +%s) )) s after the cut"
  wait_for 60 "the new leader to converge everything" 'converged "$ns"'
  sleep $((CUT_SECONDS - ($(date +%s) - $(date -d "$cut_start" +%s)))) 2>/dev/null || true
  cut_end="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
  "$CLUSTER_SH" fault restore-api "$RELEASE_NS/$leader"
  echo "MEASURED cut lasted $(( $(date -d "$cut_end" +%s) - $(date -d "$cut_start" +%s) )) s (Lease $LEASE_SECONDS s)"
  # More work after the cut: only the new leader may do it.
  for i in 1 2 3; do kubectl -n "$ns" patch mdep "w$i" --type=merge -p '{"spec":{"model":{"version":"v2"}}}' >/dev/null; done
  wait_for 120 "the cut replica to run again, as standby" \
    'test "$(kubectl -n "$RELEASE_NS" get pod "$leader" -o jsonpath="{.status.containerStatuses[0].ready}")" = true'
  wait_for 60 "all converged after the cut" 'converged "$ns"'
  [ "$(lease_holder)" = "$standby" ] || fail "the Lease is held by $(lease_holder), not $standby"
  kubectl -n "$RELEASE_NS" get pods -o wide
  echo "the cut replica's log:"; kubectl -n "$RELEASE_NS" logs "$leader" --all-containers --tail=20 || true
  kubectl -n "$RELEASE_NS" logs "$leader" --previous --tail=20 2>/dev/null || true
  sleep 5
  python3 "$HERE/writers.py" "$AUDIT_LOG" "$user" "$leader_ip" "$cut_start" "$cut_end" "$LEASE_SECONDS"
  kubectl delete namespace "$ns" --wait=false
}

test_uninstall() {
  kubectl delete namespace "$NS" --wait=false
  helm uninstall "$RELEASE" -n "$RELEASE_NS" --wait
  kubectl delete namespace "$RELEASE_NS" --wait=false
}

if ! "$CLUSTER_SH" status >/dev/null 2>&1 || [ "$(cat "$MODELSHIP_CLUSTER_DIR/run/mode" 2>/dev/null)" != full ]; then
  for t in $TESTS; do skip_test "$t" "needs a full cluster (make cluster-up; tests/faults/run.sh starts one)"; done
  harness_summary
  exit $?
fi
if [ ! -f "$AUDIT_LOG" ]; then
  for t in $TESTS; do skip_test "$t" "the cluster has no audit log ($AUDIT_LOG): it was started before the audit log existed; restart it"; done
  harness_summary
  exit $?
fi
CLUSTER_OK=1
for t in $TESTS; do run_test "$t" "test_$t"; done
harness_summary
