#!/usr/bin/env bash
# Builds llama.cpp's references (docs/toolchain.md, "Reference builds"). Never run by CI or the
# tests. llama.cpp comes from the source distribution of its PyPI binding, llama-cpp-python (PyPI
# is reachable here; GitHub is not), which vendors it; cmake comes from PyPI too, into a
# temporary virtualenv. Writes to DIR:
#   llama-bench      for `edgechain bench --references DIR --weights gguf-...` (-t 1 there)
#   llamacpp-logits  scripts/references/llamacpp_logits.c, for
#                    `python -m edgechain.bench.llamacpp_logits --references DIR`
#   lib*.so*         llama.cpp's shared libraries both programs load (found beside them)
#   include/         llama.h and ggml's headers the driver was compiled against
#   LLAMACPP_SOURCE
#   VERSION=0.3.36 (default) picks the binding's release. LLAMA_BUILD=PATH reuses a tree built
#   before (PATH/bin holding llama-bench and the shared libraries, in llama.cpp's source tree,
#   as this script's cmake lines leave it): nothing is downloaded or rebuilt.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
OUT="$1"
VERSION="${VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
log() { echo "build_llamacpp_reference: $*" >&2; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ -n "${LLAMA_BUILD:-}" ]]; then
    BUILD="$(cd "$LLAMA_BUILD" && pwd)"
    LLAMA="$(dirname "$BUILD")"
    log "reusing the build in $BUILD"
    SOURCE="llama.cpp built before in $BUILD"
else
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
    BUILD="$WORK/build"

    log "cmake from PyPI into a temporary virtualenv"
    "$PYTHON" -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet cmake
    CMAKE="$WORK/venv/bin/cmake"

    # Shared libraries: the logits driver links to libllama.so; llama-bench loads them too.
    log "building llama-bench and libllama (-DGGML_NATIVE=ON, Release): 30+ minutes on 2 cores"
    "$CMAKE" -S "$LLAMA" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        >"$WORK/cmake.log" || { cat "$WORK/cmake.log" >&2; exit 1; }
    "$CMAKE" --build "$BUILD" --target llama-bench llama -j "$(nproc)" >"$WORK/build.log" \
        || { tail -30 "$WORK/build.log" >&2; exit 1; }
    SOURCE="llama.cpp vendored by llama-cpp-python $VERSION (PyPI sdist)"
fi

cp "$BUILD/bin/llama-bench" "$OUT/"
cp -P "$BUILD"/bin/lib*.so* "$OUT/"
mkdir -p "$OUT/include"
cp "$LLAMA/include/llama.h" "$LLAMA"/ggml/include/*.h "$OUT/include/"
log "compiling llamacpp-logits against them"
cc -O2 -Wall -o "$OUT/llamacpp-logits" "$HERE/references/llamacpp_logits.c" \
    -I"$OUT/include" -L"$OUT" -lllama -Wl,--disable-new-dtags,-rpath,'$ORIGIN'
printf '%s\n' "$SOURCE" >"$OUT/LLAMACPP_SOURCE"
log "wrote $OUT/llama-bench, $OUT/llamacpp-logits and llama.cpp's shared libraries"
