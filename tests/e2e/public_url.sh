# shellcheck shell=bash
# The public URL of a model through the local cluster's gateway (Traefik,
# Gateway API: hack/cluster/cluster.sh gateway). Sourced by tests/e2e/e2e.sh,
# which installs the chart with expose_values below.
#
#   public_url_predicts_and_hides_metrics  expose: {} -> Exposed=True, status.url is
#                                     http://web-e2e-models.localhost/v2/models/web; through
#                                     the gateway from the host: a prediction (200, virginica),
#                                     the page / (200, HTML), /metrics 404 (while the Service
#                                     itself serves it)
#   public_page_in_chromium           the model's page through the public URL in headless
#                                     Chromium: form, Predict, "virginica"
#   public_url_under_path_prefix      expose.path: /iris -> status.url under /iris, a
#                                     prediction and the page under the prefix, the old
#                                     paths and /iris/metrics 404; the page under /iris in
#                                     headless Chromium (relative links, assets and calls)
#   public_url_removed_with_expose    expose removed -> HTTPRoute gone, status.url the
#                                     in-cluster URL, the public URL 404s
#   public_url_through_ingress        the operator in Ingress mode (class traefik): a
#                                     prediction through the Ingress, /metrics 404, a canary
#                                     refused (CanaryUnsupported); run after the leader tests
#
# No name is looked up: curl connects to the gateway's 127.0.0.1 port itself
# (--connect-to, the URL and its Host header unchanged), Chromium maps
# *.localhost to 127.0.0.1 (--host-resolver-rules).
# shellcheck disable=SC2016 # wait_for's code is quoted to be evaluated later
# shellcheck disable=SC2034 # PUBLIC_TESTS is e2e.sh's

PUBLIC_TESTS="public_url_predicts_and_hides_metrics public_page_in_chromium public_url_under_path_prefix
  public_url_removed_with_expose"
WEB=web
WEB_HOST="$WEB-$NS.localhost"
# The Gateway's listener, on the host.
GATEWAY_PORT="${MODELSHIP_GATEWAY_PORT:-}"

# expose_values FILE: chart values that point the operator at the local Gateway.
expose_values() {
  cat >"$1" <<EOF
expose:
  mode: gateway
  gateway:
    name: ${MODELSHIP_GATEWAY_NAME:-modelship}
    namespace: ${MODELSHIP_GATEWAY_NAMESPACE:-modelship-gateway}
  hostTemplate: "{name}-{namespace}.localhost"
EOF
}

# need_gateway: skip (with the reason) when the cluster has no Programmed Gateway.
need_gateway() {
  [ -n "$GATEWAY_PORT" ] || skip "the cluster scripts name no gateway port"
  kubectl -n "${MODELSHIP_GATEWAY_NAMESPACE:-}" wait "gateway/${MODELSHIP_GATEWAY_NAME:-}" \
    --for=condition=Programmed --timeout=5s >/dev/null 2>&1 ||
    skip "no gateway on the cluster: hack/cluster/cluster.sh gateway"
}

# gw_curl URL [CURL ARGS...]: curl through the gateway, for a URL on port 80
# of any host; prints the body, then the status code on its own last line.
gw_curl() {
  local url="$1" host; shift
  host="${url#http://}"; host="${host%%/*}"
  curl -sS --max-time 10 --connect-to "$host:80:127.0.0.1:$GATEWAY_PORT" -w '\n%{http_code}' "$@" "$url"
}
gw_status() { gw_curl "$@" -o /dev/null | tail -n 1; }
mdep_url() { kubectl -n "$NS" get mdep "$WEB" -o jsonpath='{.status.url}'; }
VIRGINICA='{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[6.9,3.1,5.4,2.1]}]}'

# predicts_through_gateway MODEL_URL: a 200 with label 2 (virginica).
predicts_through_gateway() {
  local out
  out="$(gw_curl "$1/infer" -d "$VIRGINICA")" || return 1
  [ "$(tail -n 1 <<<"$out")" = 200 ] || { echo "status $(tail -n 1 <<<"$out"): $out"; return 1; }
  [ "$(sed '$d' <<<"$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["outputs"][0]["data"][0])')" = 2 ]
}

test_public_url_predicts_and_hides_metrics() {
  need_gateway
  local t0=$SECONDS url
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: $WEB}
spec:
  model: {uri: "builtin://iris"}
  expose: {}
