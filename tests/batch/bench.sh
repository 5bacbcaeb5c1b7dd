#!/usr/bin/env bash
# The cluster batch benchmark (issue 13), on the full cluster tests/batch/run.sh prepared:
# BATCH_BENCH=1 tests/batch/run.sh (make bench-batch-cluster). The same CSV input (ROWS rows in
# 4 files, in the cluster's S3 server) scored by one BatchPrediction with parallelism 1 and by
# one with parallelism 2 (4 shards each), REPEATS times interleaved; prints a Markdown table of
# the median wall time (create to Succeeded, read from the status), rows/s and the pods' peak
# memory limit. Not part of make test.
set -euo pipefail

: "${NS:?run through tests/batch/run.sh}" "${BUCKET:?}" "${ROWS:?}" "${WORK:?}" "${PY:?}" "${DATA:?}"
REPEATS="${BATCH_BENCH_REPEATS:-3}"
k() { kubectl -n "$NS" "$@"; }
field() { k get bpred "$1" -o jsonpath="$2"; }

# run NAME PARALLELISM: one job over the whole input; prints its wall seconds.
run() {
  k apply -f - >/dev/null <<YAML
apiVersion: modelship.io/v1alpha1
kind: BatchPrediction
metadata: {name: $1}
spec:
  model: {uri: builtin://iris}
  input: {uri: "s3://$BUCKET/csv/", credentialsSecretRef: {name: s3}}
  output: {uri: "s3://$BUCKET/bench-$1/"}
  keepColumns: [id]
  parallelism: $2
  shards: 4
  resources: {limits: {memory: 128Mi}, requests: {memory: 64Mi, cpu: 100m}}
  server: {imagePullPolicy: Never}
YAML
  local deadline=$((SECONDS + 900)) phase=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    phase="$(field "$1" '{.status.phase}')"
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 1
  done
  [ "$phase" = Succeeded ] || { k get bpred "$1" -o yaml >&2; echo "bench: $1 ended $phase" >&2; exit 1; }
  [ "$(field "$1" '{.status.rows.scored}')" = "$ROWS" ] || { echo "bench: $1 scored $(field "$1" '{.status.rows.scored}')" >&2; exit 1; }
  "$PY" - "$(field "$1" '{.status.startTime}')" "$(field "$1" '{.status.completionTime}')" \
    "$(k get bpred "$1" -o jsonpath='{.metadata.creationTimestamp}')" <<'PY'
import sys
from datetime import datetime
start, end, created = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in sys.argv[1:])
print(f"{(end - created).total_seconds():.0f} {(end - start).total_seconds():.0f}")
PY
  k delete bpred "$1" --wait=true >/dev/null
}

declare -A wall job
for r in $(seq 1 "$REPEATS"); do
  for p in 1 2; do
    read -r w j < <(run "bench-p$p-r$r" "$p")
    wall[$p]+="$w "; job[$p]+="$j "
    echo "repeat $r, parallelism $p: ${w} s create to done (${j} s Job start to done)" >&2
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| pods at once (4 shards) | create to Succeeded, median s | Job start to done, median s | rows/s (create to done) | runs |"
echo "| ---: | ---: | ---: | ---: | --- |"
for p in 1 2; do
  m="$(median "${wall[$p]}")"; j="$(median "${job[$p]}")"
  echo "| $p | $m | $j | $((ROWS / (m > 0 ? m : 1))) | ${wall[$p]}|"
done
