#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs what the observability checks need: Prometheus' promtool (`promtool check
# metrics`, `check rules`, `test rules`, `check config`; see tests/integration/
# observability.cmake). Debian 12 ships promtool only in the prometheus package.
#
# Idempotent: when the package is installed it changes nothing and does not refresh the
# package lists. Runs apt-get as root, or through sudo when not root.
#
# The package enables (and, where a service manager allows it, starts) a Prometheus server on
# :9090. CI needs the tool, not the server: when this script installs the package, it stops
# and disables that service. A prometheus that was installed before is left alone.
set -euo pipefail

package=prometheus

source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

if apt_installed "${package}"; then
    echo "install-observability-deps: ${package} already installed ($(command -v promtool || echo 'no promtool on PATH'))"
    exit 0
fi
apt_install install-observability-deps "${package}"
apt_disable_service "${package}"
if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    echo "install-observability-deps: warning: a prometheus server is still running" \
         "(pid $(pgrep -u prometheus -x prometheus | tr '\n' ' ')); stop it if CI does not need it" >&2
fi

command -v promtool >/dev/null 2>&1 || {
    echo "install-observability-deps: ${package} installed but promtool is not on PATH" >&2
    exit 1
}
echo "install-observability-deps: $(promtool --version 2>&1 | head -n 1)"
