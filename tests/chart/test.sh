#!/usr/bin/env bash
# Tests of the Helm chart charts/modelship.
#
#   tests/chart/test.sh            all tests (starts and stops a private control plane)
#   KEEP_CLUSTER=1 tests/chart/test.sh   leave the control plane up afterwards
#   KEEP_LOGS=1 tests/chart/test.sh      keep every test's log (kept anyway on failure)
#   CHART_TESTS_OFFLINE=1 tests/chart/test.sh   lint/template/schema tests only
#
# Offline tests: helm lint, helm template (all namespaces and watchNamespaces),
# the schema and template checks that refuse bad values, and the chart's CRD
# against crds/. Cluster tests run against a private control plane (its own
# state dir and ports, beside any other cluster): a server-side dry run of the
# rendered manifests, helm install, `kubectl auth can-i` as the operator's
# ServiceAccount in both RBAC modes, the operator process itself running with
# nothing but that ServiceAccount's token, its /metrics over TLS answering 401,
# 403 and 200 as the API server decides, helm upgrade, and helm uninstall
# (the CRD stays). The operator's pod never starts there (no node): the
# chart's RBAC is what is proven.
#
# The harness is hack/lib/harness.sh: PASS/FAIL/SKIP per test, then
# "N passed, N failed, N skipped"; REQUIRE_NO_SKIP=1 makes a skip a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/charts/modelship"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CHART_CLUSTER_DIR:-/tmp/modelship-chart-cp}"
export MODELSHIP_CLUSTER_PORT_BASE="${MODELSHIP_CHART_PORT_BASE:-19000}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
RELEASE=modelship
RELEASE_NS=modelship-system
SA="system:serviceaccount:$RELEASE_NS:modelship"
WORK="$(mktemp -d /tmp/modelship-chart-tests.XXXXXX)"
TEST_LOGS="$WORK"
# shellcheck source=../../hack/lib/harness.sh
source "$ROOT/hack/lib/harness.sh"
STARTED_CLUSTER=0

