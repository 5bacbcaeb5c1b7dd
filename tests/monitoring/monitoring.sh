#!/usr/bin/env bash
# Feedback from production on the full local cluster, watched by a real
# Prometheus (docs/monitoring.md):
#
#   tests/monitoring/monitoring.sh
#
# Needs a full cluster with the images loaded (tests/monitoring/run.sh does
# both). Installs the chart as release modelship-mon in namespace
# modelship-mon, works in namespace mon-models, starts the cluster's
# Prometheus (hack/cluster/cluster.sh prometheus) with the chart's rules, and
# removes its objects at the end (Prometheus stays up with the cluster).
#
#   rules_unit_tests                 promtool test rules (tests/monitoring/rules_test.yaml)
#                                    on the rules rendered from the chart: every alert fires
#                                    where it must and not where it must not
#   models_ready_with_monitoring     spec.monitoring reaches the pods (downward API,
#                                    payload log to a dead sink, feedback window), the status
#                                    says payload logging is on; iris with 2 replicas and
#                                    iris-keys (API keys) Ready
#   prometheus_scrapes_both_replicas Prometheus finds both iris pods through the API server
#                                    and scrapes them on their pod IPs; the chart's PodMonitor
#                                    selects the same pods
#   feedback_accuracy_across_replicas  1,000 inferences and their feedback through the Service,
#                                    100 of them wrong: every item counted once, accuracy 0.90
#                                    from PromQL over the counters of both pods; an unknown id
#                                    counted as unknown
#   unshifted_inputs_do_not_drift    the recording rule's PSI (all pods) and each pod's own
#                                    PSI stay under 0.1 for every feature
#   shifted_petal_length_drifts      1,000 inferences with petal length + 2 cm: that feature's
#                                    PSI above 0.2 (recording rule and each pod's gauge), the
#                                    other features under 0.2, and ModelshipModelFeatureDrift
#                                    firing in Prometheus for that feature only
#   expired_id_is_counted            feedback for an id older than the 30 s window: expired
#   dead_sink_drops_and_counts       every inference was answered; the payload log's events
#                                    were dropped and counted, none sent
#   dashboard_queries_return_data    every query of every panel of the chart's Grafana
#                                    dashboard returns data from Prometheus
#   feedback_needs_the_api_key       with spec.auth the feedback route answers 401 without a
#                                    key and counts with one
#
# The harness is hack/lib/harness.sh. Bounds can be widened for slow
# machines: MON_READY_BOUND, MON_PROM_BOUND (seconds).
# shellcheck disable=SC2317 # the checks passed to `eventually` are called indirectly
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
RELEASE=modelship-mon
RELEASE_NS=modelship-mon
NS=mon-models
READY_BOUND="${MON_READY_BOUND:-120}"
PROM_BOUND="${MON_PROM_BOUND:-60}"
PY="${MODELSHIP_PYTHON:-$ROOT/.venv/bin/python}"
TRAFFIC="$ROOT/tests/monitoring/traffic.py"
# The cluster's Prometheus (hack/cluster/lib/prometheus.sh: PORT_BASE + 93).
PROM="http://127.0.0.1:$((${MODELSHIP_CLUSTER_PORT_BASE:-16000} + 93))"
FEEDBACK_WINDOW_S=30
API_KEY=mon-test-key-7f3a
# The feature the drift test shifts, as the card names it.
SHIFTED='petal length (cm)'
WORK="$(mktemp -d /tmp/modelship-monitoring.XXXXXX)"
TEST_LOGS="$WORK/logs"
# Files the tests hand on to later ones (ids, times), kept apart from the logs.
STATE="$WORK/state"
mkdir -p "$STATE"
# shellcheck source=../../hack/lib/harness.sh
source "$ROOT/hack/lib/harness.sh"

eval "$("$CLUSTER_SH" env)"

cleanup() {
  if [ -n "${CLUSTER_OK:-}" ]; then
    kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    helm uninstall "$RELEASE" -n "$RELEASE_NS" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$RELEASE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
}
trap cleanup EXIT

