#!/usr/bin/env bash
# The Rust half of the README's test command (scripts/test.sh): the engine crate's own tests
# (rust_guest/tests, the run.c golden test among them; the exhaustive expf check), its lints,
# warnings as errors, and the native engine's instruction budget (scripts/instruction_budget.sh,
# valgrind's callgrind).
#
# Tests: rustup's cargo, as scripts/build_native.sh builds. Lints: Debian's rust-web-clippy
# (the clippy of the rustc-web toolchain scripts/build_guest.sh installs; rustup here has no
# way to download components), installed when missing, with its own target directory so the
# two compilers never invalidate each other's builds. Idempotent; quick when nothing changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/rust_guest"
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-clippy)

log() { echo "test_rust: $*" >&2; }

# shellcheck source=debian_packages.sh
source "$ROOT/scripts/debian_packages.sh"

cd "$CRATE"
log "cargo test ($(cargo --version))"
cargo test --locked --release --quiet </dev/null
# Ignored in a plain `cargo test` for its half minute; the native SiLU takes libm's expf from
# the vector lanes on the strength of this check over every f32 (docs/determinism.md).
log "every f32 through the vector exponential against libm's expf"
cargo test --locked --release --quiet --lib -- --ignored every_float_is_libms_expf </dev/null

ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
if [[ ! -x /usr/bin/cargo-clippy ]]; then
    log "missing /usr/bin/cargo-clippy after installing ${DEBIAN_PACKAGES[*]}: run scripts/check_tools.sh --tests"
    exit 1
fi
log "clippy, warnings as errors ($(/usr/bin/cargo-clippy --version 2>/dev/null || echo Debian clippy))"
clippy() {
    PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        cargo clippy --locked --quiet --target-dir "$CRATE/target/clippy-debian" "$@" \
        -- -D warnings </dev/null
}
clippy --all-targets
clippy --all-targets --features python
bash "$ROOT/scripts/instruction_budget.sh"
log "passed"