# Tools: helm and kubectl come from the local cluster's build cache.
"$CLUSTER_SH" build >/dev/null
eval "$("$CLUSTER_SH" env)"
command -v helm >/dev/null || { echo "helm not found after hack/cluster/cluster.sh env" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

# stop_cluster: the control plane goes unless it was there before or
# KEEP_CLUSTER=1; also on an early exit.
stop_cluster() {
  if [ "$STARTED_CLUSTER" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    STARTED_CLUSTER=0
    "$CLUSTER_SH" down >"$WORK/cluster-down.log" 2>&1 || { echo "cluster down failed: see $WORK/cluster-down.log" >&2; return 1; }
  fi
}
trap stop_cluster EXIT

render() { helm template "$RELEASE" "$CHART" -n "$RELEASE_NS" "$@"; }
# kinds FILE: "Kind/namespace/name" of every object in a rendered stream.
kinds() {
  python3 -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d:
        m = d["metadata"]
        print("%s/%s/%s" % (d["kind"], m.get("namespace", ""), m["name"]))' "$1"
}
# can SUBJECT-ARGS...: kubectl auth can-i as the operator's ServiceAccount.
can() { kubectl auth can-i --as="$SA" "$@" 2>/dev/null; }
expect_yes() { [ "$(can "$@")" = yes ] || fail "expected yes: can-i $*"; echo "yes: $*"; }
expect_no() { [ "$(can "$@")" = no ] || fail "expected no: can-i $*"; echo "no:  $*"; }
# can_api VERB GROUP RESOURCE NAMESPACE: can-i for an API this control plane
# does not serve (no Gateway API CRDs here, so kubectl cannot map the name):
# a SelfSubjectAccessReview as the operator's ServiceAccount.
can_api() {
  kubectl create --as="$SA" --validate=false -o jsonpath='{.status.allowed}' -f - <<EOF 2>/dev/null
apiVersion: authorization.k8s.io/v1
kind: SelfSubjectAccessReview
spec: {resourceAttributes: {verb: "$1", group: "$2", resource: "$3", namespace: "$4"}}
EOF
}
expect_api_yes() { [ "$(can_api "$@")" = true ] || fail "expected yes: $*"; echo "yes: $*"; }
expect_api_no() { [ "$(can_api "$@")" != true ] || fail "expected no: $*"; echo "no:  $*"; }

# ---------------------------------------------------------------- offline

test_lint() {
  helm lint "$CHART"
  helm lint "$CHART" --set 'watchNamespaces={team-a,team-b}'
  helm lint "$CHART" --set metrics.serviceMonitor.enabled=true --set replicaCount=2
  helm lint "$CHART" --set metrics.secure=false --set metrics.serviceMonitor.enabled=true
  helm lint "$CHART" --set metrics.certSecret.name=operator-metrics-tls --set metrics.serviceMonitor.enabled=true
}

test_crd_copy_matches_crds_dir() {
  # The chart's copy is byte-identical to the committed, generated CRD...
  cmp "$ROOT/crds/modelship.io_modeldeployments.yaml" "$CHART/files/modelship.io_modeldeployments.yaml" \
    || fail "charts/modelship/files/modelship.io_modeldeployments.yaml differs from crds/; run: cp crds/modelship.io_modeldeployments.yaml charts/modelship/files/"
  # ...and the rendered CRD is that file plus only the chart's labels and keep policy.
  render --show-only templates/crd.yaml >"$WORK/crd.yaml"
  python3 - "$ROOT/crds/modelship.io_modeldeployments.yaml" "$WORK/crd.yaml" <<'EOF'
import sys, yaml
committed = yaml.safe_load(open(sys.argv[1]))
rendered = yaml.safe_load(open(sys.argv[2]))
meta = rendered["metadata"]
assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}, "keep annotation"
assert meta.pop("labels")["app.kubernetes.io/managed-by"] == "Helm", "chart labels"
assert rendered == committed, "rendered CRD differs from crds/modelship.io_modeldeployments.yaml"
print("rendered CRD == crds/modelship.io_modeldeployments.yaml (+ labels, keep annotation)")
EOF
  render --show-only templates/crd.yaml --set crds.keep=false | grep -q 'resource-policy' && fail "keep=false still keeps"
  render --set crds.install=false | grep -q 'kind: CustomResourceDefinition' && fail "install=false still renders the CRD"
  return 0
}

test_batch_crd_copy_matches_crds_dir() {
  cmp "$ROOT/crds/modelship.io_batchpredictions.yaml" "$CHART/files/modelship.io_batchpredictions.yaml" \
    || fail "charts/modelship/files/modelship.io_batchpredictions.yaml differs from crds/; run: cp crds/modelship.io_batchpredictions.yaml charts/modelship/files/"
  render --show-only templates/crd-batchprediction.yaml >"$WORK/crd-batch.yaml"
  python3 - "$ROOT/crds/modelship.io_batchpredictions.yaml" "$WORK/crd-batch.yaml" <<'EOF'
import sys, yaml
committed = yaml.safe_load(open(sys.argv[1]))
rendered = yaml.safe_load(open(sys.argv[2]))
meta = rendered["metadata"]
assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}, "keep annotation"
assert meta.pop("labels")["app.kubernetes.io/managed-by"] == "Helm", "chart labels"
assert rendered == committed, "rendered CRD differs from crds/modelship.io_batchpredictions.yaml"
print("rendered CRD == crds/modelship.io_batchpredictions.yaml (+ labels, keep annotation)")
EOF
  render --set crds.install=false | grep -q 'name: batchpredictions.modelship.io' && fail "install=false still renders the BatchPrediction CRD"
  return 0
}

