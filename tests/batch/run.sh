#!/usr/bin/env bash
# make test-batch: BatchPredictions on the full local cluster, data in its S3 server.
#
#   tests/batch/run.sh
#
# Starts a full cluster in MODELSHIP_CLUSTER_DIR unless one runs (then it is
# used and left running), the S3 server (cluster.sh s3: versitygw, built once
# into its cache), loads the image of the debug modelship-server, installs the
# CRDs and runs the operator (debug build) on the host with the cluster's
# kubeconfig. The tests put data into S3 from the host (tests/batch/data.py,
# boto3), create BatchPredictions and read the parts, reports and manifest
# back. Stops the cluster if it started it. BATCH_BENCH=1 runs tests/batch/bench.sh (the
# cluster benchmark, 1 pod against 2) instead of the tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/hack/cluster/cluster.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
export MODELSHIP_CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
export KUBECONFIG="$MODELSHIP_CLUSTER_DIR/kubeconfig"
PY="${PY:-$ROOT/.venv/bin/python}"
DATA="$ROOT/tests/batch/data.py"
SERVER_BIN="${SERVER_BIN:-$CARGO_TARGET_DIR/debug/modelship-server}"
OPERATOR_BIN="${OPERATOR_BIN:-$CARGO_TARGET_DIR/debug/modelship-operator}"
NS=batch-tests
BUCKET="batch"
ROWS="${BATCH_TEST_ROWS:-1000000}"
WORK="$(mktemp -d /tmp/modelship-batch.XXXXXX)"
START=$SECONDS
step() { printf '\n==> [batch %3ds] %s\n' "$((SECONDS - START))" "$*"; }

# BATCH_SKIP_BUILD=1: the debug binaries already built (a quick rerun of the suite alone).
[ "${BATCH_SKIP_BUILD:-0}" = 1 ] || \
  cargo build --locked -p modelship-server --bin modelship-server -p modelship-operator --bin modelship-operator

started=0
if "$CLUSTER_SH" status >/dev/null 2>&1; then
  step "using the cluster already running in $MODELSHIP_CLUSTER_DIR (left running)"
else
  step "starting a full-mode cluster in $MODELSHIP_CLUSTER_DIR"
  MODE=full "$CLUSTER_SH" up
  started=1
fi
OPERATOR_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -n "$OPERATOR_PID" ] && kill "$OPERATOR_PID" 2>/dev/null
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  if [ "$started" = 1 ]; then step "stopping the cluster"; "$CLUSTER_SH" down; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$("$CLUSTER_SH" env)"
"$CLUSTER_SH" s3
eval "$("$CLUSTER_SH" s3-env)"

step "the server image from the debug build"
SERVER_BIN="$SERVER_BIN" OPERATOR_BIN="$OPERATOR_BIN" scripts/build-images.sh --no-build

step "CRDs, namespace, S3 credentials, the operator on the host"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/batchpredictions.modelship.io --timeout=60s >/dev/null
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic s3 \
  --from-literal=AWS_ACCESS_KEY_ID="$MODELSHIP_S3_ACCESS_KEY" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$MODELSHIP_S3_SECRET_KEY" \
  --from-literal=AWS_REGION="$MODELSHIP_S3_REGION" \
  --from-literal=AWS_ENDPOINT_URL="$MODELSHIP_S3_POD_ENDPOINT" >/dev/null
RUST_LOG=info "$OPERATOR_BIN" --server-image modelship/server:dev --metrics-addr 127.0.0.1:0 \
  --watch-namespaces "$NS" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!

step "data: $ROWS rows in 4 CSV files and one Parquet file"
"$PY" "$DATA" csv "$WORK/csv" "$ROWS" 4
"$PY" "$DATA" put "$BUCKET" csv/ "$WORK"/csv/day-*.csv
if [ "${BATCH_BENCH:-0}" != 1 ]; then
  "$PY" "$DATA" parquet "$WORK/day.parquet" "$ROWS" 100000
  "$PY" "$DATA" put "$BUCKET" parquet/ "$WORK/day.parquet"
fi
# What the cluster's rows must equal: local predict of every row, in the background while the
# first tests run (a debug build scores about 25,000 rows/s); each marks itself done, and the
# tests that compare wait for the mark (tests/batch/batch.sh expected).
expect() { # expect NAME INPUT FORMAT
  if "$SERVER_BIN" predict --model builtin://iris --input "$2" --input-format "$3" \
    --output "$WORK/$1.expected.jsonl" --keep-columns id,customer >"$WORK/$1.expected.log" 2>&1; then
    touch "$WORK/$1.expected.done"
  else
    touch "$WORK/$1.expected.failed"
  fi
}
if [ "${BATCH_BENCH:-0}" != 1 ]; then
  expect csv "$WORK/csv/" csv &
  expect parquet "$WORK/day.parquet" parquet &
fi

export NS BUCKET ROWS WORK PY DATA SERVER_BIN
status=0
if [ "${BATCH_BENCH:-0}" = 1 ]; then
  step "tests/batch/bench.sh (the cluster benchmark, not tests)"
  tests/batch/bench.sh || status=1
else
  step "tests/batch/batch.sh"
  tests/batch/batch.sh || status=1
fi
if [ "$status" != 0 ]; then echo "--- operator log (end)"; tail -40 "$WORK/operator.log"; fi
step "done ($([ "$status" = 0 ] && echo passed || echo FAILED))"
exit "$status"
