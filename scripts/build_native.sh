#!/usr/bin/env bash
# Builds and installs the native engine module `edgechain_native` (rust_guest/, pyo3 + maturin)
# into the current Python. Idempotent: skips the build when the crate's sources are unchanged
# since the last successful install and the module imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/rust_guest"
PYTHON="${PYTHON:-python3}"
STAMP="$CRATE/target/native-install.stamp"

log() { echo "build_native: $*" >&2; }

sources_hash() {
    (cd "$CRATE" && find Cargo.toml Cargo.lock pyproject.toml src -type f -print0 | sort -z |
        xargs -0 sha256sum; "$PYTHON" -c 'import sys; print(sys.executable, sys.version)') |
        sha256sum | cut -d' ' -f1
}

want="$(sources_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] &&
    "$PYTHON" -c 'import edgechain_native' >/dev/null 2>&1; then
    log "up to date: edgechain_native is installed for $("$PYTHON" -c 'import sys; print(sys.executable)')"
    exit 0
fi

log "building and installing edgechain_native with maturin ($(cargo --version))"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input "$CRATE" </dev/null
"$PYTHON" -c 'import edgechain_native; print("build_native: installed", edgechain_native.__file__)' >&2
mkdir -p "$(dirname "$STAMP")"
echo "$want" >"$STAMP"
