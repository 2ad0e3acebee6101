#!/usr/bin/env bash
# Builds llama2.c's reference programs for `edgechain bench --references DIR` (docs/toolchain.md,
# "Reference builds"). Nothing of llama2.c is in this repository: LLAMA2C is a checkout of
# https://github.com/karpathy/llama2.c (a directory with run.c and runq.c) or a git directory of it
# (its HEAD is used). Writes into DIR:
#   run       run.c,  gcc -Ofast -march=native (f32, one thread)
#   runq      runq.c, gcc -Ofast -march=native (int8, one thread)
#   run.wasm  run.c for wasm32-wasi, clang -O3 -ffast-math -msimd128 (run by wasmtime-py)
#   SOURCE    where the sources came from (commit when known)
# Needs gcc, and for run.wasm clang-22 + wasi-libc + libclang-rt-22-dev-wasm32 (Debian); the wasm
# build is skipped with a message when they are missing. Nothing downloads.
set -euo pipefail

usage() { echo "usage: $0 DIR LLAMA2C_CHECKOUT" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
OUT="$1"
SRC="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "build_references: $*" >&2; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ -f "$SRC/run.c" && -f "$SRC/runq.c" ]]; then
    cp "$SRC/run.c" "$SRC/runq.c" "$WORK/"
    origin="$SRC"
    commit="$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)"
elif git --git-dir="$SRC" rev-parse HEAD >/dev/null 2>&1; then
    git --git-dir="$SRC" show HEAD:run.c >"$WORK/run.c"
    git --git-dir="$SRC" show HEAD:runq.c >"$WORK/runq.c"
    origin="$SRC (git directory)"
    commit="$(git --git-dir="$SRC" rev-parse HEAD)"
else
    log "$SRC holds neither run.c and runq.c nor a git repository of llama2.c"
    exit 1
fi

log "gcc -Ofast -march=native: run, runq"
gcc -Ofast -march=native -o "$OUT/run" "$WORK/run.c" -lm
gcc -Ofast -march=native -o "$OUT/runq" "$WORK/runq.c" -lm

CLANG="${CLANG:-clang-22}"
if command -v "$CLANG" >/dev/null 2>&1 && [[ -d /usr/lib/wasm32-wasi || -n "${WASI_SYSROOT:-}" ]]; then
    log "$CLANG --target=wasm32-wasi -O3 -ffast-math -msimd128: run.wasm"
    "$CLANG" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" -O3 -ffast-math -msimd128 \
        -D_WASI_EMULATED_MMAN -include "$HERE/references/wasi_mmap.h" \
        -Wl,--max-memory=4294967296 -o "$OUT/run.wasm" "$WORK/run.c" -lm
else
    log "skipping run.wasm: needs $CLANG and wasi-libc (apt-get install clang-22 wasi-libc libclang-rt-22-dev-wasm32)"
fi
printf 'llama2.c from %s, commit %s\n' "$origin" "$commit" >"$OUT/SOURCE"
log "wrote $(cd "$OUT" && ls run runq run.wasm 2>/dev/null | tr '\n' ' ')to $OUT"
