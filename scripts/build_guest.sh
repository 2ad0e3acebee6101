#!/usr/bin/env bash
# Builds the wasm32 guest (rust_guest/) and copies it to service/engine/edgechain_guest.wasm.
#
# Toolchain: rustup's, when it has the wasm32-unknown-unknown target installed; otherwise
# Debian's rustc-web (1.96) building std from source (-Z build-std), installing the Debian
# packages when missing. See docs/toolchain.md. Idempotent; quick when nothing changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/rust_guest"
DEST="$ROOT/service/engine/edgechain_guest.wasm"
TARGET=wasm32-unknown-unknown
PROFILE=wasm
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22)

log() { echo "build_guest: $*" >&2; }

have_rustup_target() {
    command -v rustup >/dev/null 2>&1 &&
        rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}

# shellcheck source=debian_packages.sh
source "$ROOT/scripts/debian_packages.sh"

cd "$CRATE"
if have_rustup_target; then
    log "toolchain: rustup $(rustc --version) with the $TARGET target"
    TARGET_DIR="$CRATE/target/wasm-rustup"
    cargo build --locked --quiet --profile "$PROFILE" --target "$TARGET" --target-dir "$TARGET_DIR" --lib
else
    ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
    for tool in /usr/bin/rustc /usr/bin/cargo /usr/bin/rust-lld; do
        if [[ ! -x $tool ]]; then
            log "missing $tool after installing ${DEBIAN_PACKAGES[*]}: run scripts/check_tools.sh"
            exit 1
        fi
    done
    log "toolchain: Debian rustc-web $(/usr/bin/rustc --version) with -Z build-std (no rustup $TARGET target)"
    TARGET_DIR="$CRATE/target/wasm-debian"
    debian_build() {
        RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build \
            --locked --quiet --profile "$PROFILE" --target "$TARGET" --target-dir "$TARGET_DIR" \
            --lib -Z build-std=std,panic_abort \
            --config "target.$TARGET.linker=\"/usr/bin/rust-lld\"" </dev/null
    }
    # Once, on a machine that had just installed rustc-web, the first build stopped with
    # "rustup's rust-src .../Cargo.lock does not exist" and the same command then succeeded;
    # not reproduced since (docs/toolchain.md). One retry keeps a fresh machine's setup going.
    if ! debian_build; then
        log "the build failed; retrying once"
        debian_build
    fi
fi

BUILT="$TARGET_DIR/$TARGET/$PROFILE/edgechain_guest.wasm"
if [[ ! -f "$BUILT" ]]; then
    log "build finished but $BUILT is missing"
    exit 1
fi
if cmp -s "$BUILT" "$DEST"; then
    log "up to date: $DEST"
else
    mkdir -p "$(dirname "$DEST")"
    cp "$BUILT" "$DEST.tmp" && mv "$DEST.tmp" "$DEST"
    log "wrote $DEST ($(stat -c %s "$DEST") bytes)"
fi
