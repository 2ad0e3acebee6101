#!/usr/bin/env bash
# Builds llama.cpp's llama-bench for `edgechain bench --references DIR --weights gguf-...`
# (docs/toolchain.md, "Reference builds"). Never run by CI or the tests. llama.cpp comes from
# the source distribution of its PyPI binding, llama-cpp-python (PyPI is reachable here; GitHub
# is not), which vendors it; cmake comes from PyPI too, into a temporary virtualenv. Writes
# DIR/llama-bench (one thread in the bench rows: -t 1) and DIR/LLAMACPP_SOURCE.
#   VERSION=0.3.36 (default) picks the binding's release.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
OUT="$1"
VERSION="${VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
log() { echo "build_llamacpp_reference: $*" >&2; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log "downloading llama-cpp-python $VERSION's source distribution from PyPI"
"$PYTHON" - "$VERSION" "$WORK/src.tar.gz" <<'PY'
import sys

import httpx

version, target = sys.argv[1], sys.argv[2]
index = f"https://pypi.org/pypi/llama-cpp-python/{version}/json"
info = httpx.get(index, timeout=60, follow_redirects=True).raise_for_status().json()
sdist = next(f for f in info["urls"] if f["packagetype"] == "sdist")
url = httpx.URL(index).join(sdist["url"])
with httpx.stream("GET", url, timeout=300, follow_redirects=True) as response:
    response.raise_for_status()
    with open(target, "wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
PY
tar -xzf "$WORK/src.tar.gz" -C "$WORK"
LLAMA="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"

log "cmake from PyPI into a temporary virtualenv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet cmake
CMAKE="$WORK/venv/bin/cmake"

log "building llama-bench (-DGGML_NATIVE=ON, Release): several minutes on 2 cores"
"$CMAKE" -S "$LLAMA" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF \
    >"$WORK/cmake.log" || { cat "$WORK/cmake.log" >&2; exit 1; }
"$CMAKE" --build "$WORK/build" --target llama-bench -j "$(nproc)" >"$WORK/build.log" \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
cp "$WORK/build/bin/llama-bench" "$OUT/"
printf 'llama.cpp vendored by llama-cpp-python %s (PyPI sdist)\n' "$VERSION" >"$OUT/LLAMACPP_SOURCE"
log "wrote $OUT/llama-bench"
