#!/usr/bin/env bash
# Installs everything edgechain needs on a fresh Debian 12 machine of this kind, idempotently:
# the Python package (editable) and its dependencies, the wasm32 guest, the native module.
# Each step is quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

step() { printf '\n== %s\n' "$*" >&2; }

step "Python package and dependencies"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev]'

step "wasm32 guest"
bash scripts/build_guest.sh

step "native module"
bash scripts/build_native.sh

step "setup done"
