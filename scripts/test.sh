#!/usr/bin/env bash
# The README's test command: set up (idempotent), the Rust crate's tests and lints, the Python
# lint, then the whole Python test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s (%d s so far)\n' "$*" "$SECONDS" >&2; }
bash scripts/setup.sh
# Only the tests need the Linera application (linera-sdk: about 28 CPU-minutes cold), so the
# demo's setup does not build it.
step "Linera application (linera_app/, docs/linera.md)"
bash scripts/build_linera_app.sh
step "Rust tests and clippy (rust_guest/, scripts/test_rust.sh)"
bash scripts/test_rust.sh
PYTHON=${PYTHON:-python3}
step "ruff, then the Python test suite"
"$PYTHON" -m ruff check .
exec "$PYTHON" -m pytest "$@"