# promql QUERY: the result vector as JSON.
promql() { "$PY" "$TRAFFIC" query "$PROM" "$1"; }
# promql_value QUERY: the value of a one-series result; fails on any other count.
promql_value() {
  local out; out="$(promql "$1")"
  jq -e 'length == 1' <<<"$out" >/dev/null || { echo "expected one series for $1, got: $out" >&2; return 1; }
  jq -r '.[0].value[1]' <<<"$out"
}
# is_true EXPR: a floating-point comparison (awk), e.g. is_true "0.9 == 0.9".
is_true() { awk "BEGIN { exit !($1) }"; }
service_url() {
  echo "http://$(kubectl -n "$NS" get service "$1" -o jsonpath='{.spec.clusterIP}')/v2/models/$2"
}

test_rules_unit_tests() {
  local dir="$WORK/rules"
  mkdir -p "$dir"
  cp "$ROOT/tests/monitoring/rules_test.yaml" "$dir/"
  # The same rendering and cut as the cluster's Prometheus (lib/prometheus.sh), default values.
  helm template modelship "$ROOT/charts/modelship" --set monitoring.prometheusRule.enabled=true \
    --show-only templates/monitoring-prometheusrule.yaml \
    | awk '/^spec:$/ {in_spec = 1; next} in_spec {sub(/^  /, ""); print}' > "$dir/rules.yml"
  local promtool; promtool="$("$CLUSTER_SH" prometheus-dir)/promtool"
  "$promtool" check rules "$dir/rules.yml"
  (cd "$dir" && "$promtool" test rules rules_test.yaml)
  # Every alert of the chart has a test.
  local alert alerts
  alerts="$(awk '$1 == "-" && $2 == "alert:" {print $3}' "$dir/rules.yml")"
  [ "$(wc -l <<<"$alerts")" = 4 ] || fail "expected 4 alerts in the chart's rules: $alerts"
  while IFS= read -r alert; do
    grep -q "alertname: $alert\$" "$dir/rules_test.yaml" || fail "alert $alert has no promtool test"
  done <<<"$alerts"
}

test_models_ready_with_monitoring() {
  local t0=$SECONDS
  helm install "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --create-namespace --wait --timeout 180s \
    --set replicaCount=1
  kubectl create namespace "$NS"
  kubectl -n "$NS" create secret generic iris-keys --from-literal=test="$API_KEY"
  # The payload log goes to a port where nothing listens: a dead sink.
  kubectl -n "$NS" apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: iris}
spec:
  model: {uri: builtin://iris}
  replicas: 2
  monitoring:
    payloadLog: {url: "http://127.0.0.1:9/events?token=not-shown", mode: all, sampleRate: 1}
    feedback: {window: ${FEEDBACK_WINDOW_S}s}
---
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: iris-keys}
spec:
  model: {uri: builtin://iris}
  auth: {apiKeysSecretRef: {name: iris-keys}}
EOF
  kubectl -n "$NS" wait mdep/iris mdep/iris-keys --for=condition=Ready --timeout="${READY_BOUND}s"
  kubectl -n "$NS" rollout status deployment/iris --timeout=60s
  echo "MEASURED operator installed and both models Ready: $((SECONDS - t0)) s"
  local status; status="$(kubectl -n "$NS" get mdep iris -o jsonpath='{.status.payloadLog}')"
  echo "status.payloadLog: $status"
  jq -e '.enabled == true and .sink == "http://127.0.0.1:9/events" and .mode == "all" and .sampleRate == 1' \
    <<<"$status" >/dev/null || fail "status.payloadLog is $status"
  [ -z "$(kubectl -n "$NS" get mdep iris-keys -o jsonpath='{.status.payloadLog}')" ] \
    || fail "iris-keys has no spec.monitoring but a status.payloadLog"
  local pod env
  pod="$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=iris -o jsonpath='{.items[0].metadata.name}')"
  env="$(kubectl -n "$NS" get pod "$pod" -o json | jq -c '.spec.containers[0].env | map({(.name): (.value // .valueFrom.fieldRef.fieldPath)}) | add')"
  echo "server env: $env"
  jq -e '.MODELSHIP_POD_IP == "status.podIP" and .MODELSHIP_POD_NAME == "metadata.name"
    and .MODELSHIP_NAMESPACE == "metadata.namespace" and .MODELSHIP_FEEDBACK_WINDOW == "30s"
    and .MODELSHIP_PAYLOAD_LOG_MODE == "all" and .MODELSHIP_PAYLOAD_LOG_SAMPLE_RATE == "1"' <<<"$env" >/dev/null \
    || fail "the server container's env does not carry spec.monitoring: $env"
  # Prometheus with the chart's rules; the drift alert's `for` cut to 6 s so that it fires within the test.
  "$CLUSTER_SH" prometheus --set monitoring.prometheusRule.drift.for=6s
}