test_template_all_namespaces() {
  render >"$WORK/default.yaml"
  kinds "$WORK/default.yaml" | sort | tee "$WORK/default.kinds"
  diff <(sort "$WORK/default.kinds") <(sort <<EOF
ClusterRole//modelship
ClusterRole//modelship-metrics-reader
ClusterRoleBinding//modelship
ClusterRoleBinding//modelship-auth-delegator
CustomResourceDefinition//batchpredictions.modelship.io
CustomResourceDefinition//modeldeployments.modelship.io
Deployment/$RELEASE_NS/modelship
Role/$RELEASE_NS/modelship-leader-election
RoleBinding/$RELEASE_NS/modelship-leader-election
Service/$RELEASE_NS/modelship-metrics
ServiceAccount/$RELEASE_NS/modelship
EOF
  ) || fail "unexpected set of objects"
  python3 - "$WORK/default.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
args = c["args"]
print(args)
for want in ["--server-image=modelship/server:dev", "--leader-election",
             "--lease-name=modelship", "--lease-namespace=modelship-system",
             "--metrics-addr=0.0.0.0:8080", "--metrics-secure",
             "--metrics-cert-sans=modelship-metrics.modelship-system.svc,modelship-metrics.modelship-system.svc.cluster.local",
             "--log-format=json",
             "--expose-mode=auto", "--host-template={name}-{namespace}.{domain}",
             "--url-scheme=http"]:
    assert want in args, want
assert not any(a.startswith("--watch-namespaces") for a in args), "watches all namespaces"
assert c["image"] == "modelship/operator:dev"
assert not any(a.startswith("--metrics-cert-dir") for a in args), "self-signed by default"
# Secure metrics by default: the probes speak HTTPS to the open /healthz and /readyz.
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    assert c[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTPS"}, c[probe]
assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}], c["ports"]
# Restricted Pod Security Standard.
assert pod["securityContext"]["runAsNonRoot"] is True
assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
assert sc["capabilities"]["drop"] == ["ALL"]
# The metrics Service selects the operator's pods and nothing of a model's.
svc = next(d for d in docs if d["kind"] == "Service")
labels = dep["spec"]["template"]["metadata"]["labels"]
assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
assert labels["app.kubernetes.io/name"] != "modelship", "model pods are app.kubernetes.io/name=modelship"
print("deployment ok")
EOF
}

test_template_watch_namespaces() {
  render --set 'watchNamespaces={team-a,team-b}' --set leaderElection.enabled=false >"$WORK/ns.yaml"
  kinds "$WORK/ns.yaml" | sort | tee "$WORK/ns.kinds"
  diff <(sort "$WORK/ns.kinds") <(sort <<EOF
ClusterRole//modelship-metrics-reader
ClusterRoleBinding//modelship-auth-delegator
CustomResourceDefinition//batchpredictions.modelship.io
CustomResourceDefinition//modeldeployments.modelship.io
Deployment/$RELEASE_NS/modelship
Role/team-a/modelship
Role/team-b/modelship
RoleBinding/team-a/modelship
RoleBinding/team-b/modelship
Service/$RELEASE_NS/modelship-metrics
ServiceAccount/$RELEASE_NS/modelship
EOF
  ) || fail "namespaced mode: unexpected set of objects (no ClusterRole of the operator's rules, no Lease Role; only the metrics reader and the auth-delegator binding are cluster-wide)"
  grep -q -- '- --watch-namespaces=team-a,team-b' "$WORK/ns.yaml" || fail "--watch-namespaces not passed"
  grep -q -- '--leader-election' "$WORK/ns.yaml" && fail "leader election is off"
  return 0
}

test_rbac_rules_grant_no_secrets_or_wildcards() {
  render >"$WORK/rbac.yaml"
  render --set 'watchNamespaces={team-a}' >>"$WORK/rbac.yaml"
  python3 - "$WORK/rbac.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [r for d in docs if d["kind"] in ("Role", "ClusterRole") for r in d["rules"]]
for r in rules:
    assert "*" not in r["verbs"] and "*" not in r.get("resources", []) and "*" not in r.get("apiGroups", []), r
    assert "*" not in r.get("nonResourceURLs", []), r
    assert not {"secrets", "configmaps", "pods/exec", "serviceaccounts/token"} & set(r.get("resources", [])), r
    assert "escalate" not in r["verbs"] and "bind" not in r["verbs"] and "impersonate" not in r["verbs"], r
# The one non-resource rule: the metrics reader's get on /metrics.
assert [r for r in rules if "nonResourceURLs" in r] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}] * 2
# The one role not the chart's own: system:auth-delegator (TokenReview and
# SubjectAccessReview creates), for the secure metrics, in both modes.
foreign = [d["roleRef"]["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
           and not d["roleRef"]["name"].startswith("modelship")]
assert foreign == ["system:auth-delegator"] * 2, foreign
# Deletion is granted only for children removed with their part of the spec:
# the HPA (autoscaling), the canary's Deployment and Service, the public route.
deletable = sorted(x for r in rules if "delete" in r["verbs"] for x in r.get("resources", []))
assert deletable == sorted(["deployments", "services", "horizontalpodautoscalers", "ingresses", "httproutes",
                           "grpcroutes", "poddisruptionbudgets"] * 2), deletable
# Gateways are the platform's: not even read.
assert not [r for r in rules if "gateways" in r.get("resources", [])], "gateways"
print(len(rules), "rules checked")
EOF
}

