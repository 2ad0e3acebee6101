#!/usr/bin/env bash
# Builds the Linera application (linera_app/): its contract and service for wasm32, and its
# native tests (linera-sdk's TestValidator, wasmer runtime). With --test, also runs those tests
# (tests/test_linera_app.py does; EDGECHAIN_CONFORMANCE_OUT names the file the conformance test
# writes); with --bench, the service's decode speed instead (EDGECHAIN_BENCH_DIR, see
# linera_app/tests/bench.rs); with --wasm, only the wasm32 modules (scripts/linera_net_demo.sh).
# Idempotent; quick when nothing changed. See docs/linera.md.
#
# Toolchain: Debian's rustc-web 1.96 for everything (its cargo, -Z build-std for wasm32, as
# scripts/build_guest.sh and docs/toolchain.md describe), plus protobuf-compiler and
# libprotobuf-dev (protoc and google/protobuf/empty.proto, for linera-storage-service's build
# script in the tests' dependency tree). Packages are installed when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/linera_app"
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 protobuf-compiler libprotobuf-dev)
RUN_TESTS=0
[[ ${1:-} == --test ]] && RUN_TESTS=1
[[ ${1:-} == --bench ]] && RUN_TESTS=2
WASM_ONLY=0
[[ ${1:-} == --wasm ]] && WASM_ONLY=1

log() { echo "build_linera_app: $*" >&2; }

# shellcheck source=debian_packages.sh
source "$ROOT/scripts/debian_packages.sh"

ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
for tool in /usr/bin/rustc /usr/bin/cargo /usr/bin/rust-lld /usr/bin/protoc \
    /usr/include/google/protobuf/empty.proto; do
    if [[ ! -e $tool ]]; then
        log "missing $tool after installing ${DEBIAN_PACKAGES[*]}"
        exit 1
    fi
done

# One toolchain for every build of this crate, including the `cargo build --release --target
# wasm32-unknown-unknown` that TestValidator runs from the crate's directory (with the crate's
# .cargo/config.toml: build-std, rust-lld, -C target-cpu=mvp). RUSTC_BOOTSTRAP lets that stable
# cargo read the config's [unstable] table.
export PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
log "toolchain: Debian $(rustc --version), $(cargo --version)"

# wasm32: from the crate's directory, so its .cargo/config.toml applies. Same command as
# TestValidator's (plus --locked), so the tests find it built.
(cd "$CRATE" && cargo build --locked --quiet --release --target wasm32-unknown-unknown </dev/null)
for bin in contract service; do
    wasm="$CRATE/target/wasm32-unknown-unknown/release/edgechain_linera_$bin.wasm"
    [[ -f $wasm ]] || { log "build finished but $wasm is missing"; exit 1; }
    log "$bin: $wasm ($(stat -c %s "$wasm") bytes)"
done
if ((WASM_ONLY)); then exit 0; fi

# Native tests: from the repository root, so the crate's wasm32 config does not apply; their
# own target directory, so the two builds never invalidate each other.
native=(cargo test --locked --quiet --manifest-path "$CRATE/Cargo.toml" --target-dir "$CRATE/target/native")
if ((RUN_TESTS == 2)); then
    (cd "$ROOT" && "${native[@]}" --test bench -- --ignored --nocapture </dev/null)
elif ((RUN_TESTS)); then
    (cd "$ROOT" && "${native[@]}" -- --nocapture </dev/null)
else
    (cd "$ROOT" && "${native[@]}" --no-run </dev/null)
    log "built; run the tests with: scripts/build_linera_app.sh --test (or pytest tests/test_linera_app.py)"
fi
