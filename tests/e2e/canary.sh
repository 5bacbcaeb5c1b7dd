# shellcheck shell=bash
# The canary through the local cluster's gateway (Traefik). Sourced by
# tests/e2e/e2e.sh after the public-URL tests (the operator in gateway mode).
# One ModelDeployment, "split", goes through a canary's life:
#
#   canary_split_ten_percent      primary iris version 1, canary version 2 at trafficPercent 10:
#                                 CanaryReady, status.canary.trafficPercent 10; of 2,000
#                                 requests through the public URL the canary (by the
#                                 x-modelship-variant header) answers 10% +-3, all 200; of
#                                 500 gRPC calls through the GRPCRoute, 10% +-3 as well
#   canary_promoted_under_load    promotion (spec.model becomes the canary's, spec.canary
#                                 removed) while 4 clients send requests through the public
#                                 URL: zero non-200 and zero connection errors; the steps in
#                                 order, sampled from the API every half second: the route
#                                 keeps the canary's 10% while the primary rolls out
#                                 (status.canary.reason CanaryPromoting), moves it only once
#                                 the rollout is complete, and the canary's Deployment goes
#                                 only after the route stopped naming it; afterwards every
#                                 answer is the primary's and names version 2, the canary's
#                                 Deployment and Service are gone
#   canary_that_cannot_load_gets_nothing  a canary whose model URI is a 404: CanaryReady False,
#                                 status.canary.trafficPercent 0 with the reason
#                                 (CanaryNotReady) and message, 200 requests all answered by
#                                 the primary
#
# Requests go to the gateway's 127.0.0.1 port with the route's Host header
# (tests/e2e/load.py --host), gRPC calls with the route's :authority: no
# name is looked up.
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
# shellcheck disable=SC2034 # CANARY_TESTS is e2e.sh's

CANARY_TESTS="canary_split_ten_percent canary_promoted_under_load canary_that_cannot_load_gets_nothing"
SPLIT="split"
SPLIT_HOST="$SPLIT-$NS.localhost"

# split_load SUMMARY [LOAD ARGS...]: load.py through the gateway to split's public URL.
split_load() {
  local summary="$1"; shift
  python3 "$ROOT/tests/e2e/load.py" "http://127.0.0.1:$GATEWAY_PORT/v2/models/$SPLIT/infer" \
    --host "$SPLIT_HOST" --summary "$summary" "$@"
}
canary_status() { kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath="{.status.canary.$1}"; }

test_canary_split_ten_percent() {
  need_gateway
  local t0=$SECONDS
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: $SPLIT}
spec:
  model: {uri: "builtin://iris", version: "1"}
  expose: {}
  canary:
    model: {uri: "builtin://iris", version: "2"}
    trafficPercent: 10
YAML
  kubectl -n "$NS" wait "mdep/$SPLIT" --for=condition=Ready --timeout="${READY_BOUND}s"
  wait_for "$READY_BOUND" "CanaryReady" 'kubectl -n "$NS" wait "mdep/$SPLIT" --for=condition=CanaryReady --timeout=1s' ||
    { kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath='{.status}'; fail "the canary is not Ready"; }
  [ "$(canary_status trafficPercent)" = 10 ] || fail "status.canary.trafficPercent is '$(canary_status trafficPercent)'"
  echo "MEASURED apply to CanaryReady: $((SECONDS - t0)) s"
  # The route may take a moment to carry the canary's weight; then the count starts.
  wait_for 30 "the canary to answer through the gateway" \
    'split_load "$WORK/split-probe.json" --seconds 10 --requests 50 && grep -q "\"canary\"" "$WORK/split-probe.json"' ||
    fail "the canary never answered through the gateway: $(cat "$WORK/split-probe.json")"
  split_load "$WORK/split.json" --seconds 120 --requests 2000 --threads 4 >/dev/null
  python3 - "$WORK/split.json" <<'PY' || fail "the split is not 10%"
