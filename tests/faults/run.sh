#!/usr/bin/env bash
# make test-faults: the operator under control-plane faults and pod
# disruptions (tests/faults/faults.sh) on a real full-mode cluster.
#
#   tests/faults/run.sh            FAULTS_LONG=1 for the 500-cycle loop
#
# 1. Builds the debug binaries (as make test-e2e does) unless SERVER_BIN and
#    OPERATOR_BIN name binaries to pack.
# 2. Starts a full-mode cluster in MODELSHIP_CLUSTER_DIR (default .cluster)
#    unless one is up (then it is used and left running, healthy: every
#    fault the suite makes it mends). An API server started before the audit
#    log existed writes none: it is restarted first (cluster.sh fault restart
#    kube-apiserver), since "no two writers" is read from that log.
# 3. Packs and loads the images (scripts/build-images.sh --no-build).
# 4. tests/faults/faults.sh.
# 5. Stops the cluster if this script started it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
START=$SECONDS
step() { printf '\n==> [faults %3ds] %s\n' "$((SECONDS - START))" "$*"; }

if [ -z "${SERVER_BIN:-}" ] || [ -z "${OPERATOR_BIN:-}" ]; then
  cargo build --locked -p modelship-server --bin modelship-server -p modelship-operator --bin modelship-operator
fi
SERVER_BIN="${SERVER_BIN:-$CARGO_TARGET_DIR/debug/modelship-server}"
OPERATOR_BIN="${OPERATOR_BIN:-$CARGO_TARGET_DIR/debug/modelship-operator}"

started=0
if "$CLUSTER_SH" status >/dev/null 2>&1 && [ "$(cat "$MODELSHIP_CLUSTER_DIR/run/mode")" = full ]; then
  if [ ! -f "$MODELSHIP_CLUSTER_DIR/logs/audit.log" ]; then
    step "the running cluster's API server has no audit log: restarting it with one"
    "$CLUSTER_SH" fault restart kube-apiserver
  else
    step "using the cluster already running in $MODELSHIP_CLUSTER_DIR (left running)"
  fi
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

step "images from $SERVER_BIN and $OPERATOR_BIN"
SERVER_BIN="$SERVER_BIN" OPERATOR_BIN="$OPERATOR_BIN" scripts/build-images.sh --no-build

status=0
step "tests/faults/faults.sh"
tests/faults/faults.sh || status=1
step "done ($([ "$status" = 0 ] && echo passed || echo FAILED))"
exit "$status"
