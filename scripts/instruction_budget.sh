#!/usr/bin/env bash
# The native engine's instruction budget: a regression guard that no other load on the machine
# can disturb. Counts the instructions (valgrind --tool=callgrind, which counts, not times) of a
# fixed run of rust_guest/examples/generate.rs: stories260K, "Once upon a time", greedy, 256
# positions, one thread (the whole process: loading, prefill, 249 decode steps); checks the
# text against run.c's golden file and the count against perf_budget.json's
# "native_decode_260k" within its tolerance.
#
#   scripts/instruction_budget.sh            check (exit 1 when over or far under the budget)
#   scripts/instruction_budget.sh --update   record the new count in perf_budget.json
#
# An intended change (a kernel, the toolchain, the example) updates the budget in the same
# commit, with the old and new counts in its message (docs/toolchain.md, "Instruction budget").
# Installs Debian's valgrind when missing. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/rust_guest"
BUDGET="$ROOT/perf_budget.json"
MODELS="${EDGECHAIN_MODELS_DIR:-$ROOT/../shared/models/stories260K}"
[[ -f "$MODELS/stories260K.bin" ]] || MODELS="$MODELS/stories260K"
PYTHON=${PYTHON:-python3}

log() { echo "instruction_budget: $*" >&2; }

# shellcheck source=debian_packages.sh
source "$ROOT/scripts/debian_packages.sh"
ensure_debian_packages valgrind

(cd "$CRATE" && cargo build --locked --release --quiet --example generate </dev/null)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The example opens its model with one thread (LoadedModel's default), so the count is
# the same whatever EDGECHAIN_THREADS says.
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$CRATE/target/release/examples/generate" "$MODELS/stories260K.bin" "$MODELS/tok512.bin" \
    "Once upon a time" '{"temperature": 0, "max_positions": 256}' \
    >"$work/text" 2>"$work/log"
if ! cmp -s "$work/text" "$MODELS/greedy_once_upon_a_time_256.txt"; then
    log "the example's text differs from run.c's golden output"
    exit 1
fi
count="$(awk '/^summary:/ {print $2}' "$work/callgrind.out")"
[[ -n "$count" ]] || { log "no summary line in callgrind's output"; cat "$work/log" >&2; exit 1; }
"$PYTHON" - "$BUDGET" native_decode_260k "$count" "${1:-}" <<'EOF'
import json
import sys

path, key, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
budget = json.load(open(path))
entry = budget[key]
if mode == "--update":
    print(f"instruction_budget: {key}: {entry['count']:,} -> {count:,} "
          f"({count / entry['count'] - 1:+.2%})", file=sys.stderr)
    entry["count"] = count
    with open(path, "w") as f:
        json.dump(budget, f, indent=2)
        f.write("\n")
    sys.exit(0)
ratio = count / entry["count"]
print(f"instruction_budget: {key}: {count:,} instructions, budget {entry['count']:,} "
      f"({ratio - 1:+.2%}, tolerance {entry['tolerance']:.0%})", file=sys.stderr)
if abs(ratio - 1) > entry["tolerance"]:
    print(f"instruction_budget: {key} is outside its budget: an intended change updates it "
          "with scripts/instruction_budget.sh --update in the same commit", file=sys.stderr)
    sys.exit(1)
EOF
