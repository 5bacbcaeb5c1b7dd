# shellcheck shell=bash
# A tiny test harness: run_test NAME FUNCTION runs FUNCTION in a subshell
# with its output in $TEST_LOGS/NAME.log, prints PASS/FAIL/SKIP, and counts.
PASSED=0 FAILED=0 SKIPPED=0
TEST_LOGS="${TEST_LOGS:-$(mktemp -d /tmp/modelship-cluster-tests.XXXXXX)}"

run_test() {
  local name="$1" fn="$2" start=$SECONDS rc=0
  ( set -euo pipefail; "$fn" ) > "$TEST_LOGS/$name.log" 2>&1 || rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1)); echo "PASS  $name (${took}s)"
  elif [ "$rc" -eq 77 ]; then
    SKIPPED=$((SKIPPED + 1)); echo "SKIP  $name: $(tail -1 "$TEST_LOGS/$name.log")"
  else
    FAILED=$((FAILED + 1)); echo "FAIL  $name (${took}s), last lines of $TEST_LOGS/$name.log:"
    tail -25 "$TEST_LOGS/$name.log" | sed 's/^/      /'
  fi
  return 0
}

skip_test() { # skip_test NAME REASON: a test that cannot run here, kept visible
  SKIPPED=$((SKIPPED + 1)); echo "SKIP  $1: $2"
}

fail() { echo "FAILED: $*" >&2; exit 1; }

# eventually SECONDS COMMAND...: retries COMMAND every 2s until it succeeds.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "not true within the time limit: $*"
    sleep 2
  done
}

summary() {
  # Logs are kept only when something failed.
  if [ "$FAILED" -eq 0 ]; then rm -rf "$TEST_LOGS"; else echo "logs: $TEST_LOGS"; fi
  if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  else
    echo "$PASSED passed, $FAILED failed"
  fi
  [ "$FAILED" -eq 0 ]
}