# The operator's metrics port in its three shapes: secure with a self-signed
# certificate (default, above), secure with a mounted Secret, and plain.
test_template_metrics_modes() {
  render --set metrics.serviceMonitor.enabled=true >"$WORK/m-default.yaml"
  render --set metrics.serviceMonitor.enabled=true --set metrics.certSecret.name=operator-metrics-tls \
    --set 'metrics.readers[0].name=prometheus-k8s' --set 'metrics.readers[0].namespace=monitoring' >"$WORK/m-secret.yaml"
  render --set metrics.serviceMonitor.enabled=true --set metrics.certSecret.name=operator-metrics-tls \
    --set metrics.certSecret.caKey= >"$WORK/m-noca.yaml"
  render --set metrics.serviceMonitor.enabled=true --set metrics.secure=false >"$WORK/m-plain.yaml"
  python3 - "$WORK" <<'EOF'
import sys, yaml
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{sys.argv[1]}/{name}.yaml")) if d]
def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]
def container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
def endpoint(docs):
    return one(docs, "ServiceMonitor")["spec"]["endpoints"][0]

d = load("m-default")
ep = endpoint(d)
assert ep["scheme"] == "https" and ep["port"] == "metrics", ep
assert ep["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token", ep
assert ep["tlsConfig"] == {"insecureSkipVerify": True}, ep
assert "volumes" not in one(d, "Deployment")["spec"]["template"]["spec"]
assert [x for x in d if x["kind"] == "ClusterRoleBinding" and x["metadata"]["name"] == "modelship-metrics-reader"] == [], \
    "no readers, no binding"
reader = one(d, "ClusterRole", "modelship-metrics-reader")
assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}], reader
delegator = one(d, "ClusterRoleBinding", "modelship-auth-delegator")
assert delegator["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"}
assert delegator["subjects"] == [{"kind": "ServiceAccount", "name": "modelship", "namespace": "modelship-system"}]
assert one(d, "Service")["spec"]["ports"][0]["targetPort"] == "metrics"

d = load("m-secret")
c = container(d)
assert "--metrics-secure" in c["args"] and "--metrics-cert-dir=/etc/modelship/metrics-tls" in c["args"], c["args"]
assert not any(a.startswith("--metrics-cert-sans") for a in c["args"]), "a mounted certificate has its own names"
assert c["volumeMounts"] == [{"name": "metrics-tls", "mountPath": "/etc/modelship/metrics-tls", "readOnly": True}]
vol = one(d, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
assert vol["secret"]["secretName"] == "operator-metrics-tls", vol
assert [i["key"] for i in vol["secret"]["items"]] == ["tls.crt", "tls.key"], "the CA is not the operator's"
assert endpoint(d)["tlsConfig"] == {"ca": {"secret": {"name": "operator-metrics-tls", "key": "ca.crt"}},
                                    "serverName": "modelship-metrics.modelship-system.svc"}, endpoint(d)
binding = one(d, "ClusterRoleBinding", "modelship-metrics-reader")
assert binding["roleRef"]["name"] == "modelship-metrics-reader"
assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}]

assert endpoint(load("m-noca"))["tlsConfig"] == {"insecureSkipVerify": True}, "no CA key: no verification"

d = load("m-plain")
c = container(d)
assert not [a for a in c["args"] if a.startswith("--metrics-secure") or a.startswith("--metrics-cert")], c["args"]
assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTP" and c["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
ep = endpoint(d)
assert "scheme" not in ep and "bearerTokenFile" not in ep and "tlsConfig" not in ep, ep
assert not [x for x in d if "metrics-reader" in x["metadata"]["name"] or "auth-delegator" in x["metadata"]["name"]]
print("secure (self-signed), secure (Secret, readers), secure (Secret without CA), plain: ok")
EOF
}

# expect_refused MESSAGE ARGS...: helm template fails and says MESSAGE.
expect_refused() {
  local want="$1"; shift
  local out
  if out="$(render "$@" 2>&1)"; then fail "accepted: $*"; fi
  echo "$out" | grep -F -- "$want" || { echo "$out"; fail "message lacks: $want"; }
}

