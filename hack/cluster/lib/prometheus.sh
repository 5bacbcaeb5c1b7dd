# shellcheck shell=bash
# The local cluster's Prometheus (cluster.sh prometheus [helm --set ARGS]):
# built from its Go module like Traefik (lib/gateway.sh), with only the
# Kubernetes service discovery compiled in (Debian's package has none), run
# as a host process on 127.0.0.1:$PROMETHEUS_PORT. It finds model pods through
# the API server (kubernetes_sd_configs with the cluster's kubeconfig) and
# scrapes them on their pod IPs, selected by the labels the chart's PodMonitor
# selects. Its rules are the chart's PrometheusRule, rendered with
# `helm template` (extra `--set` arguments go to it, e.g. a short `for` in
# tests) and its spec cut out: the rules tested are the rules shipped. A second
# call with other arguments re-renders the rules and reloads them.
# cluster.sh down stops it and removes its data with the state dir.

# Prometheus 3.16.0 (its Go module is versioned v0.MAJOR*100+MINOR.PATCH).
# Pinned here rather than in versions.env, whose lines name the Kubernetes
# cache: its own cache, like Traefik's.
PROMETHEUS_MODULE_VERSION=v0.316.0
# PORT_BASE + 93 (lib/common.sh lists the others; 80, 82 gateway, 90 S3).
PROMETHEUS_PORT=$((PORT_BASE + 93))
PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
# Seconds between scrapes and between rule evaluations: short, so that tests
# see a change within seconds.
PROMETHEUS_INTERVAL="${MODELSHIP_PROMETHEUS_INTERVAL:-2s}"

prometheus_hash() {
  {
    grep -E '^PROMETHEUS_MODULE_VERSION=' "$CLUSTER_SRC/lib/prometheus.sh"
    sed -n '/^prometheus_go_build() {/,/^}/p' "$CLUSTER_SRC/lib/prometheus.sh"
    go env GOVERSION GOARCH
  } | sha256sum | cut -c1-16
}

prometheus_dir() { echo "$CACHE_ROOT/prometheus-$(prometheus_hash)"; }

# prometheus_go_build SRC OUT: all that the cache key covers of the build.
# The module ships a go.work (GOWORK=off ignores it); remove_all_sd with
# enable_kubernetes_sd leaves out the cloud discoveries (and their SDKs);
# without the builtinassets tag the web UI is left out, the API stays.
prometheus_go_build() {
  cd "$1" && GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    exec go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags="-s -w" \
    -o "$2/" ./cmd/prometheus ./cmd/promtool
}

# build_prometheus: makes sure prometheus and promtool exist in
# $(prometheus_dir); prints that directory.
build_prometheus() {
  local dir; dir="$(prometheus_dir)"
  if [ ! -f "$dir/.complete" ]; then
    local src out="$dir.partial.$$" start=$SECONDS rc=0 blog="$CACHE_ROOT/prometheus-build.log"
    rm -rf "$out"; mkdir -p "$out"
    log "building Prometheus ${PROMETHEUS_MODULE_VERSION} into $dir (cold: about 4 minutes on 2 cores; log: $blog)"
    src="$(module_dir "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION")"
    cp -r "$src" "$out/src"
    chmod -R u+w "$out/src"
    (prometheus_go_build "$out/src" "$out") > "$blog" 2>&1 || rc=$?
    rm -rf "$out/src"
    if [ "$rc" -ne 0 ]; then
      tail -30 "$blog" >&2
      rm -rf "$out"
      die "building Prometheus failed; full log in $blog"
    fi
    echo "$((SECONDS - start))" > "$out/.build-seconds"
    touch "$out/.complete"
    rm -rf "$dir"; mv "$out" "$dir"
    log "built Prometheus in $((SECONDS - start))s"
  fi
  echo "$dir"
}

# prometheus_rules OUT [HELM ARGS...]: the chart's PrometheusRule rendered
# with monitoring.prometheusRule.enabled (and ARGS), its `spec` (the groups)
# written to OUT as a Prometheus rule file, checked by promtool.
prometheus_rules() {
  local out="$1"; shift
  "$BIN/helm" template modelship "$REPO_ROOT/charts/modelship" \
    --set monitoring.prometheusRule.enabled=true "$@" \
    --show-only templates/monitoring-prometheusrule.yaml \
    | awk '/^spec:$/ {in_spec = 1; next} in_spec {sub(/^  /, ""); print}' > "$out.new"
  "$(prometheus_dir)/promtool" check rules "$out.new" >&2 || die "the chart's rules do not load; see $out.new"
  mv "$out.new" "$out"
}

write_prometheus_config() {
  cat > "$CONF_DIR/prometheus.yml" <<YAML
# Written by hack/cluster/lib/prometheus.sh.
global:
  scrape_interval: $PROMETHEUS_INTERVAL
  scrape_timeout: $PROMETHEUS_INTERVAL
  evaluation_interval: $PROMETHEUS_INTERVAL
rule_files:
  - $CONF_DIR/prometheus-rules.yml
scrape_configs:
  # The chart's PodMonitor, by hand: the operator's model pods (primary and
  # canary), their http port, with the labels a PodMonitor adds.
  - job_name: modelship-models
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: $KUBECONFIG_FILE
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name, __meta_kubernetes_pod_label_app_kubernetes_io_component]
        regex: modelship;inference-server
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
        action: keep
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Running
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
YAML
}

prometheus_up() {
  [ "$(cat "$RUN_DIR/mode" 2>/dev/null)" = full ] || die "Prometheus needs a full cluster up in $STATE_DIR (MODE=full cluster.sh up)"
  BIN="$(bin_dir)"
  local dir start
  dir="$(build_prometheus)"
  start=$SECONDS
  prometheus_rules "$CONF_DIR/prometheus-rules.yml" "$@"
  write_prometheus_config
  "$dir/promtool" check config "$CONF_DIR/prometheus.yml" >/dev/null || die "bad Prometheus config $CONF_DIR/prometheus.yml"
  if proc_alive prometheus; then
    curl -sf --max-time 10 -X POST "$PROMETHEUS_URL/-/reload" >/dev/null || die "Prometheus did not reload; log: $LOG_DIR/prometheus.log"
    log "Prometheus reloaded its config and the chart's rules: $PROMETHEUS_URL"
    return 0
  fi
  mkdir -p "$STATE_DIR/prometheus"
  start_proc prometheus "$dir/prometheus" \
    "--config.file=$CONF_DIR/prometheus.yml" \
    "--storage.tsdb.path=$STATE_DIR/prometheus" \
    --storage.tsdb.retention.time=1d \
    "--web.listen-address=127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-lifecycle
  wait_for "Prometheus ready on $PROMETHEUS_URL" 60 prometheus \
    curl -sf --max-time 2 "$PROMETHEUS_URL/-/ready"
  log "Prometheus up in $((SECONDS - start))s: $PROMETHEUS_URL (rules: $CONF_DIR/prometheus-rules.yml)"
}
