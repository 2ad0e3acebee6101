#!/usr/bin/env bash
# Builds candle's quantized Llama for wasm32 + simd128 as a benchmark reference (docs/toolchain.md,
# "Reference builds"). Never run by CI or the tests. candle-transformers comes from crates.io;
# the driver (scripts/references/candle_quantized_wasm: load a GGUF file, greedy decode steps) is
# ours. The toolchain is the guest's: rustup's wasm32 target if installed, else Debian's rustc-web
# with -Z build-std. Writes DIR/candle_quantized.wasm, which
# `edgechain bench --references DIR --weights gguf-...` times beside the engines.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET=wasm32-unknown-unknown
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -a "$HERE/references/candle_quantized_wasm/." "$WORK/"
cd "$WORK"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    cargo build --release --target "$TARGET" --lib
else
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build \
        --release --target "$TARGET" --lib -Z build-std=std,panic_abort \
        --config "target.$TARGET.linker=\"/usr/bin/rust-lld\"" </dev/null
fi
cp "target/$TARGET/release/candle_quantized_wasm_reference.wasm" "$OUT/candle_quantized.wasm"
echo "build_candle_wasm_reference: wrote $OUT/candle_quantized.wasm" >&2
