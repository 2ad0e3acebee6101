#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m ruff check .
exec "$PYTHON" -m pytest "$@"
