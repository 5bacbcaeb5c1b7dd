#!/usr/bin/env bash
# The BatchPrediction tests, on the full cluster tests/batch/run.sh prepared
# (S3 server, image, CRDs, operator, data); run.sh exports what they need.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${NS:?run through tests/batch/run.sh}" "${BUCKET:?}" "${ROWS:?}" "${WORK:?}" "${PY:?}" "${DATA:?}"
# shellcheck source=../../hack/lib/harness.sh
source "$ROOT/hack/lib/harness.sh"

data() { "$PY" "$DATA" "$@"; }
k() { kubectl -n "$NS" "$@"; }
field() { k get bpred "$1" -o jsonpath="$2"; }
failed_reason() { field "$1" '{.status.conditions[?(@.type=="Failed")].reason}'; }
failed_message() { field "$1" '{.status.conditions[?(@.type=="Failed")].message}'; }
phase_is() { [ "$(field "$1" '{.status.phase}')" = "$2" ]; }
# The pods of a run's shard Job, whatever their state.
shard_pods() { k get pods -l "app.kubernetes.io/instance=$1,batch.kubernetes.io/job-name=$1" -o name; }

# bpred NAME INPUT-URI OUTPUT-URI [EXTRA-SPEC-YAML]: create a BatchPrediction of the builtin
# iris model with the S3 Secret, 128 MiB per pod.
bpred() {
  k apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: BatchPrediction
metadata: {name: $1}
spec:
  model: {uri: builtin://iris}
  input: {uri: "$2", credentialsSecretRef: {name: s3}}
  output: {uri: "$3"}
  keepColumns: [id, customer]
  resources: {limits: {memory: 128Mi}, requests: {memory: 64Mi, cpu: 100m}}
  server: {imagePullPolicy: Never}
${4:-}
EOF
}

# expected NAME: the path of run.sh's local predict of NAME's whole input, once it is done.
expected() {
  local deadline=$((SECONDS + 600))
  until [ -e "$WORK/$1.expected.done" ]; do
    [ ! -e "$WORK/$1.expected.failed" ] || fail "local predict of $1 failed: $(tail -5 "$WORK/$1.expected.log")"
    [ "$SECONDS" -lt "$deadline" ] || fail "local predict of $1 not done in 600 s: $(tail -5 "$WORK/$1.expected.log" 2>/dev/null)"
    sleep 2
  done
  echo "$WORK/$1.expected.jsonl"
}

# wait_final NAME SECONDS: until Succeeded or Failed; prints the status on the way out.
wait_final() {
  local deadline=$((SECONDS + $2)) phase=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    phase="$(field "$1" '{.status.phase}')"
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 2
  done
  k get bpred "$1" -o wide
  field "$1" '{.status}'; echo
  case "$phase" in Succeeded|Failed) ;; *) fail "$1 not finished within $2 s (phase '$phase')" ;; esac
}

test_csv_job_scores_every_row_once() {
  local start=$SECONDS
  bpred csv "s3://$BUCKET/csv/" "s3://$BUCKET/out-csv/" "  parallelism: 2"
  wait_final csv 240
  phase_is csv Succeeded || fail "csv: $(failed_reason csv): $(failed_message csv)"
  echo "MEASURED csv job of $ROWS rows, 2 pods, 128 MiB each: $((SECONDS - start)) s"
  [ "$(field csv '{.status.rows.scored}')" = "$ROWS" ] || fail "status.rows.scored is not $ROWS"
  [ "$(field csv '{.status.shards.done}')" = "8/8" ] || fail "shards: $(field csv '{.status.shards}')"
  [ "$(field csv '{.status.outputManifest}')" = "s3://$BUCKET/out-csv/_manifest.json" ] || fail "no manifest in the status"
  local want; want="$(expected csv)" || fail "$want"
  data check "$BUCKET" out-csv/ "$ROWS" "$want"
  k get events --field-selector involvedObject.name=csv -o custom-columns=REASON:.reason,NOTE:.note --no-headers | tee "$WORK/csv.events"
  grep -q '^Started' "$WORK/csv.events" || fail "no Started event"
  grep -q '^Succeeded' "$WORK/csv.events" || fail "no Succeeded event"
  # Printer columns: phase, shards done/total, rows.
  k get bpred csv | grep -E "csv +Succeeded +8/8 +$ROWS " || fail "printer columns"
}

