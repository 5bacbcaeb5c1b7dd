#!/usr/bin/env bash
# Creates .venv-zoo for the model zoo and the converter: the frameworks of tests/zoo/requirements.txt
# (scikit-learn, XGBoost, LightGBM, JAX/Flax and their ONNX converters) and python/modelship-convert
# (editable, so its source is what runs). Its own venv: the frameworks stay out of .venv.
# Idempotent: does nothing when the requirements and the converter's pyproject.toml have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/zoo/requirements.txt
venv=${MODELSHIP_ZOO_VENV:-.venv-zoo}
stamp="$venv/.requirements.sha256"
want=$(cat "$req" python/modelship-convert/pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e ./python/modelship-convert
echo "$want" > "$stamp"
echo "the zoo's python tools installed in $venv"
