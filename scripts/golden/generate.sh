#!/usr/bin/env bash
# generate.sh regenerates every golden fixture from the reference tools
# (numpy, scipy, xgboost from Debian). Run it with `make golden`; commit what
# changes. Each stage adds one line below for its script, nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# Debian's python3 has numpy/scipy/xgboost; a pyenv python3 earlier on PATH does not.
PY=${PYTHON:-/usr/bin/python3}

"$PY" scripts/golden/npy_fixtures.py
"$PY" scripts/golden/features.py
"$PY" scripts/golden/detector.py
"$PY" scripts/golden/onnx_fixtures.py
"$PY" scripts/golden/brf.py
"$PY" scripts/golden/fit_parity.py fit/testdata
"$PY" scripts/golden/intervals.py fit/testdata