test_parquet_job_scores_every_row_once() {
  local start=$SECONDS
  bpred parquet "s3://$BUCKET/parquet/day.parquet" "s3://$BUCKET/out-parquet/" "  parallelism: 2
  shards: 4"
  wait_final parquet 240
  phase_is parquet Succeeded || fail "parquet: $(failed_reason parquet): $(failed_message parquet)"
  echo "MEASURED parquet job of $ROWS rows (row groups of 100000), 2 pods: $((SECONDS - start)) s"
  local want; want="$(expected parquet)" || fail "$want"
  data check "$BUCKET" out-parquet/ "$ROWS" "$want"
}

test_a_pod_killed_mid_shard_is_retried_and_rows_stay_unique() {
  data csv "$WORK/kill" 600000 1 >/dev/null
  data put "$BUCKET" kill/ "$WORK/kill/day-0.csv"
  "$SERVER_BIN" predict --model builtin://iris --input "$WORK/kill/day-0.csv" --input-format csv \
    --output "$WORK/kill.expected.jsonl" --keep-columns id,customer &
  local local_predict=$!
  bpred kill "s3://$BUCKET/kill/" "s3://$BUCKET/out-kill/" "  parallelism: 2
  shards: 2"
  local pod=""
  for _ in $(seq 1 60); do
    pod="$(k get pods -l app.kubernetes.io/instance=kill,batch.kubernetes.io/job-completion-index=1 \
      --field-selector=status.phase=Running -o name | head -1)"
    [ -n "$pod" ] && break
    sleep 1
  done
  [ -n "$pod" ] || fail "shard 1 never ran"
  sleep 2
  # Still scoring: its container has not terminated (a shard that already finished would
  # not be retried, and the test would prove nothing).
  [ "$(k get "$pod" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')" != "" ] \
    || fail "shard 1 finished before the kill: make the kill test's data larger"
  echo "killing $pod mid-shard"
  k delete "$pod" --wait=false
  wait_final kill 180
  phase_is kill Succeeded || fail "kill: $(failed_reason kill): $(failed_message kill)"
  # The killed pod counts as a failure and is gone (deleted); another pod ran shard 1.
  [ "$(field kill '{.status.retries}')" -ge 1 ] || fail "no retry in the status: $(field kill '{.status}')"
  local again
  again="$(k get pods -l app.kubernetes.io/instance=kill,batch.kubernetes.io/job-completion-index=1 -o name)"
  echo "shard 1 now: $again"
  if [ -z "$again" ] || [[ "$again" == *"$pod"* ]]; then fail "shard 1 was not run again by another pod"; fi
  wait "$local_predict" || fail "local predict of the kill test's input failed"
  data check "$BUCKET" out-kill/ 600000 "$WORK/kill.expected.jsonl"
}

test_missing_input_fails_at_once_with_input_not_found() {
  local start=$SECONDS
  bpred missing "s3://$BUCKET/no-such-prefix/" "s3://$BUCKET/out-missing/" "  parallelism: 2
  shards: 2
  maxRetriesPerShard: 3"
  wait_final missing 60
  [ "$(failed_reason missing)" = InputNotFound ] || fail "reason: $(failed_reason missing): $(failed_message missing)"
  echo "MEASURED InputNotFound after $((SECONDS - start)) s"
  # The Events tell the story: started, the shard's failure with its cause, the run's end.
  k get events --field-selector involvedObject.name=missing -o custom-columns=REASON:.reason,MESSAGE:.message \
    --no-headers | tee "$WORK/missing.events"
  grep -q '^Started' "$WORK/missing.events" || fail "no Started event"
  grep -Eq '^ShardFailed +shard [0-9].*InputNotFound' "$WORK/missing.events" || fail "no ShardFailed event naming its cause"
  grep -q '^InputNotFound' "$WORK/missing.events" || fail "no event for the run's end"
  # No retry burned: no shard ran twice.
  local pods; pods="$(shard_pods missing | wc -l)"
  [ "$pods" -le 2 ] || fail "$pods pods for 2 shards: a shard was retried"
}

test_a_corrupt_row_fails_the_run_naming_file_and_line() {
  printf 'id,customer,sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n1,c1,5.1,3.5,1.4,0.2\n2,c2,not-a-number,3.0,1.4,0.2\n3,c3,6.2,2.9,4.3,1.3\n' >"$WORK/bad.csv"
  data put "$BUCKET" bad/ "$WORK/bad.csv"
  bpred badfail "s3://$BUCKET/bad/" "s3://$BUCKET/out-badfail/" "  badRows: fail
  shards: 1"
  wait_final badfail 60
  [ "$(failed_reason badfail)" = BadRows ] || fail "reason: $(failed_reason badfail): $(failed_message badfail)"
  local message; message="$(failed_message badfail)"
  echo "message: $message"
  [[ "$message" == *bad.csv* && "$message" == *3* ]] || fail "the message names neither bad.csv nor line 3"
}

