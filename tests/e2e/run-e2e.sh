#!/usr/bin/env bash
# make test-e2e: the user's journey and the operator's pod-failure statuses on
# a real full-mode cluster, as part of make test.
#
#   tests/e2e/run-e2e.sh
#
# 1. Starts a full-mode cluster in MODELSHIP_CLUSTER_DIR (default .cluster),
#    unless one is already up there (then it is used and left running).
#    Starts its gateway (hack/cluster/cluster.sh gateway: Traefik, built once
#    into its cache, cold about 10 minutes) unless it runs; a gateway this
#    script starts on a cluster it did not start stays up with the cluster.
# 2. Packs modelship-server and modelship-operator into the images
#    modelship/server:dev and modelship/operator:dev (scripts/build-images.sh)
#    and loads them into the cluster. make test packs the debug builds it has
#    already compiled (stripped; the same image layout as the release), so the
#    suite needs no second, release compile; E2E_PROFILE=release packs release
#    builds instead (compiled here when missing).
# 3. tests/e2e/e2e.sh: helm install, predictions, the public URL through the
#    gateway, rolling update under load,
#    autoscaling, 404 model, operator kill and leader takeover, delete, uninstall.
# 4. The operator's full-mode integration test: a model that cannot be fetched
#    and a pod that cannot be scheduled, reported as Degraded on real pods.
# 5. Stops the cluster if this script started it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
PROFILE="${E2E_PROFILE:-debug}"
START=$SECONDS

step() { printf '\n==> [e2e %3ds] %s\n' "$((SECONDS - START))" "$*"; }

# build-images.sh builds release binaries itself; debug ones are built here.
case "$PROFILE" in
  debug) cargo build --locked -p modelship-server --bin modelship-server -p modelship-operator --bin modelship-operator
         IMAGE_ARGS=(--no-build) ;;
  release) IMAGE_ARGS=() ;;
  *) echo "run-e2e: E2E_PROFILE must be debug or release, not '$PROFILE'" >&2; exit 2 ;;
esac

started=0
if "$CLUSTER_SH" status >/dev/null 2>&1; then
  step "using the cluster already running in $MODELSHIP_CLUSTER_DIR (left running)"
else
  step "starting a full-mode cluster in $MODELSHIP_CLUSTER_DIR"
  MODE=full "$CLUSTER_SH" up
  started=1
fi
# shellcheck disable=SC2317 # called by the EXIT trap
stop_cluster() {
  if [ "$started" = 1 ]; then step "stopping the cluster"; "$CLUSTER_SH" down; fi
}
trap stop_cluster EXIT

step "the cluster's gateway (Traefik; built on first use)"
"$CLUSTER_SH" gateway

step "images from the $PROFILE builds"
SERVER_BIN="$CARGO_TARGET_DIR/$PROFILE/modelship-server" \
OPERATOR_BIN="$CARGO_TARGET_DIR/$PROFILE/modelship-operator" \
  scripts/build-images.sh "${IMAGE_ARGS[@]}"

status=0
step "tests/e2e/e2e.sh"
REQUIRE_NO_SKIP=1 tests/e2e/e2e.sh || status=1

step "operator: pod failures on a full cluster"
MODELSHIP_TEST_KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig" MODELSHIP_TEST_FULL_CLUSTER=1 \
MODELSHIP_TEST_SERVER_IMAGE=modelship/server:dev \
  cargo test --locked -p modelship-operator --test apiserver full_cluster -- --nocapture || status=1

step "done ($([ "$status" = 0 ] && echo passed || echo FAILED))"
exit "$status"