test_prometheus_scrapes_both_replicas() {
  # The 2 iris pods and the 1 of iris-keys.
  local ips
  ips="$(kubectl -n "$NS" get pods -o jsonpath='{range .items[*]}{.status.podIP}:8080{"\n"}{end}' | sort)"
  [ "$(wc -l <<<"$ips")" = 3 ] || fail "not 3 model pods: $ips"
  scraped() {
    local got
    got="$(promql "up{namespace=\"$NS\"} == 1" | jq -r '.[].metric.instance' | sort)"
    [ "$got" = "$ips" ]
  }
  eventually "$PROM_BOUND" scraped
  echo "Prometheus scrapes: $ips"
  # The chart's PodMonitor selects exactly the operator's model pods.
  local selector
  selector="$(helm template modelship "$ROOT/charts/modelship" --set monitoring.podMonitor.enabled=true \
    --show-only templates/monitoring-podmonitor.yaml \
    | yq -r '.spec.selector.matchLabels | to_entries | map("\(.key)=\(.value)") | join(",")')"
  [ "$(kubectl -n "$NS" get pods -l "$selector" -o name | wc -l)" = 3 ] \
    || fail "the PodMonitor's selector $selector does not select the 3 model pods"
}

test_feedback_accuracy_across_replicas() {
  local url; url="$(service_url iris iris)"
  # One inference kept aside for the expired test, then the 1,000.
  "$PY" "$TRAFFIC" infer "$url" 1 "$STATE/kept.json" --seed 1
  date +%s > "$STATE/kept.time"
  local t0=$SECONDS
  "$PY" "$TRAFFIC" infer "$url" 1000 "$STATE/ids.json"
  echo "MEASURED 1000 inferences through the Service: $((SECONDS - t0)) s"
  local answer; answer="$("$PY" "$TRAFFIC" feedback "$url" "$STATE/ids.json" 100)"
  echo "feedback answers, summed: $answer"
  jq -e '.counted == 1000 and .unknown == 0 and .expired == 0 and .invalid == 0' <<<"$answer" >/dev/null \
    || fail "not every item counted once: $answer"
  exact() {
    local correct rows counted
    correct="$(promql_value "sum(modelship_feedback_correct_total{namespace=\"$NS\", model=\"iris\"})")"
    rows="$(promql_value "sum(modelship_feedback_rows_total{namespace=\"$NS\", model=\"iris\"})")"
    counted="$(promql_value "sum(modelship_feedback_total{namespace=\"$NS\", model=\"iris\", result=\"counted\"})")"
    echo "correct $correct rows $rows counted $counted"
    [ "$correct" = 900 ] && [ "$rows" = 1000 ] && [ "$counted" = 1000 ]
  }
  eventually "$PROM_BOUND" exact
  local accuracy
  accuracy="$(promql_value "sum(modelship_feedback_correct_total{namespace=\"$NS\", model=\"iris\"}) / sum(modelship_feedback_rows_total{namespace=\"$NS\", model=\"iris\"})")"
  echo "MEASURED accuracy from PromQL over both pods: $accuracy"
  is_true "$accuracy == 0.9" || fail "accuracy $accuracy, not 0.90"
  # Both replicas served and both counted feedback: the figure is the sum of two pods.
  local per_pod
  per_pod="$(promql "sum by (pod) (modelship_feedback_rows_total{namespace=\"$NS\", model=\"iris\"})")"
  echo "feedback rows by pod: $(jq -c 'map({(.metric.pod): .value[1]}) | add' <<<"$per_pod")"
  jq -e 'length == 2 and all(.value[1] | tonumber > 0)' <<<"$per_pod" >/dev/null \
    || fail "feedback was not counted on both pods: $per_pod"
  # An id in the server's format that no pod made: counted as unknown, not an error.
  local fake
  fake="$(jq -r '.[0].id' "$STATE/ids.json" | awk -F. 'BEGIN {OFS = "."} {$3 = "fffffff"; print}')"
  answer="$("$PY" "$TRAFFIC" post "$url/feedback" "{\"items\": [{\"id\": \"$fake\", \"truth\": [0]}]}")"
  echo "unknown id $fake: $answer"
  jq -e '.status == 200 and .body.unknown == 1 and .body.counted == 0' <<<"$answer" >/dev/null \
    || fail "an unknown id was not counted as unknown: $answer"
  unknown_scraped() {
    is_true "$(promql_value "sum(modelship_feedback_total{namespace=\"$NS\", model=\"iris\", result=\"unknown\"})") == 1"
  }
  eventually "$PROM_BOUND" unknown_scraped
}

# psi_by_feature RULE_OR_METRIC: "feature=value" lines.
psi_by_feature() {
  promql "$1" | jq -r '.[] | "\(.metric.feature)=\(.value[1])"' | sort
}

test_unshifted_inputs_do_not_drift() {
  local rule
  rule_ready() {
    rule="$(psi_by_feature "modelship:drift_psi:1h{namespace=\"$NS\", model=\"iris\"}")"
    [ "$(wc -l <<<"$rule")" = 4 ] && ! grep -q NaN <<<"$rule"
  }
  eventually "$PROM_BOUND" rule_ready
  echo "recording rule, unshifted: $rule"
  local line
  while IFS= read -r line; do
    is_true "${line##*=} < 0.1" || fail "unshifted PSI across pods not under 0.1: $line"
  done <<<"$rule"
  local gauges
  gauges="$(promql "modelship_drift_psi{namespace=\"$NS\", model=\"iris\"}" | jq -r '.[] | "\(.metric.pod) \(.metric.feature)=\(.value[1])"')"
  echo "pod gauges, unshifted: $gauges"
  [ "$(wc -l <<<"$gauges")" = 8 ] || fail "not 4 features on each of 2 pods: $gauges"
  while IFS= read -r line; do
    is_true "${line##*=} < 0.1" || fail "unshifted PSI of a pod not under 0.1: $line"
  done <<<"$gauges"
}

test_shifted_petal_length_drifts() {
  local url; url="$(service_url iris iris)"
  "$PY" "$TRAFFIC" infer "$url" 1000 "$STATE/shifted.json" --shift-petal-length 2 --seed 7
  local rule
  drifted() {
    rule="$(psi_by_feature "modelship:drift_psi:1h{namespace=\"$NS\", model=\"iris\"}")"
    is_true "$(grep -F "$SHIFTED=" <<<"$rule" | cut -d= -f2) > 0.2"
  }
  eventually "$PROM_BOUND" drifted
  echo "MEASURED recording rule after the shift: $(tr '\n' ' ' <<<"$rule")"
  local line
  while IFS= read -r line; do
    case "$line" in "$SHIFTED="*) continue ;; esac
    is_true "${line##*=} < 0.2" || fail "an unshifted feature drifted: $line"
  done <<<"$rule"
  local gauges
  gauges_drifted() {
    gauges="$(promql "modelship_drift_psi{namespace=\"$NS\", model=\"iris\", feature=\"$SHIFTED\"}" | jq -r '.[] | "\(.metric.pod)=\(.value[1])"')"
    [ "$(wc -l <<<"$gauges")" = 2 ] || return 1
    while IFS= read -r line; do is_true "${line##*=} > 0.2" || return 1; done <<<"$gauges"
  }
  eventually "$PROM_BOUND" gauges_drifted
  echo "pod gauges of $SHIFTED: $(tr '\n' ' ' <<<"$gauges")"
  local alerts
  firing() {
    alerts="$(promql "ALERTS{alertname=\"ModelshipModelFeatureDrift\", namespace=\"$NS\", alertstate=\"firing\"}")"
    jq -e 'length > 0' <<<"$alerts" >/dev/null
  }
  eventually "$PROM_BOUND" firing
  echo "firing: $(jq -c 'map(.metric)' <<<"$alerts")"
  jq -e --arg f "$SHIFTED" 'length == 1 and .[0].metric.feature == $f and .[0].metric.model == "iris"' <<<"$alerts" >/dev/null \
    || fail "the drift alert should fire for $SHIFTED only: $alerts"
}

test_expired_id_is_counted() {
  local age=$(($(date +%s) - $(cat "$STATE/kept.time")))
  [ "$age" -gt "$FEEDBACK_WINDOW_S" ] || sleep $((FEEDBACK_WINDOW_S + 1 - age))
  local url id answer
  url="$(service_url iris iris)"
  id="$(jq -r '.[0].id' "$STATE/kept.json")"
  answer="$("$PY" "$TRAFFIC" post "$url/feedback" "{\"items\": [{\"id\": \"$id\", \"truth\": [0]}]}")"
  echo "feedback for $id after the window: $answer"
  jq -e '.status == 200 and .body.expired == 1 and .body.counted == 0' <<<"$answer" >/dev/null \
    || fail "an expired id was not counted as expired: $answer"
}

test_dead_sink_drops_and_counts() {
  # 2,002 inferences above, each answered 200 (traffic.py fails otherwise) with the sink dead.
  local dropped sent
  counted() {
    dropped="$(promql_value "sum(modelship_payload_log_dropped_total{namespace=\"$NS\"})")"
    is_true "$dropped > 0"
  }
  eventually "$PROM_BOUND" counted
  sent="$(promql "sum(modelship_payload_log_events_total{namespace=\"$NS\", result=\"sent\"})" | jq -r '.[0].value[1] // "0"')"
  echo "MEASURED payload events to the dead sink: dropped $dropped, sent $sent"
  [ "$sent" = 0 ] || fail "$sent events sent to a sink where nothing listens"
}

test_dashboard_queries_return_data() {
  local dashboard queries q n=0 empty=0
  dashboard="$(helm template modelship "$ROOT/charts/modelship" --set monitoring.dashboard.enabled=true \
    --show-only templates/monitoring-dashboard.yaml | yq -r '.data["modelship-models.json"]')"
  queries="$(jq -r '.panels[].targets[].expr' <<<"$dashboard")"
  [ -n "$queries" ] || fail "the dashboard has no queries"
  while IFS= read -r q; do
    q="${q//\$namespace/$NS}"
    q="${q//\$model/iris}"
    n=$((n + 1))
    if [ "$(promql "$q" | jq length)" -gt 0 ]; then echo "data: $q"
    else echo "NO DATA: $q"; empty=$((empty + 1)); fi
  done <<<"$queries"
  echo "MEASURED dashboard queries with data: $((n - empty)) of $n"
  [ "$empty" = 0 ] || fail "$empty of $n dashboard queries return no data"
}

test_feedback_needs_the_api_key() {
  local url answer; url="$(service_url iris-keys iris-keys)"
  "$PY" "$TRAFFIC" infer "$url" 1 "$STATE/keyed.json" --key "$API_KEY"
  local item; item="$(jq -c '{items: [{id: .[0].id, truth: [.[0].predicted]}]}' "$STATE/keyed.json")"
  answer="$("$PY" "$TRAFFIC" post "$url/feedback" "$item")"
  echo "without a key: $answer"
  jq -e '.status == 401' <<<"$answer" >/dev/null || fail "feedback without a key: $answer"
  answer="$("$PY" "$TRAFFIC" post "$url/feedback" "$item" --key wrong-key)"
  jq -e '.status == 401' <<<"$answer" >/dev/null || fail "feedback with a wrong key: $answer"
  answer="$("$PY" "$TRAFFIC" post "$url/feedback" "$item" --key "$API_KEY")"
  echo "with the key: $answer"
  jq -e '.status == 200 and .body.counted == 1' <<<"$answer" >/dev/null || fail "feedback with the key: $answer"
}

TESTS="rules_unit_tests models_ready_with_monitoring prometheus_scrapes_both_replicas
  feedback_accuracy_across_replicas unshifted_inputs_do_not_drift shifted_petal_length_drifts
  expired_id_is_counted dead_sink_drops_and_counts dashboard_queries_return_data feedback_needs_the_api_key"

if ! "$CLUSTER_SH" status >/dev/null 2>&1 || [ "$(cat "$MODELSHIP_CLUSTER_DIR/run/mode" 2>/dev/null)" != full ]; then
  for t in $TESTS; do skip_test "$t" "no full cluster up in $MODELSHIP_CLUSTER_DIR (tests/monitoring/run.sh starts one)"; done
  harness_summary
  exit $?
fi
CLUSTER_OK=1
for t in $TESTS; do run_test "$t" "test_$t"; done
harness_summary
