#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs what the Redis cluster backplane needs: hiredis (wsmanager::cluster links it),
# redis-server (tests/cluster starts its own instances on free loopback ports) and nginx (the
# load balancer in front of several nodes).
#
# Idempotent: when every package is installed it changes nothing and does not refresh the
# package lists. Runs apt-get as root, or through sudo when not root.
#
# The redis-server and nginx packages enable (and, where a service manager allows it, start)
# a Redis on :6379 and a web server on :80. Neither tests nor CI use those: each test starts
# its own redis-server as a child process and stops it. So when this script installs one of
# them it stops and disables its service; services installed before are left alone.
set -euo pipefail

packages=(libhiredis-dev redis-server nginx)
# Packages that come with a Debian service nobody here needs.
services=(redis-server nginx)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)"
    if [[ "${status}" != "installed" ]]; then
        missing+=("${package}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-cluster-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-cluster-deps: not root and no sudo; install these packages: ${missing[*]}" >&2
    exit 1
fi

echo "install-cluster-deps: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

# Leave none of the packaged daemons running or enabled. With systemd running, stop and
# disable the unit; without it (containers), the SysV script may have started the daemon
# unless policy-rc.d forbade it, so stop it through invoke-rc.d and drop its boot links.
# Every step may fail harmlessly (nothing started, no service manager).
disable_service() {
    local service="$1"
    if [[ -d /run/systemd/system ]]; then
        "${as_root[@]}" systemctl stop "${service}.service" >/dev/null 2>&1 || true
        "${as_root[@]}" systemctl disable "${service}.service" >/dev/null 2>&1 || true
        return 0
    fi
    if [[ -x "/etc/init.d/${service}" ]]; then
        "${as_root[@]}" invoke-rc.d "${service}" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        # Works offline: removes the unit's enablement symlinks and SysV links.
        "${as_root[@]}" systemctl disable "${service}.service" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
        "${as_root[@]}" update-rc.d "${service}" disable >/dev/null 2>&1 || true
    fi
}

for service in "${services[@]}"; do
    for package in "${missing[@]}"; do
        if [[ "${package}" == "${service}" ]]; then
            disable_service "${service}"
        fi
    done
done

command -v redis-server >/dev/null 2>&1 || {
    echo "install-cluster-deps: redis-server installed but not on PATH" >&2
    exit 1
}
echo "install-cluster-deps: $(redis-server --version)"
