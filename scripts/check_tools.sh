#!/usr/bin/env bash
# Checks that every tool the build calls exists (with --tests, also what only the test command
# uses); for each one missing, names the Debian package (or the command) that provides it.
# Exit 1 when anything is missing.
# scripts/setup.sh (shared by the demo and the test command) calls it without --tests after it
# installs: the demo must not demand a tool that only scripts/test_rust.sh installs.
# Runnable alone: `bash scripts/check_tools.sh [--tests]`.
set -uo pipefail

tests=0
case "${1:-}" in
    --tests) tests=1 ;;
    "") ;;
    *) echo "usage: check_tools.sh [--tests]" >&2; exit 2 ;;
esac

missing=0
need() { # need PATH-OR-COMMAND HOW-TO-GET-IT
    if [[ $1 == /* ]]; then
        [[ -e $1 ]] && return
    else
        command -v "$1" >/dev/null 2>&1 && return
    fi
    echo "check_tools: missing $1: $2" >&2
    missing=1
}

need python3 "install Python 3.11"
need cargo "install Rust with rustup (https://rustup.rs)"
need rustc "install Rust with rustup (https://rustup.rs)"
need chromium "apt-get install --no-install-recommends chromium"
need chromedriver "apt-get install --no-install-recommends chromium-driver"

# The wasm32 guest: rustup's target, or Debian's rustc-web toolchain building std from source.
if ! { command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; }; then
    need /usr/bin/rustc "apt-get install --no-install-recommends rustc-web"
    need /usr/bin/cargo "apt-get install --no-install-recommends cargo-web"
    # build-std reads std's source from the compiler's sysroot (/usr for Debian's rustc).
    sysroot=$(/usr/bin/rustc --print sysroot 2>/dev/null || echo /usr)
    need "$sysroot/lib/rustlib/src/rust/library" "apt-get install --no-install-recommends rust-web-src"
    need /usr/bin/rust-lld "apt-get install --no-install-recommends rust-web-llvm lld-22"
fi

# The Rust lints of the test command: Debian's clippy for rustc-web, which scripts/test_rust.sh
# installs before it runs them.
if ((tests)); then
    need /usr/bin/cargo-clippy "apt-get install --no-install-recommends rust-web-clippy"
fi

if ((missing)); then
    echo "check_tools: install what is listed above (scripts/setup.sh does it as root), then retry" >&2
    exit 1
fi
echo "check_tools: every tool the build and tests use is present" >&2
