# shellcheck shell=bash
# The one harness of the project's shell test suites (hack/cluster/test,
# tests/chart, tests/e2e). Source it, define test functions, then:
#
#   run_test NAME FN      run FN in a subshell of its own (set -euo pipefail
#                         holds there: its first failing command fails it),
#                         its output in $TEST_LOGS/NAME.log; prints
#                         PASS NAME (Ns), FAIL NAME (Ns) with the end of the
#                         log, or SKIP NAME: REASON
#   skip_test NAME REASON a test that cannot run here, reported as skipped
#                         without running it
#   harness_summary       prints "N passed, N failed, N skipped" (always this
#                         form; CI reads it) and returns 1 when any failed
#
# Inside a test:
#   fail MSG              the test fails: prints "FAILED: MSG" and exits the
#                         test's subshell, wherever it is called from
#   skip REASON           the test is skipped: a reason is required (skip
#                         without one fails the test); exits the subshell
#   eventually SECONDS CMD...  retry CMD every 2 s until it succeeds, or fail
#
# Outcomes, one meaning each: a test passes when FN returns 0, is skipped
# only when it called skip REASON, and fails otherwise. REQUIRE_NO_SKIP=1
# (make test) counts every skip as a failure, with its reason.
# Lines of a passing test's log that start with MEASURED are shown under its
# PASS. Logs are removed at the summary unless a test failed or KEEP_LOGS=1.

HARNESS_PASSED=0 HARNESS_FAILED=0 HARNESS_SKIPPED=0
TEST_LOGS="${TEST_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/modelship-tests.XXXXXX")}"
mkdir -p "$TEST_LOGS"
HARNESS_TAIL="${HARNESS_TAIL:-40}"
# The test running now (set in its subshell), so that skip can say which.
HARNESS_TEST=""

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

skip() {
  [ -n "${1:-}" ] || fail "skip needs a reason"
  [ -n "$HARNESS_TEST" ] || { echo "skip called outside a test: $*" >&2; exit 1; }
  printf '%s\n' "$*" > "$TEST_LOGS/$HARNESS_TEST.skip"
  echo "SKIP: $*" >&2
  exit 77
}

eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "not true within the time limit: $*"
    sleep 2
  done
}

harness_passed() { HARNESS_PASSED=$((HARNESS_PASSED + 1)); echo "PASS $1"; }
harness_failed() { HARNESS_FAILED=$((HARNESS_FAILED + 1)); echo "FAIL $1"; }
# harness_skipped NAME REASON: a skip, or under REQUIRE_NO_SKIP=1 a failure.
harness_skipped() {
  if [ "${REQUIRE_NO_SKIP:-0}" = 1 ]; then
    harness_failed "$1: skipped, and REQUIRE_NO_SKIP=1: $2"
  else
    HARNESS_SKIPPED=$((HARNESS_SKIPPED + 1)); echo "SKIP $1: $2"
  fi
}

run_test() {
  local name="$1" fn="$2" start=$SECONDS rc=0 log="$TEST_LOGS/$1.log"
  rm -f "$TEST_LOGS/$name.skip"
  # In the background and waited for: bash ignores set -e in a subshell that
  # is the left side of ||, so `( ... ) || rc=$?` would not stop at the
  # first failing command.
  ( HARNESS_TEST="$name"; set -euo pipefail; "$fn" ) > "$log" 2>&1 &
  wait $! || rc=$?
  local took="($((SECONDS - start))s)"
  if [ "$rc" -eq 0 ]; then
    harness_passed "$name $took"
    grep '^MEASURED' "$log" | sed 's/^/    /' || true
  elif [ "$rc" -eq 77 ] && [ -f "$TEST_LOGS/$name.skip" ]; then
    harness_skipped "$name" "$(cat "$TEST_LOGS/$name.skip")"
  else
    harness_failed "$name $took, last lines of $log:"
    tail -n "$HARNESS_TAIL" "$log" | sed 's/^/    /'
  fi
  return 0
}

skip_test() {
  [ -n "${2:-}" ] || { harness_failed "$1: skip_test needs a reason"; return 0; }
  harness_skipped "$1" "$2"
}

harness_summary() {
  # No value of tests/secrets.txt in any test's log (it names the file, not the secret).
  if ! "$(dirname "${BASH_SOURCE[0]}")/../../scripts/check_no_secrets.sh" "$TEST_LOGS"; then
    harness_failed "a test's log shows a secret (above)"
  fi
  if [ "$HARNESS_FAILED" -eq 0 ] && [ "${KEEP_LOGS:-0}" != 1 ]; then
    rm -rf "$TEST_LOGS"
  else
    echo "logs: $TEST_LOGS"
  fi
  echo "$HARNESS_PASSED passed, $HARNESS_FAILED failed, $HARNESS_SKIPPED skipped"
  [ "$HARNESS_FAILED" -eq 0 ]
}
