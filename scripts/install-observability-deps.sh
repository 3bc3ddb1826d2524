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

status="$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)"
if [[ "${status}" == "installed" ]]; then
    echo "install-observability-deps: ${package} already installed ($(command -v promtool || echo 'no promtool on PATH'))"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-observability-deps: not root and no sudo; install the ${package} package" >&2
    exit 1
fi

echo "install-observability-deps: installing ${package} (for promtool)"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
# No recommends: they would add prometheus-node-exporter, another service.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${package}"

# Leave no Prometheus server behind. With systemd running, stop and disable the unit;
# without it (containers), the SysV script may have started the daemon unless policy-rc.d
# forbade it, so stop it through invoke-rc.d and drop its boot links.
if [[ -d /run/systemd/system ]]; then
    "${as_root[@]}" systemctl stop "${package}.service" || true
    "${as_root[@]}" systemctl disable "${package}.service" || true
else
    if [[ -x "/etc/init.d/${package}" ]]; then
        "${as_root[@]}" invoke-rc.d "${package}" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        # Works offline: removes the unit's enablement symlinks and SysV links.
        "${as_root[@]}" systemctl disable "${package}.service" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
        "${as_root[@]}" update-rc.d "${package}" disable >/dev/null 2>&1 || true
    fi
fi
if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    echo "install-observability-deps: warning: a prometheus server is still running" \
         "(pid $(pgrep -u prometheus -x prometheus | tr '\n' ' ')); stop it if CI does not need it" >&2
fi

command -v promtool >/dev/null 2>&1 || {
    echo "install-observability-deps: ${package} installed but promtool is not on PATH" >&2
    exit 1
}
echo "install-observability-deps: $(promtool --version 2>&1 | head -n 1)"
