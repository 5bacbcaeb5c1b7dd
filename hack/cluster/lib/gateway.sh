# shellcheck shell=bash
# The local cluster's Gateway API implementation (cluster.sh gateway): Traefik,
# built from its Go module like the other components, run as a host process
# that reads the cluster through its kubeconfig, with one entry point on
# 127.0.0.1:$GATEWAY_PORT. It installs the Gateway API CRDs (standard channel,
# the version Traefik pins), a GatewayClass and the Gateway that modelship's
# HTTPRoutes and GRPCRoutes attach to, and an IngressClass for Traefik's
# Ingress provider. Traefik's Gateway provider serves GRPCRoutes (standard
# channel) with no flag; the entry point takes h2c (gRPC without TLS) as it
# comes, and Traefik speaks h2c to a backend port whose appProtocol is
# kubernetes.io/h2c (the operator's Service sets it).
# cluster.sh down stops it with the rest; its log is $LOG_DIR/traefik.log.

GATEWAY_NAME=modelship
GATEWAY_NAMESPACE=modelship-gateway
GATEWAY_CLASS=traefik
INGRESS_CLASS=traefik

# traefik_hash names Traefik's own cache: its pin, its build recipe
# (traefik_go_build) and Go. Content only, like pins_hash, and apart from it:
# a Traefik change never rebuilds Kubernetes.
traefik_hash() {
  {
    grep -E '^TRAEFIK_VERSION=' "$CLUSTER_SRC/versions.env"
    sed -n '/^traefik_go_build() {/,/^}/p' "$CLUSTER_SRC/lib/gateway.sh"
    go env GOVERSION GOARCH
  } | sha256sum | cut -c1-16
}

traefik_dir() { echo "$CACHE_ROOT/traefik-$(traefik_hash)"; }

# module_dir MODULE@VERSION: its directory in the Go module cache (read-only),
# downloaded through the module proxy when missing.
module_dir() {
  local tmp dir
  tmp="$(mktemp -d)"
  dir="$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  rmdir "$tmp"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "go mod download $1 failed"; fi
  echo "$dir"
}

# traefik_go_build SRC OUT: the build itself, all that the cache key covers
# of this file (how the build is watched and logged is not). From a writable
# copy of the module: its go.mod has replace directives, so `go build
# module@version` refuses it, and -mod=mod lets Go complete its go.sum there.
# -v names each package as it compiles: progress for a long, quiet step.
traefik_go_build() {
  cd "$1" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    exec go build -v -trimpath -ldflags="-s -w" -o "$2" ./cmd/traefik
}

# build_traefik: makes sure $(traefik_dir)/traefik exists; prints its path.
build_traefik() {
  local dir; dir="$(traefik_dir)"
  if [ ! -f "$dir/.complete" ]; then
    local src out="$dir.partial.$$" start=$SECONDS rc=0 blog="$CACHE_ROOT/traefik-build.log"
    rm -rf "$out"; mkdir -p "$out"
    log "building Traefik $TRAEFIK_VERSION into $dir (cold: 5 to 10 minutes on 2 cores; log: $blog)"
    src="$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")"
    cp -r "$src" "$out/src"
    chmod -R u+w "$out/src"
    (traefik_go_build "$out/src" "$out/traefik") > "$blog" 2>&1 &
    local go_pid=$! ticks=0
    while kill -0 "$go_pid" 2>/dev/null; do
      sleep 2
      ticks=$((ticks + 1))
      if [ $((ticks % 30)) -eq 0 ]; then
        log "still building Traefik: $(grep -c '^[a-z]' "$blog") packages after $((SECONDS - start))s"
      fi
    done
    wait "$go_pid" || rc=$?
    rm -rf "$out/src"
    if [ "$rc" -ne 0 ]; then
      tail -30 "$blog" >&2
      rm -rf "$out"
      die "building Traefik failed; full log in $blog"
    fi
    echo "$((SECONDS - start))" > "$out/.build-seconds"
    touch "$out/.complete"
    rm -rf "$dir"; mv "$out" "$dir"
    log "built Traefik in $((SECONDS - start))s"
  fi
  echo "$dir/traefik"
}

# gateway_api_crds: the standard channel's CRDs of the pinned Gateway API.
gateway_api_crds() {
  echo "$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")/config/crd/standard"
}

write_traefik_config() {
  cat > "$CONF_DIR/traefik.yaml" <<EOF
# Written by hack/cluster/lib/gateway.sh.
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:$GATEWAY_PORT"
  ping:
    address: "127.0.0.1:$GATEWAY_PING_PORT"
ping:
  entryPoint: ping
log:
  level: INFO
  noColor: true
accessLog:
  filePath: "$LOG_DIR/traefik-access.log"
providers:
  kubernetesGateway:
    statusAddress:
      ip: 127.0.0.1
  kubernetesIngress:
    ingressClass: $INGRESS_CLASS
EOF
}

apply_gateway_objects() {
  kctl apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $GATEWAY_NAMESPACE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: $GATEWAY_CLASS}
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: $GATEWAY_NAME, namespace: $GATEWAY_NAMESPACE}
spec:
  gatewayClassName: $GATEWAY_CLASS
  listeners:
  - name: http
    protocol: HTTP
    port: $GATEWAY_PORT
    allowedRoutes:
      namespaces: {from: All}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: $INGRESS_CLASS}
spec:
  controller: traefik.io/ingress-controller
EOF
}

gateway_up() {
  [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = full ] || die "the gateway needs a full cluster up in $STATE_DIR (MODE=full cluster.sh up)"
  # shellcheck disable=SC2034 # kctl's kubectl
  BIN="$(bin_dir)"
  if proc_alive traefik; then
    log "gateway already up: http://127.0.0.1:$GATEWAY_PORT (Gateway $GATEWAY_NAMESPACE/$GATEWAY_NAME); nothing to do"
    return 0
  fi
  local traefik start=$SECONDS
  traefik="$(build_traefik)"
  start=$SECONDS
  log "installing the Gateway API $GATEWAY_API_VERSION CRDs (standard channel)"
  kctl apply --server-side -f "$(gateway_api_crds)" >/dev/null
  kctl wait --for=condition=Established --timeout=60s \
    crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
    crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io >/dev/null
  write_traefik_config
  start_proc traefik env KUBECONFIG="$KUBECONFIG_FILE" "$traefik" "--configFile=$CONF_DIR/traefik.yaml"
  wait_for "Traefik's ping on 127.0.0.1:$GATEWAY_PING_PORT" 60 traefik \
    curl -sf --max-time 2 "http://127.0.0.1:$GATEWAY_PING_PORT/ping"
  apply_gateway_objects
  wait_for "Gateway $GATEWAY_NAMESPACE/$GATEWAY_NAME to be Programmed" 60 traefik \
    kctl -n "$GATEWAY_NAMESPACE" wait "gateway/$GATEWAY_NAME" --for=condition=Programmed --timeout=2s
  echo "$((SECONDS - start))" > "$RUN_DIR/gateway-start-seconds"
  log "gateway up in $((SECONDS - start))s: Gateway $GATEWAY_NAMESPACE/$GATEWAY_NAME, listener http on 127.0.0.1:$GATEWAY_PORT"
}