YAML
  kubectl -n "$NS" wait "mdep/$WEB" --for=condition=Ready --timeout="${READY_BOUND}s"
  kubectl -n "$NS" wait "mdep/$WEB" --for=condition=Exposed --timeout=60s ||
    { kubectl -n "$NS" get mdep "$WEB" -o jsonpath='{.status.conditions}'; fail "not Exposed"; }
  url="$(mdep_url)"
  echo "status.url: $url"
  [ "$url" = "http://$WEB_HOST/v2/models/$WEB" ] || fail "status.url is '$url', not http://$WEB_HOST/v2/models/$WEB"
  kubectl -n "$NS" get httproute "$WEB" -o yaml
  wait_for 30 "a prediction through the gateway" 'predicts_through_gateway "$url"' || fail "no prediction through $url"
  echo "MEASURED apply to a prediction through the public URL: $((SECONDS - t0)) s"
  local page
  page="$(gw_curl "http://$WEB_HOST/" -D "$WORK/page-headers.txt")"
  [ "$(tail -n 1 <<<"$page")" = 200 ] || fail "the page / answered $(tail -n 1 <<<"$page")"
  grep -i '^content-type: text/html' "$WORK/page-headers.txt" || fail "the page / is not HTML"
  grep -i '<html' <<<"$page" >/dev/null || fail "the page / has no <html>"
  [ "$(gw_status "$url/ready")" = 200 ] || fail "the model's readiness is not public"
  # /metrics: served by the pods (through the Service), not by the public route.
  local metrics
  metrics="$(curl -sf --max-time 5 "http://$(service_ip "$WEB")/metrics")" || fail "the Service does not serve /metrics"
  grep -m 2 '^# HELP' <<<"$metrics" || fail "the Service's /metrics has no metrics"
  [ "$(gw_status "http://$WEB_HOST/metrics")" = 404 ] || fail "/metrics is reachable through the public URL"
  [ "$(gw_status "http://other-$NS.localhost/v2/models/$WEB/ready")" = 404 ] || fail "another host reaches the model"
}

# page_predicts_in_chromium URL: the model's page at URL in headless Chromium:
# the form filled, Predict, "virginica"; no page error, no request that failed.
page_predicts_in_chromium() {
  [ -x "$ROOT/.venv/bin/python" ] || skip "no .venv: scripts/setup-python.sh"
  local chromium="${MODELSHIP_CHROMIUM:-/usr/bin/chromium}"
  [ -x "$chromium" ] || skip "no Chromium at $chromium: scripts/setup.sh"
  "$ROOT/.venv/bin/python" - "$1" "$chromium" <<'PY'
import sys, tempfile
from playwright.sync_api import sync_playwright

url, chromium = sys.argv[1], sys.argv[2]
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # No lookup leaves the machine: *.localhost is loopback, everything else fails.
        "--host-resolver-rules=MAP *.localhost 127.0.0.1, MAP * ~NOTFOUND"]
with sync_playwright() as p:
    ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="modelship-e2e-chromium-"),
                                               executable_path=chromium, headless=True, args=args)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    errors, failed = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Every asset and API call must be found: under a prefix, an absolute path would 404.
    # (The browser's own favicon request is not the page's.)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.goto(url)
    for i, value in enumerate([6.9, 3.1, 5.4, 2.1]):
        page.fill(f"#feature-{i}", str(value))
    page.get_by_role("button", name="Predict").click()
    prediction = page.locator("#single-result .prediction")
    prediction.wait_for()
    print("prediction on the page through", url, ":", prediction.inner_text())
    assert prediction.inner_text() == "virginica", prediction.inner_text()
    assert not errors, errors
    assert not failed, failed
    ctx.close()
PY
}

test_public_page_in_chromium() {
  need_gateway
  page_predicts_in_chromium "http://$WEB_HOST:$GATEWAY_PORT/models/$WEB"
}

