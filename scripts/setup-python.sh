#!/usr/bin/env bash
# Creates .venv with the pinned Python tools of tests/requirements.txt.
# Idempotent: does nothing when the requirements have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-zoo.sh  # the model zoo's own venv (.venv-zoo)
req=tests/requirements.txt
venv=${MODELSHIP_VENV:-.venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "python tools installed in $venv"
