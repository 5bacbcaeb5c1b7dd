#!/usr/bin/env bash
# make test-monitoring: the rules' promtool tests, then feedback, accuracy and
# drift on a full cluster with two replicas, watched by the cluster's
# Prometheus (tests/monitoring/monitoring.sh lists the tests).
#
#   tests/monitoring/run.sh
#
# 1. Builds the debug binaries (make test has them already).
# 2. Starts a full-mode cluster in MODELSHIP_CLUSTER_DIR (default .cluster)
#    unless one is up (then it is used and left running).
# 3. Packs the debug builds into modelship/server:dev and
#    modelship/operator:dev and loads them (scripts/build-images.sh).
# 4. tests/monitoring/monitoring.sh (Prometheus is built on first use, about
#    4 minutes cold, then cached by its pin).
# 5. Stops the cluster if this script started it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
START=$SECONDS

step() { printf '\n==> [monitoring %3ds] %s\n' "$((SECONDS - START))" "$*"; }

step "debug builds"
cargo build --locked -p modelship-server --bin modelship-server -p modelship-operator --bin modelship-operator

step "Prometheus and promtool (built once per pin)"
"$CLUSTER_SH" prometheus-dir

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

step "images from the debug builds"
SERVER_BIN="$CARGO_TARGET_DIR/debug/modelship-server" \
OPERATOR_BIN="$CARGO_TARGET_DIR/debug/modelship-operator" \
  scripts/build-images.sh --no-build

step "tests/monitoring/monitoring.sh"
status=0
tests/monitoring/monitoring.sh || status=1
step "done ($([ "$status" = 0 ] && echo passed || echo FAILED))"
exit "$status"