test_public_url_under_path_prefix() {
  need_gateway
  kubectl -n "$NS" patch mdep "$WEB" --type=merge -p '{"spec":{"expose":{"path":"/iris"}}}'
  wait_for 30 "status.url under /iris" 'test "$(mdep_url)" = "http://$WEB_HOST/iris/v2/models/$WEB"' ||
    fail "status.url is '$(mdep_url)'"
  echo "status.url: $(mdep_url)"
  wait_for 30 "a prediction under /iris" 'predicts_through_gateway "$(mdep_url)"' || fail "no prediction under /iris"
  [ "$(gw_status "http://$WEB_HOST/iris/")" = 200 ] || fail "the page /iris/ is not served"
  [ "$(gw_status "http://$WEB_HOST/v2/models/$WEB/ready")" = 404 ] || fail "the path without the prefix still reaches the model"
  [ "$(gw_status "http://$WEB_HOST/iris/metrics")" = 404 ] || fail "/iris/metrics is reachable"
  # The page under the prefix: its links, assets and API calls are relative to it.
  local index
  index="$(gw_curl "http://$WEB_HOST/iris/")"
  grep -F "href=\"models/$WEB\"" <<<"$index" >/dev/null || fail "the index's link to the model is not relative: $index"
  page_predicts_in_chromium "http://$WEB_HOST:$GATEWAY_PORT/iris/models/$WEB"
}

test_public_url_removed_with_expose() {
  need_gateway
  local url; url="$(mdep_url)"
  kubectl -n "$NS" patch mdep "$WEB" --type=json -p '[{"op":"remove","path":"/spec/expose"}]'
  wait_for 30 "the HTTPRoute to go" '! kubectl -n "$NS" get httproute "$WEB"' || fail "the HTTPRoute is still there"
  wait_for 30 "status.url back to the in-cluster URL" 'test "$(mdep_url)" != "$url"' || fail "status.url is still $url"
  echo "status.url: $(mdep_url)"
  case "$(mdep_url)" in http://$WEB.$NS.svc*) ;; *) fail "status.url is not the in-cluster URL: $(mdep_url)" ;; esac
  wait_for 30 "the public URL to 404" 'test "$(gw_status "$url/ready")" = 404' || fail "$url still answers"
  kubectl -n "$NS" delete mdep "$WEB" --wait=true
}

# public_url_through_ingress: the operator switched to Ingress mode (helm
# upgrade, class traefik: Traefik's Ingress provider, same entry point): a
# prediction through the public URL, /metrics 404, and a canary refused with
# CanaryReady=False/CanaryUnsupported. The operator goes back to gateway mode.
test_public_url_through_ingress() {
  need_gateway
  local t0=$SECONDS url
  helm upgrade "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --reuse-values --wait --timeout 180s \
    --set expose.mode=ingress --set expose.ingressClass=traefik
  kubectl -n "$RELEASE_NS" rollout status "deployment/$RELEASE" --timeout=120s
  echo "MEASURED helm upgrade to Ingress mode, operator rolled: $((SECONDS - t0)) s"
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: ing}
spec:
  model: {uri: "builtin://iris", version: "1"}
  expose: {}
  canary:
    model: {uri: "builtin://iris", version: "2"}
    trafficPercent: 10
YAML
  kubectl -n "$NS" wait mdep/ing --for=condition=Ready --timeout="${READY_BOUND}s"
  wait_for 60 "Exposed" 'kubectl -n "$NS" wait mdep/ing --for=condition=Exposed --timeout=1s' ||
    { kubectl -n "$NS" get mdep ing -o jsonpath='{.status.conditions}'; fail "not Exposed in Ingress mode"; }
  kubectl -n "$NS" get ingress ing -o yaml
  url="$(kubectl -n "$NS" get mdep ing -o jsonpath='{.status.url}')"
  [ "$url" = "http://ing-$NS.localhost/v2/models/ing" ] || fail "status.url is '$url'"
  wait_for 30 "a prediction through the Ingress" 'predicts_through_gateway "$url"' || fail "no prediction through $url"
  [ "$(gw_status "http://ing-$NS.localhost/metrics")" = 404 ] || fail "/metrics is reachable through the Ingress"
  local reason
  reason="$(kubectl -n "$NS" get mdep ing -o jsonpath='{.status.conditions[?(@.type=="CanaryReady")].reason}')"
  kubectl -n "$NS" get mdep ing -o jsonpath='{.status.conditions[?(@.type=="CanaryReady")]}'; echo
  [ "$reason" = CanaryUnsupported ] || fail "CanaryReady reason is '$reason', not CanaryUnsupported"
  if kubectl -n "$NS" get deployment ing-canary 2>/dev/null; then fail "the canary was deployed in Ingress mode"; fi
  kubectl -n "$NS" delete mdep ing --wait=true
  helm upgrade "$RELEASE" "$ROOT/charts/modelship" -n "$RELEASE_NS" --reuse-values --wait --timeout 180s \
    --set expose.mode=gateway
  kubectl -n "$RELEASE_NS" rollout status "deployment/$RELEASE" --timeout=120s
}
