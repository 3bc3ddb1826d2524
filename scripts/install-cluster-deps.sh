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

source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

apt_find_missing "${packages[@]}"
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-cluster-deps: all ${#packages[@]} packages already installed"
    exit 0
fi
apt_install install-cluster-deps "${missing[@]}"

# Leave none of the packaged daemons this script installed running or enabled.
for service in "${services[@]}"; do
    for package in "${missing[@]}"; do
        if [[ "${package}" == "${service}" ]]; then
            apt_disable_service "${service}"
        fi
    done
done

command -v redis-server >/dev/null 2>&1 || {
    echo "install-cluster-deps: redis-server installed but not on PATH" >&2
    exit 1
}
echo "install-cluster-deps: $(redis-server --version)"
