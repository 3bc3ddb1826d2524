#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs what the browser test (tests/browser, ctest label `browser`) needs: Debian's
# chromium, node and npm when they are missing, then playwright-core at the version pinned in
# tests/browser/package-lock.json (`npm ci`). Re-run cmake afterwards so the test is registered
# to run rather than to fail with "missing ...".
#
# Idempotent: when chromium and node are installed and node_modules matches the lock file, it
# changes nothing and neither refreshes the package lists nor calls npm. Runs apt-get as root,
# or through sudo when not root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
browser_dir="${root}/tests/browser"

source "${root}/scripts/lib/apt.sh"

missing=()
apt_installed chromium || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install install-browser-deps "${missing[@]}"
else
    echo "install-browser-deps: chromium, node and npm already installed"
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

lock="${browser_dir}/package-lock.json"
stamp="${browser_dir}/node_modules/.package-lock.json"
if [[ -f "${stamp}" && "${stamp}" -nt "${lock}" ]] &&
   node -e "require('${browser_dir}/node_modules/playwright-core/package.json')" 2>/dev/null; then
    echo "install-browser-deps: ${browser_dir}/node_modules is up to date"
else
    echo "install-browser-deps: npm ci in ${browser_dir}"
    (cd "${browser_dir}" && npm ci --no-audit --no-fund)
fi

echo "install-browser-deps: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)," \
     "node $(node --version)," \
     "playwright-core $(node -p "require('${browser_dir}/node_modules/playwright-core/package.json').version")"