test_a_corrupt_row_is_skipped_counted_and_listed() {
  bpred badskip "s3://$BUCKET/bad/" "s3://$BUCKET/out-badskip/" "  badRows: skip
  shards: 1"
  wait_final badskip 60
  phase_is badskip Succeeded || fail "badskip: $(failed_reason badskip): $(failed_message badskip)"
  [ "$(field badskip '{.status.rows.scored}')/$(field badskip '{.status.rows.skipped}')" = 2/1 ] \
    || fail "rows: $(field badskip '{.status.rows}')"
  local listed; listed="$(data skipped "$BUCKET" out-badskip/)"
  echo "skipped: $listed"
  [[ "$listed" == "1 bad.csv:3 | bad.csv:3" ]] || fail "manifest and report should list bad.csv:3 once each"
}

test_an_output_with_another_runs_parts_is_refused() {
  data put-text "$BUCKET" out-taken/part-00000.jsonl '{"id": 1}'
  bpred taken "s3://$BUCKET/bad/" "s3://$BUCKET/out-taken/" "  shards: 1"
  wait_final taken 60
  [ "$(failed_reason taken)" = OutputNotEmpty ] || fail "reason: $(failed_reason taken): $(failed_message taken)"
}

test_deleting_a_running_batch_prediction_removes_its_pods() {
  bpred doomed "s3://$BUCKET/csv/" "s3://$BUCKET/out-doomed/" "  parallelism: 2"
  eventually 60 sh -c "kubectl -n $NS get pods -l app.kubernetes.io/instance=doomed --field-selector=status.phase=Running -o name | grep -q pod/"
  k delete bpred doomed --wait=false
  eventually 60 sh -c "! kubectl -n $NS get job doomed >/dev/null 2>&1"
  eventually 60 sh -c "[ -z \"\$(kubectl -n $NS get pods -l app.kubernetes.io/instance=doomed -o name)\" ]"
}

test_cel_refuses_spec_edits_and_parallelism_below_one() {
  local out
  out="$(k patch bpred badskip --type merge -p '{"spec":{"parallelism":3}}' 2>&1)" && fail "a spec edit was accepted"
  echo "$out"
  [[ "$out" == *"spec is immutable"* ]] || fail "the refusal does not say the spec is immutable"
  out="$(bpred zero "s3://$BUCKET/csv/" "s3://$BUCKET/out-zero/" "  parallelism: 0" 2>&1)" && fail "parallelism 0 was accepted"
  echo "$out"
  [[ "$out" == *"spec.parallelism"* ]] || fail "the refusal does not name spec.parallelism"
}

test_a_model_that_cannot_be_fetched_fails_with_model_fetch_failed() {
  # No such object in the bucket: the shard's init container (modelship-server fetch) exits 12,
  # which the Job's podFailurePolicy turns into a failure of the whole run, no retry burned.
  k apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: BatchPrediction
metadata: {name: nomodel}
spec:
  model: {uri: "s3://$BUCKET/models/no-such-model.onnx", credentialsSecretRef: {name: s3}}
  input: {uri: "s3://$BUCKET/bad/", credentialsSecretRef: {name: s3}}
  output: {uri: "s3://$BUCKET/out-nomodel/"}
  shards: 1
  maxRetriesPerShard: 3
  server: {imagePullPolicy: Never}
EOF
  wait_final nomodel 90
  [ "$(failed_reason nomodel)" = ModelFetchFailed ] || fail "reason: $(failed_reason nomodel): $(failed_message nomodel)"
  local message; message="$(failed_message nomodel)"
  echo "message: $message"
  [[ "$message" == *no-such-model* || "$message" == *404* || "$message" == *"not found"* ]] \
    || fail "the message does not say what was not found"
  local pods; pods="$(shard_pods nomodel | wc -l)"
  [ "$pods" -le 1 ] || fail "$pods pods for 1 shard: the fetch failure was retried"
}

