# shellcheck shell=bash
# Shared by scripts/run, scripts/test and cross/build (sourced, not run).
# Installs what is missing, and only that: Debian packages with apt-get, Rust components
# and targets with rustup, cargo-zigbuild into a Python venv under target/tools/.

# The repository's root folder.
SRGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo when it exists.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $* (no sudo here); run it as root, then run this again"
    fi
}

apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

_apt_updated=0
_apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"
}

# ensure_apt_packages PKG... : installs the packages that are not installed yet.
# apt-get install is tried twice: a first try can fail with a transient
# "dpkg-deb: failed to read archive".
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        apt_installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and this machine has no apt-get: install them by hand"
    say "installing Debian packages: ${missing[*]}"
    if [[ $_apt_updated -eq 0 ]]; then
        _apt_get update || { sleep 5; _apt_get update; }
        _apt_updated=1
    fi
    if ! _apt_get install -y --no-install-recommends "${missing[@]}"; then
        say "apt-get install failed; trying once more"
        sleep 5
        _apt_get install -y --no-install-recommends "${missing[@]}"
    fi
}

ensure_rustup_components() {
    local component
    for component in "$@"; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
            say "adding Rust component $component"
            rustup component add "$component"
        fi
    done
}

ensure_rustup_targets() {
    local target
    for target in "$@"; do
        if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            say "adding Rust target $target"
            rustup target add "$target"
        fi
    done
}

# A Python venv with cargo-zigbuild (which brings zig as the "ziglang" package): zig is the
# C compiler and linker for the static musl builds. Prints the venv's bin folder.
ZIG_VENV="$SRGATE_ROOT/target/tools/zigbuild-venv"
ensure_zigbuild() {
    if [[ ! -x "$ZIG_VENV/bin/cargo-zigbuild" ]]; then
        say "installing cargo-zigbuild into $ZIG_VENV" >&2
        command -v python3 >/dev/null || ensure_apt_packages python3 >&2
        rm -rf "$ZIG_VENV"
        if ! python3 -m venv "$ZIG_VENV" >&2; then
            # Debian's own python3 needs its venv package
            ensure_apt_packages python3-venv >&2
            rm -rf "$ZIG_VENV"
            python3 -m venv "$ZIG_VENV" >&2
        fi
        "$ZIG_VENV/bin/pip" install --quiet --disable-pip-version-check cargo-zigbuild >&2 ||
            { sleep 5; "$ZIG_VENV/bin/pip" install --quiet --disable-pip-version-check cargo-zigbuild >&2; }
    fi
    echo "$ZIG_VENV/bin"
}
