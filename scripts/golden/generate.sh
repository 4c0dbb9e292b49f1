#!/usr/bin/env bash
# Regenerates every golden fixture from the reference tools (numpy, scipy,
# xgboost 1.7.4, onnx from Debian): `make golden` runs it. Debian's python3
# has those modules; a pyenv python3 on PATH may not, hence /usr/bin/python3.
# The outputs are deterministic (fixed seeds): commit the changed files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# Debian's python3 has numpy/scipy/xgboost; a pyenv python3 earlier on PATH does not.
PY=${PYTHON:-/usr/bin/python3}

"$PY" scripts/golden/npy_fixtures.py
"$PY" scripts/golden/features.py
"$PY" scripts/golden/detector.py detector/testdata
"$PY" scripts/golden/onnx_fixtures.py infer/testdata
"$PY" scripts/golden/brf.py
"$PY" scripts/golden/explain.py
"$PY" scripts/golden/fit_parity.py fit/testdata
"$PY" scripts/golden/intervals.py fit/testdata
"$PY" scripts/golden/whatif.py metrics/testdata
"$PY" scripts/golden/segmodel.py
"$PY" scripts/golden/psi.py assurance/drift/testdata
