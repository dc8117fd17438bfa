#!/usr/bin/env bash
# Build the HTML reference of the plugin API from its docstrings with pdoc (in the `test` extra, so
# scripts/setup.sh installs it) into docs/reference/ (generated, not committed); open docs/reference/index.html.
# tests/core/test_docs_reference.py builds the same modules (it reads the `modules=` line below) and checks that
# every public name reachable from toolkit.api has a docstring.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
# toolkit.api: the slots, context types, errors and helpers; toolkit.data.views and toolkit.ops: the public
# helpers plugins may also import. The `!` pattern leaves out toolkit.ops' private submodules.
modules=(toolkit.api toolkit.data.views toolkit.ops '!toolkit.ops\._.*')
if ! "$PY" -c "import pdoc" 2>/dev/null; then
  echo "pdoc is not installed in $PY: run scripts/setup.sh (or: $PY -m pip install 'pdoc>=14')" >&2
  exit 1
fi
rm -rf docs/reference
"$PY" -m pdoc --docformat markdown --output-directory docs/reference "${modules[@]}"
echo "wrote docs/reference/ (open docs/reference/index.html)"