test_a_model_deployment_ref_waits_for_it_then_uses_its_model() {
  k apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: BatchPrediction
metadata: {name: byref}
spec:
  modelDeploymentRef: {name: iris-for-batch}
  input: {uri: "s3://$BUCKET/bad/", credentialsSecretRef: {name: s3}}
  output: {uri: "s3://$BUCKET/out-byref/"}
  shards: 1
  badRows: skip
  server: {imagePullPolicy: Never}
EOF
  # The ModelDeployment does not exist yet: Pending, and the status says what it waits for.
  local reason=""
  for _ in $(seq 1 30); do
    reason="$(field byref '{.status.conditions[?(@.type=="Complete")].reason}')"
    [ "$reason" = ModelDeploymentNotFound ] && break
    sleep 1
  done
  [ "$reason" = ModelDeploymentNotFound ] || fail "Complete reason '$reason', not ModelDeploymentNotFound"
  phase_is byref Pending || fail "phase $(field byref '{.status.phase}')"
  echo "waiting: $(field byref '{.status.conditions[?(@.type=="Complete")].message}')"
  [ -z "$(k get job byref --ignore-not-found -o name)" ] || fail "a Job started without its model"
  k apply -f - <<EOF
apiVersion: modelship.io/v1alpha1
kind: ModelDeployment
metadata: {name: iris-for-batch}
spec:
  model: {uri: builtin://iris}
  replicas: 0
EOF
  wait_final byref 90
  phase_is byref Succeeded || fail "byref: $(failed_reason byref): $(failed_message byref)"
  [ "$(field byref '{.status.model.uri}')" = builtin://iris ] || fail "status.model: $(field byref '{.status.model}')"
  [ "$(field byref '{.status.rows.scored}')" = 2 ] || fail "rows: $(field byref '{.status.rows}')"
  k delete mdep iris-for-batch --wait=false >/dev/null
}

test_pvc_input_through_a_host_path_volume() {
  local dir="$WORK/pv"
  mkdir -p "$dir/day"
  cp "$WORK/bad.csv" "$dir/day/rows.csv"
  chmod -R a+rX "$WORK"
  kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: batch-tests-data}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: batch-hostpath
  hostPath: {path: "$dir", type: Directory}
  claimRef: {namespace: $NS, name: datasets}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: datasets, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: batch-hostpath
  resources: {requests: {storage: 1Gi}}
  volumeName: batch-tests-data
EOF
  eventually 30 sh -c "[ \"\$(kubectl -n $NS get pvc datasets -o jsonpath='{.status.phase}')\" = Bound ]"
  bpred pvc pvc://datasets/day/ "s3://$BUCKET/out-pvc/" "  shards: 1"
  wait_final pvc 60
  phase_is pvc Succeeded || fail "pvc: $(failed_reason pvc): $(failed_message pvc)"
  [ "$(data ids "$BUCKET" out-pvc/)" = "1 2 2" ] || fail "parts, rows, ids: $(data ids "$BUCKET" out-pvc/)"
  kubectl delete pv batch-tests-data --wait=false >/dev/null
}

run_test missing_input_fails_at_once_with_input_not_found test_missing_input_fails_at_once_with_input_not_found
run_test a_corrupt_row_fails_the_run_naming_file_and_line test_a_corrupt_row_fails_the_run_naming_file_and_line
run_test a_corrupt_row_is_skipped_counted_and_listed test_a_corrupt_row_is_skipped_counted_and_listed
run_test an_output_with_another_runs_parts_is_refused test_an_output_with_another_runs_parts_is_refused
run_test cel_refuses_spec_edits_and_parallelism_below_one test_cel_refuses_spec_edits_and_parallelism_below_one
run_test pvc_input_through_a_host_path_volume test_pvc_input_through_a_host_path_volume
run_test a_model_that_cannot_be_fetched_fails_with_model_fetch_failed test_a_model_that_cannot_be_fetched_fails_with_model_fetch_failed
run_test a_model_deployment_ref_waits_for_it_then_uses_its_model test_a_model_deployment_ref_waits_for_it_then_uses_its_model
run_test deleting_a_running_batch_prediction_removes_its_pods test_deleting_a_running_batch_prediction_removes_its_pods
run_test a_pod_killed_mid_shard_is_retried_and_rows_stay_unique test_a_pod_killed_mid_shard_is_retried_and_rows_stay_unique
run_test csv_job_scores_every_row_once test_csv_job_scores_every_row_once
run_test parquet_job_scores_every_row_once test_parquet_job_scores_every_row_once
harness_summary
