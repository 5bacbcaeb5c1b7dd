#!/usr/bin/env bash
# The user's journey on the full local cluster, through the chart:
#
#   tests/chart/e2e.sh
#
# Needs a full cluster (make cluster-up) with the images loaded
# (scripts/build-images.sh); without one every test is skipped with the reason.
# Installs the chart as release "modelship-e2e" in namespace modelship-e2e,
# works in namespace e2e-models, and removes all of it at the end.
#
#   helm_install_operator_ready       helm install --wait; the operator pod is Ready
#   iris_ready_and_predicts           examples/iris.yaml Ready within a bound; labels 0, 1, 2
#                                     for the three reference flowers through the Service
#                                     from the host; the Service answers a pod too
#   missing_model_is_degraded_then_fixed  a 404 model URI gives Degraded/ModelFetchFailed
#                                     with the cause; a good URI (iris-rf over http) makes it Ready
#   delete_removes_children           kubectl delete mdep: Deployment, Service, pods gone
#   uninstall_keeps_only_the_crd      helm uninstall leaves no operator object; the CRD stays
#
# The file server of the 404 test listens on the node address (the cluster's
# bridge, 10.233.64.1), on a port of its own, and stops with the script.
# Ends with "N passed, N failed" (", N skipped" when any were).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_SH="$ROOT/tests/cluster/cluster.sh"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
RELEASE=modelship-e2e
RELEASE_NS=modelship-e2e
NS=e2e-models
NODE_IP=10.233.64.1
FILE_PORT="${E2E_FILE_PORT:-18780}"
READY_BOUND="${E2E_READY_BOUND:-120}"
WORK="$(mktemp -d /tmp/modelship-chart-e2e.XXXXXX)"
PASSED=0 FAILED=0 SKIPPED=0
FILE_SERVER_PID=""

eval "$("$CLUSTER_SH" env)"

cleanup() {
  if [ -n "$FILE_SERVER_PID" ]; then kill "$FILE_SERVER_PID" 2>/dev/null || true; fi
  if [ -n "${CLUSTER_OK:-}" ]; then
    kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    helm uninstall "$RELEASE" -n "$RELEASE_NS" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$RELEASE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  if [ "$FAILED" = 0 ] && [ "${KEEP_LOGS:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

run_test() {
  local name="$1" rc=0 start=$SECONDS
  ( set -e; "$2" ) >"$WORK/$name.log" 2>&1 &
  wait $! || rc=$?
  if [ "$rc" = 0 ]; then
    echo "PASS $name ($((SECONDS - start)) s)"; PASSED=$((PASSED + 1))
    grep '^MEASURED' "$WORK/$name.log" | sed 's/^/    /' || true
  else
    echo "FAIL $name"; tail -n 40 "$WORK/$name.log" | sed 's/^/    /'; FAILED=$((FAILED + 1))
  fi
}
skip_all() {
  local reason="$1" t
  for t in helm_install_operator_ready iris_ready_and_predicts missing_model_is_degraded_then_fixed \
           delete_removes_children uninstall_keeps_only_the_crd; do
    echo "SKIP $t ($reason)"; SKIPPED=$((SKIPPED + 1))
  done
}
fail() { echo "FAILED: $*"; return 1; }

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
  # name: hand it over to this one, as docs/chart.md says.
  if kubectl get crd modeldeployments.modelship.io >/dev/null 2>&1; then
    kubectl annotate crd modeldeployments.modelship.io --overwrite \
      meta.helm.sh/release-name="$RELEASE" meta.helm.sh/release-namespace="$RELEASE_NS"
  fi
  helm install "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --create-namespace --wait --timeout 180s
  kubectl -n "$RELEASE_NS" get pods -o wide
  kubectl -n "$RELEASE_NS" wait pod -l app.kubernetes.io/instance="$RELEASE" --for=condition=Ready --timeout=30s
  echo "MEASURED helm install --wait to operator Ready: $((SECONDS - t0)) s"
  kubectl -n "$RELEASE_NS" logs deployment/"$RELEASE" | grep -q 'became the leader' || fail "the operator did not lead"
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

test_missing_model_is_degraded_then_fixed() {
  mkdir -p "$WORK/files"
  cp "$ROOT/models/iris-rf.onnx" "$ROOT/models/iris-rf.card.json" "$WORK/files/"
  python3 -m http.server --bind "$NODE_IP" --directory "$WORK/files" "$FILE_PORT" >"$WORK/file-server.log" 2>&1 &
  FILE_SERVER_PID=$!
  trap 'kill "$FILE_SERVER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 20); do curl -s -o /dev/null "http://$NODE_IP:$FILE_PORT/" && break; sleep 0.5; done
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
  kubectl -n "$NS" get mdep fetched -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}' | grep -q 404 \
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
elif ! ctr --address "$MODELSHIP_CLUSTER_DIR/run/containerd.sock" -n k8s.io images ls -q 2>/dev/null | grep -q 'modelship/server:dev'; then
  skip_all "images not loaded: scripts/build-images.sh"
elif helm status "$RELEASE" -n "$RELEASE_NS" >/dev/null 2>&1 || helm list -A -q | grep -q .; then
  skip_all "a modelship release is already installed (helm list -A); the CRD has one owner"
else
  CLUSTER_OK=1
  # release-name/release-namespace of a CRD kept from before this run, if any.
  CRD_OWNER="$(kubectl get crd modeldeployments.modelship.io -o go-template='{{index .metadata.annotations "meta.helm.sh/release-name"}}/{{index .metadata.annotations "meta.helm.sh/release-namespace"}}' 2>/dev/null || true)"
  export CRD_OWNER
  run_test helm_install_operator_ready test_helm_install_operator_ready
  if [ "$FAILED" = 0 ]; then
    run_test iris_ready_and_predicts test_iris_ready_and_predicts
    run_test missing_model_is_degraded_then_fixed test_missing_model_is_degraded_then_fixed
    run_test delete_removes_children test_delete_removes_children
    run_test uninstall_keeps_only_the_crd test_uninstall_keeps_only_the_crd
  else
    for t in iris_ready_and_predicts missing_model_is_degraded_then_fixed delete_removes_children uninstall_keeps_only_the_crd; do
      echo "SKIP $t (the operator is not installed)"; SKIPPED=$((SKIPPED + 1))
    done
  fi
fi

if [ "$SKIPPED" -gt 0 ]; then
  printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
else
  printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
fi
[ "$FAILED" = 0 ]