test_bad_values_are_refused_with_a_message() {
  expect_refused "at '/replicaCount': minimum: got -1, want 0" --set replicaCount=-1
  expect_refused "at '/replicaCount': got string, want integer" --set replicaCount=two
  expect_refused "at '/logFormat': value must be one of 'json', 'text'" --set logFormat=xml
  expect_refused "additional properties 'watchNamespace' not allowed" --set 'watchNamespace={a}'
  expect_refused "at '/watchNamespaces/0'" --set 'watchNamespaces={Team_A}'
  expect_refused "at '/image/pullPolicy'" --set image.pullPolicy=Sometimes
  expect_refused "at '/expose/mode'" --set expose.mode=nodeport
  expect_refused "replicaCount is 2 but leaderElection.enabled is false" --set replicaCount=2 --set leaderElection.enabled=false
  expect_refused "metrics.serviceMonitor.enabled needs metrics.service.enabled" \
    --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false
  expect_refused "at '/metrics/secure': got string, want boolean" --set metrics.secure=yes
  expect_refused "at '/metrics/readers/0': missing property 'namespace'" --set 'metrics.readers[0].name=prometheus'
  expect_refused "at '/metrics/certSecret/name'" --set metrics.certSecret.name=Not_A_Name
}

# ---------------------------------------------------------------- cluster

