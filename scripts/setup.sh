#!/usr/bin/env bash
# Installs everything edgechain needs on a fresh Debian 12 machine of this kind, idempotently:
# the Python package (editable) and its dependencies, chromium and chromedriver, the wasm32
# guest, the native module.
# Each step is quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# Each step's line says how long setup has run so far: on a new machine most of it is the first
# guest and native builds (README, "The two commands").
step() { printf '\n== %s (%d s so far)\n' "$*" "$SECONDS" >&2; }

step "Python package and dependencies"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev]'

step "chromium and chromedriver (the node's GraphiQL browser tests)"
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "already installed" >&2
else
    # CI runs as root with no stdin: no sudo, no prompts.
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver </dev/null
fi

step "wasm32 guest"
bash scripts/build_guest.sh

step "native module"
bash scripts/build_native.sh

step "tools the build and tests call"
bash scripts/check_tools.sh

step "setup done"
