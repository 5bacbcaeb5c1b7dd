#!/usr/bin/env bash
# Installs the benchmark's load generator and peer servers, pinned. Idempotent.
#   oha            -> ~/.cache/modelship/tools/bin/oha   (cargo install --locked)
#   MLServer       -> .venv-mlserver                    (mlserver + mlserver-sklearn from PyPI)
#   KServe server  -> .venv                             (kserve is already a test dependency)
#   matplotlib     -> .venv                             (the sweep's plot)
set -euo pipefail
cd "$(dirname "$0")/.."
OHA_VERSION=1.16.0
TOOLS=${MODELSHIP_TOOLS:-$HOME/.cache/modelship/tools}
if ! "$TOOLS/bin/oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  echo "installing oha $OHA_VERSION into $TOOLS"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install --locked --quiet --root "$TOOLS" "oha@$OHA_VERSION"
fi
for pkg in util-linux; do # taskset
  dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$pkg" >/dev/null; }
done
scripts/setup-python.sh
plot_req=bench/requirements-plot.txt
if [[ "$(cat .venv/.plot-requirements.sha256 2>/dev/null)" != "$(sha256sum "$plot_req" | cut -d' ' -f1)" ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$plot_req"
  sha256sum "$plot_req" | cut -d' ' -f1 > .venv/.plot-requirements.sha256
fi
venv=.venv-mlserver
req=bench/requirements-mlserver.txt
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$venv/.requirements.sha256"
fi
