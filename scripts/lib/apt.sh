# SPDX-License-Identifier: BSL-1.0
#
# Debian package helpers for the scripts/install-*.sh installers (sourced, not run). Each
# installer is idempotent: it lists what is missing and, only then, refreshes the package
# lists and installs it, as root or through sudo.

# True when the package is installed (dpkg's own status, not just a file on disk).
apt_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

# Sets the array `missing` to those of the given packages that are not installed.
apt_find_missing() {
    missing=()
    local package
    for package in "$@"; do
        apt_installed "${package}" || missing+=("${package}")
    done
}

# Runs a command as root: directly when root, else through sudo.
apt_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

# apt_install TAG PACKAGE...: `apt-get update`, then installs the packages without their
# recommendations. TAG names the installer in its messages. Fails, naming the packages, when
# not root and there is no sudo.
apt_install() {
    local tag="$1"
    shift
    if [[ "$(id -u)" -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        echo "${tag}: not root and no sudo; install these packages: $*" >&2
        return 1
    fi
    echo "${tag}: installing $*"
    apt_as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    apt_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@"
}

# Leaves a daemon a package just installed neither running nor enabled: tests start their own
# servers as child processes. With systemd running, stop and disable the unit; without it
# (containers), the SysV script may have started the daemon unless policy-rc.d forbade it, so
# stop it through invoke-rc.d and drop its boot links. Every step may fail harmlessly.
apt_disable_service() {
    local service="$1"
    if [[ -d /run/systemd/system ]]; then
        apt_as_root systemctl stop "${service}.service" >/dev/null 2>&1 || true
        apt_as_root systemctl disable "${service}.service" >/dev/null 2>&1 || true
        return 0
    fi
    if [[ -x "/etc/init.d/${service}" ]]; then
        apt_as_root invoke-rc.d "${service}" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        # Works offline: removes the unit's enablement symlinks and SysV links.
        apt_as_root systemctl disable "${service}.service" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
        apt_as_root update-rc.d "${service}" disable >/dev/null 2>&1 || true
    fi
}