test_control_plane_up() {
  if [ "$STARTED_CLUSTER" = 1 ]; then
    MODE=control-plane "$CLUSTER_SH" up
  else
    echo "reusing the control plane in $MODELSHIP_CLUSTER_DIR"
  fi
  kubectl get --raw /readyz; echo
  for ns in "$RELEASE_NS" team-a team-b; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  done
}
# Decides here, in the main shell, whether cleanup stops the control plane.
cluster_up() {
  if [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
    STARTED_CLUSTER=0
  else
    STARTED_CLUSTER=1
  fi
  local before=$HARNESS_FAILED
  run_test control_plane_up test_control_plane_up
  [ "$HARNESS_FAILED" = "$before" ]
}

test_server_side_dry_run() {
  render >"$WORK/dry-default.yaml"
  kubectl apply --dry-run=server -f "$WORK/dry-default.yaml"
  render --set 'watchNamespaces={team-a,team-b}' --set replicaCount=2 >"$WORK/dry-ns.yaml"
  kubectl apply --dry-run=server -f "$WORK/dry-ns.yaml"
}

test_install_all_namespaces_rbac() {
  helm install "$RELEASE" "$CHART" -n "$RELEASE_NS"
  kubectl -n "$RELEASE_NS" get deployment,serviceaccount,service,role,rolebinding -l app.kubernetes.io/instance="$RELEASE"
  kubectl get crd modeldeployments.modelship.io
  for ns in team-a team-b; do
    expect_yes list modeldeployments.modelship.io -n "$ns"
  done
  expect_yes watch modeldeployments.modelship.io --all-namespaces
  expect_yes patch modeldeployments.modelship.io --subresource=status -n team-a
  expect_yes update modeldeployments.modelship.io --subresource=finalizers -n team-a
  expect_yes create deployments.apps -n team-a
  expect_yes patch deployments.apps -n team-b
  expect_yes create services -n team-a
  expect_yes patch services -n team-a
  expect_yes create horizontalpodautoscalers.autoscaling -n team-a
  expect_yes delete horizontalpodautoscalers.autoscaling -n team-a
  expect_yes watch pods --all-namespaces
  expect_yes create events.events.k8s.io -n team-a
  # BatchPredictions: their Jobs are created and read, never changed or deleted (the GC does).
  expect_yes watch batchpredictions.modelship.io --all-namespaces
  expect_yes patch batchpredictions.modelship.io --subresource=status -n team-a
  expect_yes create jobs.batch -n team-a
  expect_yes watch jobs.batch --all-namespaces
  expect_no delete jobs.batch -n team-a
  expect_no patch jobs.batch -n team-a
  expect_no create batchpredictions.modelship.io -n team-a
  # spec.expose and spec.canary: the route and the canary's children.
  expect_yes create ingresses.networking.k8s.io -n team-a
  expect_yes patch ingresses.networking.k8s.io -n team-a
  expect_yes watch ingresses.networking.k8s.io --all-namespaces
  expect_yes delete ingresses.networking.k8s.io -n team-a
  expect_api_yes get gateway.networking.k8s.io httproutes team-a
  expect_api_yes patch gateway.networking.k8s.io httproutes team-a
  expect_api_yes delete gateway.networking.k8s.io httproutes team-b
  expect_api_yes patch gateway.networking.k8s.io grpcroutes team-a
  expect_api_yes delete gateway.networking.k8s.io grpcroutes team-b
  expect_yes delete deployments.apps -n team-a
  expect_yes delete services -n team-a
  expect_yes delete poddisruptionbudgets.policy -n team-a
  expect_yes create leases.coordination.k8s.io -n "$RELEASE_NS"
  expect_yes update leases.coordination.k8s.io/modelship -n "$RELEASE_NS"
  # Secure metrics: the operator reviews scrapers' tokens; it does not read /metrics itself.
  expect_yes create tokenreviews.authentication.k8s.io
  expect_yes create subjectaccessreviews.authorization.k8s.io
  expect_no get /metrics
  # What it must not do.
  expect_no get secrets -n team-a
  expect_no list secrets --all-namespaces
  expect_no get secrets -n "$RELEASE_NS"
  expect_no get configmaps -n team-a
  expect_no create pods -n team-a
  expect_no create pods --subresource=exec -n team-a
  expect_api_no get gateway.networking.k8s.io gateways team-a
  expect_api_no create gateway.networking.k8s.io gateways team-a
  expect_no create ingressclasses.networking.k8s.io
  expect_no create modeldeployments.modelship.io -n team-a
  expect_no delete modeldeployments.modelship.io -n team-a
  expect_no update customresourcedefinitions.apiextensions.k8s.io
  expect_no create clusterrolebindings.rbac.authorization.k8s.io
  expect_no update leases.coordination.k8s.io/kube-controller-manager -n kube-system
  expect_no create leases.coordination.k8s.io -n team-a
  expect_no update leases.coordination.k8s.io/other -n "$RELEASE_NS"
}

test_upgrade_to_namespaced_rbac() {
  helm upgrade "$RELEASE" "$CHART" -n "$RELEASE_NS" --set 'watchNamespaces={team-a}'
  kubectl get clusterrole modelship 2>/dev/null && fail "the ClusterRole is still there"
  expect_yes list modeldeployments.modelship.io -n team-a
  expect_yes patch modeldeployments.modelship.io --subresource=status -n team-a
  expect_yes create deployments.apps -n team-a
  expect_yes delete horizontalpodautoscalers.autoscaling -n team-a
  expect_yes create events.events.k8s.io -n team-a
  expect_yes update leases.coordination.k8s.io/modelship -n "$RELEASE_NS"
  # Other namespaces, and cluster scope, are out of reach.
  expect_no list modeldeployments.modelship.io -n team-b
  expect_no list modeldeployments.modelship.io --all-namespaces
  expect_no create deployments.apps -n team-b
  expect_yes create jobs.batch -n team-a
  expect_yes list batchpredictions.modelship.io -n team-a
  expect_no create jobs.batch -n team-b
  expect_no list batchpredictions.modelship.io -n team-b
  expect_no patch services -n team-b
  expect_no list pods -n team-b
  expect_no create events.events.k8s.io -n team-b
  expect_api_yes patch gateway.networking.k8s.io httproutes team-a
  expect_yes delete ingresses.networking.k8s.io -n team-a
  expect_api_no patch gateway.networking.k8s.io httproutes team-b
  expect_api_no patch gateway.networking.k8s.io grpcroutes team-b
  expect_no create ingresses.networking.k8s.io -n team-b
  expect_no get secrets -n team-a
  expect_no get secrets -n team-b
  # The reviews are cluster-scoped: the auth-delegator binding stays in namespaced mode.
  expect_yes create tokenreviews.authentication.k8s.io
  expect_yes create subjectaccessreviews.authorization.k8s.io
}

# operator_bin: the modelship-operator binary to run, or skip.
operator_bin() {
  local candidate
  for candidate in "${MODELSHIP_OPERATOR_BIN:-}" "$CARGO_TARGET_DIR/release/modelship-operator" "$CARGO_TARGET_DIR/debug/modelship-operator"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
# sa_kubeconfig FILE: a kubeconfig with nothing but the operator's ServiceAccount token.
sa_kubeconfig() {
  local server ca token
  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  token="$(kubectl -n "$RELEASE_NS" create token modelship --duration=1h)"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: cp, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: cp, user: operator, namespace: $RELEASE_NS}}]
current-context: operator
EOF
}

