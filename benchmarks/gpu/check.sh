#!/usr/bin/env bash
# The GPU check in one short call (at most about 8 minutes on one H100/H200): see benchmarks/gpu/check.py.
#
#   bash benchmarks/gpu/check.sh [OUT_DIR]
#
# Air-gapped machines: the machine needs Python 3.12 with torch, torchvision, timm, numpy, scipy,
# scikit-learn, pillow, rich and typer. Everything else travels as wheels in benchmarks/gpu/wheelhouse
# (built on a connected machine with `bash benchmarks/gpu/wheelhouse.sh`; see benchmarks/gpu/README.md):
# when that folder exists, they are installed into a virtual environment that sees the system's packages,
# without any package index. Without it, the current Python must already have the toolkit installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${1:-${OUT:-benchmarks/gpu/out}}"
PY="${PYTHON:-python3}"
if [ -d benchmarks/gpu/wheelhouse ]; then
  "$PY" -m venv --system-site-packages .gpu-venv
  # third-party wheels first, then the project's own without dependencies: their metadata also names the
  # packages a lean install leaves out (ray, optuna, the full mlflow, matplotlib; benchmarks/gpu/README.md)
  .gpu-venv/bin/python -m pip install -q --no-index --find-links benchmarks/gpu/wheelhouse -r benchmarks/gpu/wheels.txt
  .gpu-venv/bin/python -m pip install -q --no-index --no-deps benchmarks/gpu/wheelhouse/deepclust_*.whl
  PY=.gpu-venv/bin/python
fi
"$PY" benchmarks/gpu/check.py --out "$OUT_DIR" "${@:2}"
