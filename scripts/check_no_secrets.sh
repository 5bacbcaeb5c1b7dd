#!/usr/bin/env bash
# Fails when a log shows a secret: scripts/check_no_secrets.sh PATH... searches the files
# (directories recursively) for each value of tests/secrets.txt (or $MODELSHIP_SECRETS_FILE)
# and names the file and the secret's line number in the list, never the secret or the line
# that shows it, so the report leaks nothing itself. Exit 0: none found; 1: found; 2: usage.
set -euo pipefail
list="${MODELSHIP_SECRETS_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/secrets.txt}"
[ "$#" -gt 0 ] || { echo "usage: $0 PATH..." >&2; exit 2; }
[ -r "$list" ] || { echo "$0: cannot read the list of secrets $list" >&2; exit 2; }
found=0
n=0
while IFS= read -r secret || [ -n "$secret" ]; do
  n=$((n + 1))
  case "$secret" in '' | '#'*) continue ;; esac
  # -F: the secret is a literal; -l: file names only; -r: directories; -a: binary logs too.
  while IFS= read -r file; do
    echo "secret on line $n of $list shows in $file"
    found=1
  done < <(grep -rlaF -- "$secret" "$@" 2>/dev/null || true)
done < "$list"
exit "$found"