# The operator process, with only its ServiceAccount's token, reconciles an
# Iris ModelDeployment in team-a: the rules are enough, not just not too many.
test_operator_runs_with_chart_rbac() {
  local bin kc="$WORK/sa.kubeconfig"
  bin="$(operator_bin)" || skip "no modelship-operator binary (cargo build -p modelship-operator)"
  echo "operator binary: $bin"
  sa_kubeconfig "$kc"
  KUBECONFIG="$kc" kubectl auth whoami
  # The chart's own arguments (namespaced mode, leader election, secure metrics), on a free port.
  KUBECONFIG="$kc" RUST_LOG=info "$bin" --watch-namespaces=team-a --leader-election \
    --lease-name=modelship --lease-namespace="$RELEASE_NS" --metrics-addr=127.0.0.1:0 \
    --metrics-secure --log-format=text >"$WORK/operator.log" 2>&1 &
  OPERATOR_PID=$!
  trap 'kill "$OPERATOR_PID" 2>/dev/null || true' EXIT
  kubectl -n team-a apply -f "$ROOT/examples/iris.yaml"
  local ok=0
  for _ in $(seq 1 60); do
    if kubectl -n team-a get deployment iris >/dev/null 2>&1 && kubectl -n team-a get service iris >/dev/null 2>&1 \
      && [ -n "$(kubectl -n team-a get mdep iris -o jsonpath='{.status.observedGeneration}')" ]; then ok=1; break; fi
    sleep 1
  done
  kill "$OPERATOR_PID" 2>/dev/null || echo "the operator had exited"
  wait "$OPERATOR_PID" 2>/dev/null || true
  echo "--- operator log"; cat "$WORK/operator.log"
  [ "$ok" = 1 ] || fail "no Deployment, Service and status for iris within 60 s"
  kubectl -n team-a get mdep iris -o jsonpath='{.status.conditions}'; echo
  kubectl -n "$RELEASE_NS" get lease modelship -o jsonpath='{.spec.holderIdentity}'; echo
  grep -qi 'forbidden' "$WORK/operator.log" && fail "the operator was refused something (above)"
  kubectl -n team-a delete mdep iris --wait=false
  return 0
}

# The operator's /metrics over TLS, decided by the API server: no token 401, a
# ServiceAccount without the right 403, one bound through the chart's
# metrics.readers to <release>-metrics-reader 200 with the operator's metrics;
# /healthz and /readyz open. The operator runs on its ServiceAccount's token
# alone, so its TokenReviews and SubjectAccessReviews use the chart's
# auth-delegator binding (in namespaced mode, where the release is now).
test_secure_metrics_readers_decided_by_the_api_server() {
  local bin kc="$WORK/sa-metrics.kubeconfig" port base
  bin="$(operator_bin)" || skip "no modelship-operator binary (cargo build -p modelship-operator)"
  helm upgrade "$RELEASE" "$CHART" -n "$RELEASE_NS" --reuse-values \
    --set 'metrics.readers[0].name=metrics-scraper' --set "metrics.readers[0].namespace=$RELEASE_NS"
  kubectl get clusterrolebinding modelship-metrics-reader -o jsonpath='{.subjects}'; echo
  for sa in metrics-scraper metrics-nobody; do
    kubectl -n "$RELEASE_NS" create serviceaccount "$sa" --dry-run=client -o yaml | kubectl apply -f -
  done
  local reader nobody
  reader="$(kubectl -n "$RELEASE_NS" create token metrics-scraper --duration=10m)"
  nobody="$(kubectl -n "$RELEASE_NS" create token metrics-nobody --duration=10m)"
  sa_kubeconfig "$kc"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  base="https://127.0.0.1:$port"
  KUBECONFIG="$kc" RUST_LOG=info,modelship_operator=debug "$bin" --watch-namespaces=team-a \
    --metrics-addr="127.0.0.1:$port" --metrics-secure --log-format=text >"$WORK/operator-metrics.log" 2>&1 &
  OPERATOR_PID=$!
  trap 'kill "$OPERATOR_PID" 2>/dev/null || true' EXIT
  # status PATH [CURL ARGS]: the HTTP status of a GET over TLS (self-signed: -k);
  # the body goes to $WORK/body.
  status() { local path="$1"; shift; curl -sk -o "$WORK/body" -w '%{http_code}' --max-time 10 "$@" "$base$path"; }
  local ready=0
  for _ in $(seq 1 60); do
    if [ "$(status /readyz)" = 200 ]; then ready=1; break; fi
    sleep 0.5
  done
  [ "$ready" = 1 ] || { cat "$WORK/operator-metrics.log"; fail "/readyz not 200 over HTTPS within 30 s"; }
  echo "/readyz 200 without a token"
  [ "$(status /healthz)" = 200 ] || fail "/healthz not open"
  echo "/healthz 200 without a token"
  local got
  got="$(status /metrics)"; [ "$got" = 401 ] || fail "no token: $got, want 401"
  python3 -c 'import json,sys; e = json.load(open(sys.argv[1]))["error"]; print("401:", e); assert "Authorization" in e' "$WORK/body"
  got="$(status /metrics -H 'Authorization: Bearer not-a-token')"; [ "$got" = 401 ] || fail "a made-up token: $got, want 401"
  echo "401 for a made-up token: $(cat "$WORK/body")"
  got="$(status /metrics -H "Authorization: Bearer $nobody")"; [ "$got" = 403 ] || fail "a token without the right: $got, want 403"
  grep -q "system:serviceaccount:$RELEASE_NS:metrics-nobody" "$WORK/body" || fail "the 403 does not name the user: $(cat "$WORK/body")"
  echo "403: $(cat "$WORK/body")"
  got="$(status /metrics -H "Authorization: Bearer $reader")"; [ "$got" = 200 ] || fail "the chart's metrics reader: $got, want 200: $(cat "$WORK/body")"
  for metric in modelship_operator_reconciliations_total modelship_operator_leader modelship_operator_managed_objects; do
    grep -q "^$metric" "$WORK/body" || fail "the 200 body lacks $metric"
  done
  echo "200 for the metrics reader, with the operator's metrics"
  # Plain HTTP on the secure port gets no metrics.
  got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/metrics" || true)"
  [ "$got" != 200 ] || fail "plain HTTP answered 200"
  kill "$OPERATOR_PID" 2>/dev/null || echo "the operator had exited"
  wait "$OPERATOR_PID" 2>/dev/null || true
  echo "--- operator log"; cat "$WORK/operator-metrics.log"
  grep -F -e "$reader" -e "$nobody" "$WORK/operator-metrics.log" >/dev/null && fail "a token is in the operator's log"
  grep -qi 'forbidden' "$WORK/operator-metrics.log" && fail "the operator was refused something (above)"
  kubectl -n "$RELEASE_NS" delete serviceaccount metrics-scraper metrics-nobody
  return 0
}

