#!/usr/bin/env bash
# GPU set-up: the normal environment (scripts/setup.sh), then faiss with GPU indexes instead of faiss-cpu.
# faiss-cpu and faiss-gpu-* install the same `faiss` package, so both together leave whichever files were
# written last (often the CPU build's). Hence: install the `gpu` extra (faiss-gpu and its CUDA libraries),
# remove faiss-cpu (which also removes the files the two share), then reinstall the GPU build's files.
# Re-run after scripts/setup.sh reinstalls (it brings faiss-cpu back when pyproject.toml changes).
# FAISS_GPU_PACKAGE picks another build, e.g. FAISS_GPU_PACKAGE=faiss-gpu-cu13-cuvs for a CUDA 13 stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PIP=(.venv/bin/python -m pip)
PKG="${FAISS_GPU_PACKAGE:-faiss-gpu-cu12>=1.8}"
if [ -n "${FAISS_GPU_PACKAGE:-}" ]; then
  "${PIP[@]}" install -q "$PKG"
else
  "${PIP[@]}" install -q -e ".[test,gpu]"
fi
"${PIP[@]}" uninstall -q -y faiss-cpu
"${PIP[@]}" install -q --force-reinstall --no-deps "$PKG"
.venv/bin/python -c "import faiss; n = faiss.get_num_gpus(); print(f'faiss {faiss.__version__} sees {n} GPU(s)'); raise SystemExit(0 if n else 1)"
