#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the toolkit, its first-party plugin distributions (plugins/<family>/,
# each installed like a third party's package) and the test tools.
# Re-running is cheap: it reinstalls only when a pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
families=(plugins/*/pyproject.toml)
stamp=".venv/.installed-$(cat pyproject.toml "${families[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  editable=(-e ".[test]")
  for f in "${families[@]}"; do editable+=(-e "$(dirname "$f")"); done
  .venv/bin/python -m pip install -q "${editable[@]}"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
