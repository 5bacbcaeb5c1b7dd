# shellcheck shell=bash
# gRPC through the operator's children on the full cluster. Sourced by
# tests/e2e/e2e.sh, after the public-URL tests (the operator is in gateway
# mode, tests/e2e/public_url.sh's expose_values).
#
#   grpc_probe_service_and_route   a ModelDeployment with expose and auth (API keys in a Secret):
#                                  the pod's readiness probe is the kubelet's grpc probe and
#                                  the pod becomes Ready by it; the Service has a grpc port
#                                  (appProtocol kubernetes.io/h2c); through the Service's
#                                  grpc port from the host (the cluster network): a
#                                  prediction with the key (virginica), UNAUTHENTICATED
#                                  without it; the GRPCRoute (host NAME-NS-grpc.localhost)
#                                  Accepted and ResolvedRefs; through it, via Traefik: the
#                                  services listed by reflection, no key UNAUTHENTICATED,
#                                  a wrong key UNAUTHENTICATED, the right key a prediction,
#                                  grpc.health.v1 not public
#
# grpcurl is built by scripts/setup-grpc-tools.sh (make setup); it connects
# to 127.0.0.1:GATEWAY_PORT or the Service's ClusterIP itself and sends the
# route's host as :authority, so no name is looked up.
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
# shellcheck disable=SC2034 # GRPC_TESTS is e2e.sh's

GRPC_TESTS="grpc_probe_service_and_route"
GRPC_MD=grpc
GRPCURL="${MODELSHIP_TOOLS:-$HOME/.cache/modelship/tools}/bin/grpcurl"
GRPC_INFER='{"model_name": "'$GRPC_MD'", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
  "contents": {"fp32_contents": [6.9, 3.1, 5.4, 2.1]}}]}'
# The label 2 (virginica), one little-endian INT64, as grpcurl prints raw_output_contents.
GRPC_VIRGINICA='"AgAAAAAAAAA="'

# grpc_call TARGET AUTHORITY METHOD [GRPCURL ARGS...]: a call with the
# ModelInfer request above; prints grpcurl's output (and its error).
grpc_call() {
  local target="$1" authority="$2" method="$3"; shift 3
  "$GRPCURL" -plaintext -max-time 10 -authority "$authority" -d "$GRPC_INFER" "$@" "$target" \
    "inference.GRPCInferenceService/$method" 2>&1
}

test_grpc_probe_service_and_route() {
  need_gateway
  [ -x "$GRPCURL" ] || skip "no grpcurl at $GRPCURL: scripts/setup-grpc-tools.sh"
  local t0=$SECONDS host="$GRPC_MD-$NS-grpc.localhost" out probe svc gw
  kubectl -n "$NS" create secret generic grpc-keys --from-literal=ci=grpc-key-1
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: $GRPC_MD}
spec:
  model: {uri: "builtin://iris"}
  expose: {}
  auth: {apiKeysSecretRef: {name: grpc-keys}}
YAML
  kubectl -n "$NS" wait "mdep/$GRPC_MD" --for=condition=Ready --timeout="${READY_BOUND}s"
  echo "MEASURED apply to Ready (readiness over gRPC): $((SECONDS - t0)) s"
  probe="$(kubectl -n "$NS" get deployment "$GRPC_MD" -o jsonpath='{.spec.template.spec.containers[0].readinessProbe}')"
  echo "readinessProbe: $probe"
  python3 -c 'import json, sys; p = json.loads(sys.argv[1]); assert p["grpc"]["port"] == 8081 and "httpGet" not in p, p' "$probe" ||
    fail "the readiness probe is not the grpc probe on 8081"
  kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$GRPC_MD" \
    -o jsonpath='{range .items[*]}{.metadata.name} ready={.status.containerStatuses[0].ready}{"\n"}{end}'
  svc="$(kubectl -n "$NS" get service "$GRPC_MD" -o jsonpath='{.spec.ports[?(@.name=="grpc")].port} {.spec.ports[?(@.name=="grpc")].appProtocol}')"
  [ "$svc" = "8081 kubernetes.io/h2c" ] || fail "the Service's grpc port is '$svc'"

  # Through the Service's grpc port, from the host.
  local service
  service="$(service_ip "$GRPC_MD"):8081"
  out="$(grpc_call "$service" "$GRPC_MD.$NS.svc" ModelInfer -H 'authorization: Bearer grpc-key-1')" ||
    fail "no prediction through the Service's grpc port: $out"
  grep -F "$GRPC_VIRGINICA" <<<"$out" >/dev/null || fail "not virginica through the Service: $out"
  out="$(grpc_call "$service" "$GRPC_MD.$NS.svc" ModelInfer)" && fail "a call without a key was answered: $out"
  grep 'Unauthenticated' <<<"$out" || fail "no key: not UNAUTHENTICATED: $out"

  # The GRPCRoute, through Traefik.
  kubectl -n "$NS" get grpcroute "$GRPC_MD" -o yaml
  wait_for 30 "the GRPCRoute Accepted" \
    'kubectl -n "$NS" get grpcroute "$GRPC_MD" -o jsonpath="{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}" | grep -x True' ||
    fail "the GRPCRoute is not Accepted"
  [ "$(kubectl -n "$NS" get grpcroute "$GRPC_MD" -o jsonpath='{.status.parents[0].conditions[?(@.type=="ResolvedRefs")].status}')" = True ] ||
    fail "the GRPCRoute's backends are not resolved"
  gw="127.0.0.1:$GATEWAY_PORT"
  wait_for 30 "a prediction through the GRPCRoute" \
    'grpc_call "$gw" "$host" ModelInfer -H "authorization: Bearer grpc-key-1" | grep -F "$GRPC_VIRGINICA"' ||
    fail "no prediction through the GRPCRoute: $(grpc_call "$gw" "$host" ModelInfer -H 'authorization: Bearer grpc-key-1')"
  echo "MEASURED apply to a prediction through the GRPCRoute: $((SECONDS - t0)) s"
  out="$("$GRPCURL" -plaintext -max-time 10 -authority "$host" "$gw" list 2>&1)" || fail "reflection through the route: $out"
  echo "listed through the route: $out"
  grep -x inference.GRPCInferenceService <<<"$out" >/dev/null || fail "reflection does not list the service"
  out="$(grpc_call "$gw" "$host" ModelInfer)" && fail "a call without a key was answered through the route: $out"
  grep 'Unauthenticated' <<<"$out" || fail "no key through the route: not UNAUTHENTICATED: $out"
  out="$(grpc_call "$gw" "$host" ModelInfer -H 'x-api-key: not-the-key')" && fail "a wrong key was accepted: $out"
  grep 'Unauthenticated' <<<"$out" || fail "a wrong key through the route: not UNAUTHENTICATED: $out"
  out="$(grpc_call "$gw" "$host" ModelInfer -H 'x-api-key: grpc-key-1')" || fail "x-api-key refused: $out"
  # Health is the cluster's (probes), not the public's.
  out="$("$GRPCURL" -plaintext -max-time 10 -authority "$host" "$gw" grpc.health.v1.Health/Check 2>&1)" &&
    fail "grpc.health.v1 is public: $out"
  echo "health through the route: $out"
  # The REST host is not the gRPC host: the HTTPRoute does not carry gRPC.
  out="$(grpc_call "$gw" "$GRPC_MD-$NS.localhost" ModelInfer -H 'x-api-key: grpc-key-1')" &&
    fail "gRPC answered on the REST host: $out"
  kubectl -n "$NS" delete mdep "$GRPC_MD" --wait=true
  kubectl -n "$NS" delete secret grpc-keys
}
