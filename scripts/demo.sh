#!/usr/bin/env bash
# The whole user journey on the local cluster, left running.
#
#   scripts/demo.sh        (make demo)       cluster up (full mode), build and load the
#                                            images, helm install the operator, apply
#                                            examples/iris.yaml, wait for Ready, print
#                                            one prediction; starts the cluster's gateway
#                                            (Traefik), exposes the model and ends with its
#                                            public URL and a curl through it (without a
#                                            gateway, if Traefik fails, the model stays
#                                            in the cluster)
#   scripts/demo.sh down   (make demo-down)  remove the demo and stop the cluster
#
# Environment: MODELSHIP_CLUSTER_DIR (default .cluster), CARGO_TARGET_DIR
# (default ~/.cache/modelship/target), DEMO_NAMESPACE (default default),
# DEMO_NO_BUILD=1 (reuse the release binaries already built).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
RELEASE=modelship
RELEASE_NS=modelship-system
NS="${DEMO_NAMESPACE:-default}"
START=$SECONDS

step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

down() {
  if [ -f "$KUBECONFIG" ] && "$CLUSTER_SH" status >/dev/null 2>&1; then
    eval "$("$CLUSTER_SH" env)"
    step "removing the demo ModelDeployment and the operator"
    kubectl -n "$NS" delete -f examples/iris.yaml --ignore-not-found --wait=true --timeout=60s || true
    helm uninstall "$RELEASE" -n "$RELEASE_NS" --ignore-not-found --wait || true
  fi
  step "stopping the cluster"
  "$CLUSTER_SH" down
}

