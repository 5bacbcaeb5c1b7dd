# shellcheck shell=bash
# Builds every binary of the cluster from the Go module proxy into the cache
# outside the repo, once per pin hash.

build_flags() {
  local kv="$KUBERNETES_VERSION" minor
  minor="${kv#v1.}"; minor="${minor%%.*}"
  local x=""
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$kv -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  x+=" -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  x+=" -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
  x+=" -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  echo "-s -w$x"
}

# The programs the multi-call binary "kube" answers to; each gets a symlink.
KUBE_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd metrics-server helm)

check_go_mod_matches_pins() {
  local gomod="$CLUSTER_SRC/build/go.mod" want
  for want in "k8s.io/kubernetes $KUBERNETES_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
    "helm.sh/helm/v4 $HELM_VERSION" "sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION" \
    "sigs.k8s.io/cri-tools $CRI_TOOLS_VERSION" "k8s.io/api => k8s.io/api v0.${KUBERNETES_VERSION#v1.}"; do
    grep -qF "$want" "$gomod" || die "build/go.mod does not pin '$want' from versions.env; run hack/cluster/build/update-go-mod.sh"
  done
}

# build_binaries makes sure $(bin_dir) holds every binary; prints the dir.
build_binaries() {
  command -v go >/dev/null || die "go is not on PATH; the cluster is built from Go modules"
  check_go_mod_matches_pins
  local bin; bin="$(bin_dir)"
  if [ ! -f "$bin/.complete" ]; then
    local out="$bin.partial.$$"
    rm -rf "$out"; mkdir -p "$out"
    log "building cluster binaries into $bin (cold: tens of minutes on 2 cores; log: $CACHE_ROOT/build.log)"
    local start=$SECONDS
    # One go build: shared packages compile once; kube is one multi-call
    # binary, so most of the code is also linked once.
    # -v names each package as it compiles: progress for a long, quiet step.
    (cd "$CLUSTER_SRC/build" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
      exec go build -v -trimpath -ldflags="$(build_flags)" -o "$out/" \
      ./cmd/kube sigs.k8s.io/cri-tools/cmd/crictl) > "$CACHE_ROOT/build.log" 2>&1 &
    local go_pid=$! rc=0 ticks=0
    while kill -0 "$go_pid" 2>/dev/null; do
      sleep 2
      ticks=$((ticks + 1))
      if [ $((ticks % 30)) -eq 0 ]; then
        log "still building: $(grep -c '^[a-z]' "$CACHE_ROOT/build.log") of about 3200 packages after $((SECONDS - start))s"
      fi
    done
    wait "$go_pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
      tail -50 "$CACHE_ROOT/build.log" >&2
      rm -rf "$out"
      die "go build failed; full log in $CACHE_ROOT/build.log"
    fi
    local p
    for p in "${KUBE_PROGRAMS[@]}"; do ln -sf kube "$out/$p"; done
    echo "$((SECONDS - start))" > "$out/.build-seconds"
    touch "$out/.complete"
    rm -rf "$bin"; mv "$out" "$bin"
    log "built in $((SECONDS - start))s: $bin"
  fi
  build_small "$bin"
  echo "$bin"
}

# build_small BIN: pause and testapp, static, stdlib only.
build_small() {
  local bin="$1" stamp; stamp="$1/.small-$(small_hash)"
  [ -f "$stamp" ] && return 0
  (cd "$CLUSTER_SRC/build" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
    go build -trimpath -ldflags="-s -w" -o "$bin/" ./cmd/pause ./cmd/testapp) >&2 ||
    die "building pause and testapp failed"
  rm -f "$bin"/.small-* "$(dirname "$bin")"/images/*.tar
  touch "$stamp"
}