test_uninstall_keeps_only_the_crd() {
  helm uninstall "$RELEASE" -n "$RELEASE_NS" --wait
  kubectl get crd modeldeployments.modelship.io || fail "the CRD was removed"
  kubectl get crd batchpredictions.modelship.io || fail "the BatchPrediction CRD was removed"
  local left
  left="$(kubectl get deployment,serviceaccount,service,role,rolebinding -A -l app.kubernetes.io/instance="$RELEASE" -o name; \
          kubectl get clusterrole,clusterrolebinding -l app.kubernetes.io/instance="$RELEASE" -o name)"
  [ -z "$left" ] || fail "left behind: $left"
  # A reinstall adopts the kept CRD.
  helm install "$RELEASE" "$CHART" -n "$RELEASE_NS"
  helm uninstall "$RELEASE" -n "$RELEASE_NS" --wait
  kubectl delete crd modeldeployments.modelship.io batchpredictions.modelship.io
}

echo "chart tests (logs in $WORK)"
run_test lint test_lint
run_test crd_copy_matches_crds_dir test_crd_copy_matches_crds_dir
run_test batch_crd_copy_matches_crds_dir test_batch_crd_copy_matches_crds_dir
run_test template_all_namespaces test_template_all_namespaces
run_test template_watch_namespaces test_template_watch_namespaces
run_test rbac_rules_grant_no_secrets_or_wildcards test_rbac_rules_grant_no_secrets_or_wildcards
run_test template_metrics_modes test_template_metrics_modes
run_test bad_values_are_refused_with_a_message test_bad_values_are_refused_with_a_message
CLUSTER_TESTS="server_side_dry_run install_all_namespaces_rbac upgrade_to_namespaced_rbac
  operator_runs_with_chart_rbac secure_metrics_readers_decided_by_the_api_server uninstall_keeps_only_the_crd"
if [ "${CHART_TESTS_OFFLINE:-0}" = 1 ]; then
  for t in $CLUSTER_TESTS; do skip_test "$t" "CHART_TESTS_OFFLINE=1"; done
elif cluster_up; then
  for t in $CLUSTER_TESTS; do run_test "$t" "test_$t"; done
fi
stop_cluster || harness_failed "control_plane_down: see $WORK/cluster-down.log"
harness_summary
