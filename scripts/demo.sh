#!/usr/bin/env bash
# The README's main command: set up (idempotent), then tell the edgechain story in seconds:
# a local network certifies stories260K's hashes, the service verifies them and writes a story.
# Extra arguments go to the demo, e.g. `bash scripts/demo.sh --faulty v2=offline -s 42`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/setup.sh
exec "$PYTHON" examples/story_demo.py "$@"