up() {
  step "setup: Rust, Go and Python tools (idempotent)"
  if [ ! -f .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 ]; then
    scripts/setup.sh
    scripts/setup-python.sh
  fi

  step "local Kubernetes cluster, full mode (hack/cluster; the first run builds it from source)"
  MODE=full "$CLUSTER_SH" up
  eval "$("$CLUSTER_SH" env)"
  kubectl get nodes
  step "the cluster's gateway: Traefik, Gateway API (the first run builds it from source)"
  local gateway=1
  "$CLUSTER_SH" gateway || { gateway=0; echo "demo: no gateway (above); iris stays in the cluster, without a public URL"; }
  eval "$("$CLUSTER_SH" env)"
  step "images modelship/server:dev and modelship/operator:dev (release build, loaded into containerd)"
  if [ "${DEMO_NO_BUILD:-0}" = 1 ]; then scripts/build-images.sh --no-build; else scripts/build-images.sh; fi

  step "helm install the operator (charts/modelship)"
  # A CRD kept by an uninstalled release of another name: hand it over
  # (docs/chart.md, "The CRD").
  local owner owner_ns
  owner="$(kubectl get crd modeldeployments.modelship.io -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}' 2>/dev/null || true)"
  owner_ns="$(kubectl get crd modeldeployments.modelship.io -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-namespace}' 2>/dev/null || true)"
  if [ -n "$owner" ] && [ "$owner/$owner_ns" != "$RELEASE/$RELEASE_NS" ] && ! helm status "$owner" -n "$owner_ns" >/dev/null 2>&1; then
    echo "the ModelDeployment CRD was kept by the uninstalled release $owner_ns/$owner; handing it to $RELEASE_NS/$RELEASE"
    kubectl annotate crd modeldeployments.modelship.io --overwrite \
      meta.helm.sh/release-name="$RELEASE" meta.helm.sh/release-namespace="$RELEASE_NS"
  fi
  # Public URLs through the cluster's Gateway, on hosts that need no DNS
  # (curl and browsers resolve *.localhost to loopback themselves).
  local values; values="$(mktemp)"
  [ "$gateway" = 0 ] ||
    printf 'expose:\n  mode: gateway\n  gateway: {name: %s, namespace: %s}\n  hostTemplate: "{name}-{namespace}.localhost"\n  urlPort: %s\n' \
      "$MODELSHIP_GATEWAY_NAME" "$MODELSHIP_GATEWAY_NAMESPACE" "$MODELSHIP_GATEWAY_PORT" > "$values"
  helm upgrade --install "$RELEASE" charts/modelship -n "$RELEASE_NS" --create-namespace \
    --wait --timeout 180s -f "$values"
  rm -f "$values"
  kubectl -n "$RELEASE_NS" get deployment "$RELEASE"

  step "kubectl apply -f examples/iris.yaml"
  kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS"
  kubectl -n "$NS" apply -f examples/iris.yaml
  if ! kubectl -n "$NS" wait mdep/iris --for=condition=Ready --timeout=300s; then
    kubectl -n "$NS" describe mdep iris || true
    die "iris is not Ready after 300 s (above: its conditions and events)"
  fi
  if [ "$gateway" = 1 ]; then
    kubectl -n "$NS" patch mdep iris --type=merge -p '{"spec":{"expose":{}}}'
    if ! kubectl -n "$NS" wait mdep/iris --for=condition=Exposed --timeout=60s; then
      kubectl -n "$NS" describe mdep iris || true
      die "iris has no public URL after 60 s (above: its conditions)"
    fi
  fi
  kubectl -n "$NS" get mdep iris -o wide

  step "one prediction through the Service (Open Inference Protocol v2)"
  local ip url body
  ip="$(kubectl -n "$NS" get service iris -o jsonpath='{.spec.clusterIP}')"
  url="http://$ip"
  body='{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[6.9,3.1,5.4,2.1]}]}'
  echo "curl -s $url/v2/models/iris/infer -d '$body'"
  curl -sS --fail-with-body --max-time 10 "$url/v2/models/iris/infer" -d "$body"
  echo

  local public host local_url resolve
  public="$(kubectl -n "$NS" get mdep iris -o jsonpath='{.status.url}')"
  if [ "$gateway" = 0 ]; then
    printf '\nThe demo is running (%s s), without a gateway: iris is at %s (from this machine: %s/).\n' \
      "$((SECONDS - START))" "$public" "$url"
    return 0
  fi
  step "the same through the public URL (the gateway on 127.0.0.1:$MODELSHIP_GATEWAY_PORT)"
  # status.url carries the local listener's port (the chart's expose.urlPort);
  # curl is told where the host is, since not every client resolves *.localhost.
  host="${public#http://}"; host="${host%%/*}"; host="${host%%:*}"
  local_url="http://$host:$MODELSHIP_GATEWAY_PORT"
  resolve="--resolve $host:$MODELSHIP_GATEWAY_PORT:127.0.0.1"
  echo "status.url: $public"
  echo "curl -s $resolve $local_url/v2/models/iris/infer -d '$body'"
  local ok=""
  for _ in $(seq 1 30); do
    # shellcheck disable=SC2086 # $resolve is two words on purpose
    if curl -sS --fail-with-body --max-time 10 $resolve "$local_url/v2/models/iris/infer" -d "$body"; then ok=1; break; fi
    sleep 1
  done
  [ -n "$ok" ] || die "no answer through the public URL $local_url"
  echo

  cat <<EOF

The demo is running ($((SECONDS - START)) s). From this machine:

  public URL:   $public   (status.url; the gateway listens on 127.0.0.1:$MODELSHIP_GATEWAY_PORT)
  web page:     $local_url/models/iris   (a browser on this machine resolves *.localhost itself)
  predict:      curl -s $resolve $local_url/v2/models/iris/infer -d '$body'
  in-cluster:   $url/   (the Service, from this machine)
  kubectl:      export KUBECONFIG=$KUBECONFIG; eval "\$(hack/cluster/cluster.sh env)"
                kubectl get mdep,deployment,service,pods -n $NS
  scale:        kubectl -n $NS scale mdep iris --replicas 3
  operator:     kubectl -n $RELEASE_NS logs deployment/$RELEASE
  stop it all:  make demo-down
EOF
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: scripts/demo.sh [up|down]" ;;
esac
