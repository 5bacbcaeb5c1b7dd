#!/usr/bin/env bash
# Tests of hack/lib/harness.sh (make test-harness, seconds): each case runs a
# small suite in a child bash and checks what it printed and its exit status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS="$here/../harness.sh"
# shellcheck source=../harness.sh
source "$HARNESS"

# suite BODY: runs BODY (test functions and run_test calls) under the harness
# in a child bash; prints its output, then "exit=N".
suite() {
  local rc=0 out
  out="$(env -u TEST_LOGS -u REQUIRE_NO_SKIP -u KEEP_LOGS TMPDIR="$SUITE_TMP" \
    bash -c "set -euo pipefail; source '$HARNESS'; $1
harness_summary" 2>&1)" || rc=$?
  printf '%s\nexit=%s\n' "$out" "$rc"
}
# expect OUTPUT LINE...: every LINE is a whole line of OUTPUT.
expect() {
  local out="$1" line; shift
  for line in "$@"; do
    grep -qxF -- "$line" <<<"$out" || { printf '%s\n' "$out"; fail "no line '$line' in the output above"; }
  done
}
expect_pass() { # expect_pass OUTPUT NAME: a PASS line for NAME, with its time
  grep -qxE -- "PASS $2 \([0-9]+s\)" <<<"$1" || { printf '%s\n' "$1"; fail "no PASS line for $2 above"; }
}
refuse() { # refuse OUTPUT TEXT: TEXT appears nowhere in OUTPUT
  if grep -qF -- "$2" <<<"$1"; then printf '%s\n' "$1"; fail "'$2' should not be in the output above"; fi
}

t_pass_is_counted_and_exits_zero() {
  local out; out="$(suite 't() { true; }; run_test ok t')"
  expect_pass "$out" ok
  expect "$out" "1 passed, 0 failed, 0 skipped" "exit=0"
}

t_fail_ends_the_test_wherever_it_is_called() {
  local out; out="$(suite 'check() { fail "broken"; }
t() { if check; then echo "after if"; fi; echo "after fail"; }
run_test f t')"
  expect "$out" "0 passed, 1 failed, 0 skipped" "exit=1" "    FAILED: broken"
  refuse "$out" "after"
}

t_first_failing_command_fails_the_test() {
  local out; out="$(suite 't() { false; echo "still running"; }; run_test f t')"
  expect "$out" "0 passed, 1 failed, 0 skipped" "exit=1"
  refuse "$out" "still running"
}

t_skip_says_why_and_is_not_a_failure() {
  local out; out="$(suite 't() { skip "no node here"; echo "after skip"; }; run_test s t')"
  expect "$out" "SKIP s: no node here" "0 passed, 0 failed, 1 skipped" "exit=0"
  refuse "$out" "after skip"
}

t_skip_without_reason_fails() {
  local out; out="$(suite 't() { skip; }; run_test s t; skip_test s2 ""')"
  expect "$out" "0 passed, 2 failed, 0 skipped" "exit=1" "FAIL s2: skip_test needs a reason"
}

t_exit_77_without_skip_is_a_failure() {
  local out; out="$(suite 't() { exit 77; }; run_test e t')"
  expect "$out" "0 passed, 1 failed, 0 skipped" "exit=1"
}

t_require_no_skip_turns_skips_into_failures() {
  local out; out="$(suite 'export REQUIRE_NO_SKIP=1; t() { skip "no root"; }; run_test s t; skip_test s2 "needs root"')"
  expect "$out" "FAIL s: skipped, and REQUIRE_NO_SKIP=1: no root" \
    "FAIL s2: skipped, and REQUIRE_NO_SKIP=1: needs root" "0 passed, 2 failed, 0 skipped" "exit=1"
}

t_measured_lines_show_under_pass() {
  local out; out="$(suite 't() { echo noise; echo "MEASURED start: 3 s"; }; run_test m t')"
  expect_pass "$out" m
  expect "$out" "    MEASURED start: 3 s"
  refuse "$out" "noise"
}

t_logs_kept_only_when_a_test_failed() {
  local out
  SUITE_TMP="$(mktemp -d)"
  out="$(suite 't() { true; }; run_test ok t')"
  refuse "$out" "logs:"
  [ -z "$(ls -A "$SUITE_TMP")" ] || fail "a passing suite left $(ls "$SUITE_TMP")"
  out="$(suite 't() { echo "the cause"; false; }; run_test f t')"
  expect "$out" "    the cause"
  local dir; dir="$(sed -n 's/^logs: //p' <<<"$out")"
  [ -f "$dir/f.log" ] || fail "the failing test's log is not kept: '$dir'"
  rm -rf "$SUITE_TMP"
}

SUITE_TMP="$(mktemp -d)"
trap 'rm -rf "$SUITE_TMP"' EXIT
run_test pass_is_counted_and_exits_zero t_pass_is_counted_and_exits_zero
run_test fail_ends_the_test_wherever_it_is_called t_fail_ends_the_test_wherever_it_is_called
run_test first_failing_command_fails_the_test t_first_failing_command_fails_the_test
run_test skip_says_why_and_is_not_a_failure t_skip_says_why_and_is_not_a_failure
run_test skip_without_reason_fails t_skip_without_reason_fails
run_test exit_77_without_skip_is_a_failure t_exit_77_without_skip_is_a_failure
run_test require_no_skip_turns_skips_into_failures t_require_no_skip_turns_skips_into_failures
run_test measured_lines_show_under_pass t_measured_lines_show_under_pass
run_test logs_kept_only_when_a_test_failed t_logs_kept_only_when_a_test_failed
harness_summary
