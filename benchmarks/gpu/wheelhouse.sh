#!/usr/bin/env bash
# Build benchmarks/gpu/wheelhouse on a connected machine: the third-party wheels of benchmarks/gpu/wheels.txt
# for Python 3.12 on x86_64 Linux, and the project's own wheels (toolkit and first-party plugins), built from
# this checkout's last commit without any network. Fails if the folder exceeds MAX_MIB (64: one transfer to an
# air-gapped GPU machine). Then: carry the folder with the checkout and run `bash benchmarks/gpu/check.sh`.
#
#   bash benchmarks/gpu/wheelhouse.sh [PYTHON]     (PYTHON: any Python with pip; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-.venv/bin/python}"
MAX_MIB="${MAX_MIB:-64}"
DEST=benchmarks/gpu/wheelhouse
rm -rf "$DEST" && mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$DEST" -r benchmarks/gpu/wheels.txt
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
git archive HEAD | tar -x -C "$BUILD"  # the committed tree: an in-tree build would leave build/ folders behind
for project in "$BUILD" "$BUILD"/plugins/*/; do
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$project"
done
bytes="$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)"
mib="$(( (bytes + 1048575) / 1048576 ))"
echo "$DEST: $(ls "$DEST"/*.whl | wc -l) wheels, ${mib} MiB"
if [ "$mib" -gt "$MAX_MIB" ]; then
  echo "over ${MAX_MIB} MiB: trim benchmarks/gpu/wheels.txt" >&2
  exit 1
fi
