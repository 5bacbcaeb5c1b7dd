# shellcheck shell=bash
# API keys through the local cluster's gateway (Traefik). Sourced by
# tests/e2e/e2e.sh after the public-URL tests (the operator in gateway mode).
#
#   api_keys_through_gateway_and_rotated  a ModelDeployment with expose and auth (keys in a
#                                 Secret): through the public URL no key 401 with
#                                 WWW-Authenticate and a JSON error, a wrong key 401, the
#                                 right key 200 (as Bearer and as X-API-Key), the model's
#                                 health open; then the Secret edited (key-1 replaced by
#                                 key-2, a third key kept) while 2 clients send requests
#                                 with the kept key: key-2 accepted and key-1 refused within
#                                 the kubelet's refresh plus the server's 2 s re-read (the
#                                 delay is MEASURED), no container restarted, the same pods,
#                                 and the load saw zero non-200 and zero connection errors
#
# Requests go to the gateway's 127.0.0.1 port with the route's Host header: no name is looked
# up. The kubelet of the local cluster refreshes Secret volumes at its defaults (the sync
# period, 1 min, plus its cache TTL): docs/api.md says so.
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
# shellcheck disable=SC2034 # AUTH_TESTS is e2e.sh's

AUTH_TESTS="api_keys_through_gateway_and_rotated"
KEYED="keyed"
KEYED_HOST="$KEYED-$NS.localhost"
# Through the gateway with the route's Host; prints the status code only.
keyed_status() { gw_status "http://$KEYED_HOST/v2/models/$KEYED/infer" -d "$VIRGINICA" "$@"; }

test_api_keys_through_gateway_and_rotated() {
  need_gateway
  kubectl -n "$NS" create secret generic keyed-keys --from-literal=ci=key-1 --from-literal=batch=key-kept
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: $KEYED}
spec:
  model: {uri: "builtin://iris"}
  expose: {}
  auth: {apiKeysSecretRef: {name: keyed-keys}}
YAML
  kubectl -n "$NS" wait "mdep/$KEYED" --for=condition=Ready --timeout="${READY_BOUND}s"
  wait_for 60 "Exposed" 'kubectl -n "$NS" wait "mdep/$KEYED" --for=condition=Exposed --timeout=1s' ||
    { kubectl -n "$NS" get mdep "$KEYED" -o jsonpath='{.status.conditions}'; fail "not Exposed"; }
  wait_for 30 "the route to answer" 'test "$(keyed_status -H "Authorization: Bearer key-1")" = 200' ||
    fail "the right key is not answered 200 through the gateway"

  local out
  out="$(gw_curl "http://$KEYED_HOST/v2/models/$KEYED/infer" -d "$VIRGINICA" -D "$WORK/keyed-401.txt")"
  echo "no key: $out"
  [ "$(tail -n 1 <<<"$out")" = 401 ] || fail "no key: $(tail -n 1 <<<"$out"), not 401"
  grep -qi '^www-authenticate: Bearer' "$WORK/keyed-401.txt" || fail "no WWW-Authenticate: Bearer on the 401"
  sed '$d' <<<"$out" | python3 -c 'import json, sys; assert json.load(sys.stdin)["error"]' ||
    fail "the 401 has no JSON error"
  [ "$(keyed_status -H "Authorization: Bearer wrong-key")" = 401 ] || fail "a wrong key is not 401"
  [ "$(keyed_status -H "X-API-Key: key-kept")" = 200 ] || fail "X-API-Key is not accepted"
  [ "$(gw_status "http://$KEYED_HOST/v2/models/$KEYED/ready")" = 200 ] || fail "the model's health is not open"

  local pods_before restarts stop="$WORK/keyed.stop" load t0
  pods_before="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$KEYED" -o name | sort)"
  python3 "$ROOT/tests/e2e/load.py" "http://127.0.0.1:$GATEWAY_PORT/v2/models/$KEYED/infer" \
    --host "$KEYED_HOST" --api-key key-kept --threads 2 --seconds 300 --stop-file "$stop" \
    --summary "$WORK/keyed-load.json" &
  load=$!
  sleep 2
  t0=$SECONDS
  kubectl -n "$NS" create secret generic keyed-keys --from-literal=ci=key-2 --from-literal=batch=key-kept \
    --dry-run=client -o yaml | kubectl -n "$NS" apply -f -
  wait_for 180 "key-2 accepted and key-1 refused" \
    'test "$(keyed_status -H "Authorization: Bearer key-2")" = 200 && test "$(keyed_status -H "Authorization: Bearer key-1")" = 401' ||
    { touch "$stop"; wait "$load" || true; fail "the rotation did not take effect within 180 s"; }
  echo "MEASURED API key rotation (Secret edited to new key accepted, old refused, through the gateway): $((SECONDS - t0)) s"
  sleep 2
  touch "$stop"
  wait "$load" || fail "the load generator failed"
  load_was_clean "$WORK/keyed-load.json" "API key rotation (the kept key)" 50 ||
    fail "requests failed during the rotation"
  [ "$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$KEYED" -o name | sort)" = "$pods_before" ] ||
    fail "the pods changed during the rotation"
  restarts="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$KEYED" \
    -o jsonpath='{range .items[*]}{.status.containerStatuses[*].restartCount}{"\n"}{end}' | sort -u)"
  [ "$restarts" = 0 ] || fail "a container restarted: restart counts $restarts"
  kubectl -n "$NS" delete mdep "$KEYED" --wait=false >/dev/null
}
