# shellcheck shell=bash
# The local cluster's object storage (cluster.sh s3): versitygw, an
# S3-compatible gateway over a plain directory (its posix backend), built from
# its Go module at a release tag like Traefik (lib/gateway.sh), run as a host
# process beside the cluster. It listens twice on one port: 127.0.0.1 for
# the host (tests put data in and read results back) and the bridge address
# for pods, which reach it through a selector-less Service whose EndpointSlice
# names the bridge address (as metrics-server is reached). Buckets are
# directories under $STATE_DIR/s3; cluster.sh down stops it and removes them
# with the rest. Credentials are fixed test values, printed by `cluster.sh env`.

S3_NAMESPACE=modelship-s3
S3_SERVICE=s3
S3_ACCESS_KEY=modelship
S3_SECRET_KEY=modelship-local-secret
S3_REGION=us-east-1
# 127.0.0.1 and the bridge address; PORT_BASE + 90 (lib/common.sh lists the others).
S3_PORT=$((PORT_BASE + 90))

# versitygw_hash names its cache: the pin, the build recipe and Go.
versitygw_hash() {
  {
    grep -E '^VERSITYGW_VERSION=' "$CLUSTER_SRC/versions.env"
    sed -n '/^versitygw_go_build() {/,/^}/p' "$CLUSTER_SRC/lib/s3.sh"
    go env GOVERSION GOARCH
  } | sha256sum | cut -c1-16
}

versitygw_dir() { echo "$CACHE_ROOT/versitygw-$(versitygw_hash)"; }

# versitygw_go_build SRC OUT: all that the cache key covers of the build.
versitygw_go_build() {
  cd "$1" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    exec go build -trimpath -ldflags="-s -w" -o "$2" ./cmd/versitygw
}

# build_versitygw: makes sure $(versitygw_dir)/versitygw exists; prints its path.
build_versitygw() {
  local dir; dir="$(versitygw_dir)"
  if [ ! -f "$dir/.complete" ]; then
    local src out="$dir.partial.$$" start=$SECONDS rc=0 blog="$CACHE_ROOT/versitygw-build.log"
    rm -rf "$out"; mkdir -p "$out"
    log "building versitygw $VERSITYGW_VERSION into $dir (cold: 1 to 3 minutes on 2 cores; log: $blog)"
    src="$(module_dir "github.com/versity/versitygw@$VERSITYGW_VERSION")"
    cp -r "$src" "$out/src"
    chmod -R u+w "$out/src"
    (versitygw_go_build "$out/src" "$out/versitygw") > "$blog" 2>&1 || rc=$?
    rm -rf "$out/src"
    if [ "$rc" -ne 0 ]; then
      tail -30 "$blog" >&2
      rm -rf "$out"
      die "building versitygw failed; full log in $blog"
    fi
    echo "$((SECONDS - start))" > "$out/.build-seconds"
    touch "$out/.complete"
    rm -rf "$dir"; mv "$out" "$dir"
    log "built versitygw in $((SECONDS - start))s"
  fi
  echo "$dir/versitygw"
}

s3_service_objects() {
  cat <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $S3_NAMESPACE}
---
apiVersion: v1
kind: Service
metadata: {name: $S3_SERVICE, namespace: $S3_NAMESPACE}
spec:
  ports: [{name: http, port: 80, targetPort: $S3_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $S3_SERVICE-host
  namespace: $S3_NAMESPACE
  labels: {kubernetes.io/service-name: $S3_SERVICE, endpointslice.kubernetes.io/managed-by: modelship-cluster}
addressType: IPv4
ports: [{name: http, port: $S3_PORT, protocol: TCP}]
endpoints: [{addresses: [$BRIDGE_IP]}]
YAML
}

# s3_endpoint_for_pods: the Service's URL by ClusterIP (the cluster has no DNS).
s3_endpoint_for_pods() {
  echo "http://$(kctl -n "$S3_NAMESPACE" get service "$S3_SERVICE" -o jsonpath='{.spec.clusterIP}')"
}

s3_up() {
  [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = full ] || die "s3 needs a full cluster up in $STATE_DIR (MODE=full cluster.sh up)"
  # shellcheck disable=SC2034 # kctl's kubectl
  BIN="$(bin_dir)"
  if ! proc_alive versitygw; then
    local gw start
    gw="$(build_versitygw)"
    start=$SECONDS
    mkdir -p "$STATE_DIR/s3"
    start_proc versitygw env ROOT_ACCESS_KEY_ID="$S3_ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
      "$gw" --port "127.0.0.1:$S3_PORT" --port "$BRIDGE_IP:$S3_PORT" --region "$S3_REGION" --quiet \
      posix "$STATE_DIR/s3"
    wait_for "versitygw on 127.0.0.1:$S3_PORT" 30 versitygw \
      sh -c "curl -s -o /dev/null --max-time 2 http://127.0.0.1:$S3_PORT/"
    echo "$((SECONDS - start))" > "$RUN_DIR/s3-start-seconds"
  fi
  s3_service_objects | kctl apply --server-side -f - >/dev/null
  log "s3 up: versitygw on http://127.0.0.1:$S3_PORT (host), $(s3_endpoint_for_pods) (pods, Service $S3_NAMESPACE/$S3_SERVICE)"
}

# s3_env: export lines for a client on the host and for pods' Secrets.
s3_env() {
  # shellcheck disable=SC2034 # kctl's kubectl
  BIN="$(bin_dir)"
  echo "export MODELSHIP_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "export MODELSHIP_S3_POD_ENDPOINT=$(s3_endpoint_for_pods)"
  echo "export MODELSHIP_S3_ACCESS_KEY=$S3_ACCESS_KEY MODELSHIP_S3_SECRET_KEY=$S3_SECRET_KEY MODELSHIP_S3_REGION=$S3_REGION"
}