import json, sys
s = json.load(open(sys.argv[1]))
print("2,000 requests through the public URL:", json.dumps(s))
assert s["requests"] == 2000, s
assert s["status"] == {"200": 2000} and not s["errors"], s
share = 100 * s["variant"].get("canary", 0) / 2000
print("MEASURED canary share of 2,000 requests at trafficPercent 10: %.1f%%" % share)
assert 7 <= share <= 13, "canary share %.1f%% is not 10%% +-3" % share
assert s["variant"].get("canary", 0) + s["variant"].get("primary", 0) == 2000, s["variant"]
PY
  # The same split over gRPC, through the GRPCRoute.
  "$ROOT/.venv/bin/python" - "127.0.0.1:$GATEWAY_PORT" "$SPLIT-$NS-grpc.localhost" "$SPLIT" <<'PY' ||
import collections, sys
import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

target, authority, model = sys.argv[1:]
channel = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
req = service_pb2.ModelInferRequest(model_name=model)
t = req.inputs.add(name="input", datatype="FP32", shape=[1, 4])
t.contents.fp32_contents.extend([6.9, 3.1, 5.4, 2.1])
variants = collections.Counter()
for _ in range(500):
    _, call = stub.ModelInfer.with_call(req, timeout=10)
    variants[dict(call.initial_metadata()).get("x-modelship-variant", "-")] += 1
share = 100 * variants["canary"] / 500
print("500 gRPC calls through the GRPCRoute:", dict(variants))
print("MEASURED canary share of 500 gRPC calls at trafficPercent 10: %.1f%%" % share)
assert variants["canary"] + variants["primary"] == 500, variants
assert 7 <= share <= 13, "gRPC canary share %.1f%% is not 10%% +-3" % share
PY
    fail "the gRPC split is not 10%"
}

# sample_promotion STOP OUT: until STOP exists, a line a sample to OUT: the route, the
# primary's Deployment, the canary's Deployment and the ModelDeployment as one kubectl call
# returns them (read in that order: see check_promotion_order), as one line of JSON.
sample_promotion() {
  local stop="$1" out="$2"
  while [ ! -e "$stop" ]; do
    { kubectl -n "$NS" get "httproute/$SPLIT" "deployment/$SPLIT" "deployment/$SPLIT-canary" \
        "mdep/$SPLIT" -o json 2>/dev/null || true; } | tr -d '\n' >>"$out"
    echo >>"$out"
    sleep 0.2
  done
}

# check_promotion_order SAMPLES: the promotion's steps came in order. A sample reads the
# route before the rollout and the canary after it, so a route already moved with a rollout
# read as incomplete, or a route still naming the canary with its Deployment read as gone,
# is the operator's doing, not the sampler's.
check_promotion_order() {
  python3 - "$1" "$SPLIT" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
canary = name + "-canary"
samples = []
for line in open(path):
    if not line.strip():
        continue
    items = json.loads(line).get("items", [])
    found = {(i["kind"], i["metadata"]["name"]): i for i in items}
    route, primary = found.get(("HTTPRoute", name)), found.get(("Deployment", name))
    if route is None or primary is None:
        continue
    weights = {b["name"]: b.get("weight", 1) for b in route["spec"]["rules"][-1]["backendRefs"]}
    st, spec = primary.get("status", {}), primary["spec"]
    desired = spec.get("replicas", 1)
    complete = (st.get("observedGeneration", 0) >= primary["metadata"]["generation"]
                and st.get("updatedReplicas", 0) == desired == st.get("replicas", 0)
                and st.get("availableReplicas", 0) >= desired)
    mdep = found.get(("ModelDeployment", name), {})
    reason = ((mdep.get("status") or {}).get("canary") or {}).get("reason")
    samples.append((weights.get(canary, 0), complete, ("Deployment", canary) in found, reason))
held = [s for s in samples if s[0] == 10 and not s[1]]
moved_early = [s for s in samples if s[0] == 0 and not s[1]]
gone_early = [s for s in samples if s[0] > 0 and not s[2]]
promoting = [s for s in samples if s[3] == "CanaryPromoting"]
print("promotion samples: %d; the canary at 10%% while the primary rolled out: %d; "
      "status.canary.reason CanaryPromoting: %d" % (len(samples), len(held), len(promoting)))
print("MEASURED promotion samples holding the canary's share during the rollout: %d of %d"
      % (len(held), len(samples)))
assert len(samples) >= 10, samples
assert held, "no sample saw the canary keep its 10%% while the primary rolled out: %s" % samples
assert not moved_early, "the route moved off the canary before the rollout was complete: %s" % moved_early
assert not gone_early, "the canary's Deployment went while the route named it: %s" % gone_early
PY
}

