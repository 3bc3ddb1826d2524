#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs what the task_server dashboard's browser test (tests/browser_demo) needs:
# Debian's chromium, node and npm, then playwright-core with `npm ci` in tests/browser_demo.
#
# Independent of scripts/install-deps.sh and scripts/install-browser-deps.sh, and idempotent:
# a tool already on the machine (from any source: a node from elsewhere is kept) is not
# installed again, the package lists are refreshed only when something is missing, and
# `npm ci` runs only when node_modules does not hold the locked playwright-core. Runs apt-get
# as root, or through sudo when not root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo_tests="${root}/tests/browser_demo"

log() {
    echo "install-demo-deps: $*"
}

# command -> Debian package that provides it.
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    source "${root}/scripts/lib/apt.sh"
    apt_install install-demo-deps "${missing[@]}"
else
    log "chromium, node and npm already installed"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "${node_major}" -lt 18 ]]; then
    log "node $(node --version) is too old: tests/browser_demo needs node >= 18" >&2
    exit 1
fi

# The playwright-core version the lock file pins, and the one installed (if any).
cd "${demo_tests}"
wanted="$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')"
have="$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')"
if [[ "${have}" == "${wanted}" ]]; then
    log "playwright-core ${have} already in tests/browser_demo/node_modules"
    exit 0
fi
log "npm ci in tests/browser_demo (playwright-core ${wanted}; it uses Debian's chromium, no browser download)"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts
