#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs, from Debian 12's packages, everything wsmanager needs to build and run its tests.
# Idempotent: when every package is already installed it changes nothing and does not even
# refresh the package lists, so reruns take a fraction of a second. Runs apt-get as root, or
# through sudo when not root.
set -euo pipefail

packages=(
    # toolchain
    build-essential cmake pkg-config git
    # the library's dependencies
    libwebsocketpp-dev libasio-dev rapidjson-dev libssl-dev zlib1g-dev
    # tests
    catch2 python3 python3-websockets
    # the config::tls tests make their certificate with the openssl command
    openssl
    # Add packages for later features here (one group per feature, with a comment), e.g. the
    # Redis scale-out, the reverse-proxy example, the browser tests, the metrics check.
)

here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/lib/apt.sh"

apt_find_missing "${packages[@]}"
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
else
    apt_install install-deps "${missing[@]}"
fi

# --base: only what building and running needs (the demo); the test tools come next.
if [[ "${1:-}" == "--base" ]]; then
    exit 0
fi

# Each feature's own installer: idempotent, fast when everything is there.
for installer in install-observability-deps.sh install-demo-deps.sh install-browser-deps.sh \
    install-cluster-deps.sh; do
    if [[ -f "${here}/${installer}" ]]; then
        bash "${here}/${installer}"
    fi
done