test_canary_promoted_under_load() {
  need_gateway
  local stop="$WORK/promote.stop" load sampler t0
  split_load "$WORK/promote.json" --seconds 300 --threads 4 --stop-file "$stop" &
  load=$!
  : >"$WORK/promote.samples"
  sample_promotion "$stop" "$WORK/promote.samples" &
  sampler=$!
  sleep 3
  t0=$SECONDS
  kubectl -n "$NS" patch mdep "$SPLIT" --type=json -p '[
    {"op": "replace", "path": "/spec/model", "value": {"uri": "builtin://iris", "version": "2"}},
    {"op": "remove", "path": "/spec/canary"}]'
  kubectl -n "$NS" rollout status "deployment/$SPLIT" --timeout="${READY_BOUND}s"
  wait_for 60 "the canary's Deployment and Service to go" \
    '! kubectl -n "$NS" get "deployment/$SPLIT-canary" && ! kubectl -n "$NS" get "service/$SPLIT-canary"' ||
    fail "the canary's children are still there"
  wait_for 60 "the canary's pods to go" \
    'test -z "$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$SPLIT-canary" -o name)"' ||
    fail "the canary's pods are still there"
  wait_for 60 "the old primary pod to go" \
    'test "$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$SPLIT" -o name | wc -l)" = 1'
  kubectl -n "$NS" wait "mdep/$SPLIT" --for=condition=Ready --timeout=30s
  echo "MEASURED promotion to canary gone and primary rolled: $((SECONDS - t0)) s"
  sleep 3
  touch "$stop"
  wait "$load" || fail "the load generator failed"
  wait "$sampler"
  check_promotion_order "$WORK/promote.samples" || fail "the promotion's steps were out of order"
  # The first step is news: a Normal Event on the ModelDeployment.
  kubectl -n "$NS" get events --field-selector "reason=CanaryPromoting,involvedObject.name=$SPLIT" -o name | grep -q . ||
    fail "no CanaryPromoting Event"
  load_was_clean "$WORK/promote.json" promotion 100 || fail "requests failed during the promotion"
  split_load "$WORK/promoted.json" --seconds 30 --requests 100 >/dev/null
  python3 - "$WORK/promoted.json" <<'PY' || fail "the promoted model is not the one answering"
import json, sys
s = json.load(open(sys.argv[1]))
print("after the promotion:", json.dumps(s))
assert s["variant"] == {"primary": 100}, s["variant"]
assert s["model_version"] == {"2": 100}, s["model_version"]
PY
  [ -z "$(kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath='{.status.canary}')" ] || fail "status.canary is still set"
}

test_canary_that_cannot_load_gets_nothing() {
  need_gateway
  kubectl -n "$NS" patch mdep "$SPLIT" --type=merge -p "{\"spec\":{\"canary\":{
    \"model\":{\"uri\":\"http://$NODE_IP:$FILE_PORT/no-such-model.onnx\",\"version\":\"3\"},\"trafficPercent\":10}}}"
  wait_for 60 "status.canary with the reason" 'test "$(canary_status reason)" = CanaryNotReady' ||
    { kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath='{.status}'; fail "status.canary.reason is '$(canary_status reason)'"; }
  kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath='{.status.canary}'; echo
  [ "$(canary_status trafficPercent)" = 0 ] || fail "a canary that cannot load gets $(canary_status trafficPercent)%"
  [ -n "$(canary_status message)" ] || fail "status.canary has no message"
  [ "$(kubectl -n "$NS" get mdep "$SPLIT" -o jsonpath='{.status.conditions[?(@.type=="CanaryReady")].status}')" = False ] ||
    fail "CanaryReady is not False"
  # Its pod is there and failing, not missing.
  kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$SPLIT-canary" -o wide
  [ -n "$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$SPLIT-canary" -o name)" ] || fail "no canary pod"
  split_load "$WORK/broken.json" --seconds 30 --requests 200 >/dev/null
  python3 - "$WORK/broken.json" <<'PY' || fail "requests reached the canary that cannot load"
import json, sys
s = json.load(open(sys.argv[1]))
print("200 requests with a canary that cannot load:", json.dumps(s))
assert s["status"] == {"200": 200} and not s["errors"], s
assert s["variant"] == {"primary": 200}, s["variant"]
PY
  kubectl -n "$NS" delete mdep "$SPLIT" --wait=true
}
