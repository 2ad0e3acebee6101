# Sourced by the build scripts: `ensure_debian_packages PKG...` installs, with apt-get, those of
# the named Debian packages that are not installed (non-interactive; `sudo -n` when not root).
# Packages are named explicitly: `--no-install-recommends` drops recommended ones (that is how
# rust-lld once went missing).

ensure_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q </dev/null
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}
