#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs what scripts/fuzz.sh needs beyond scripts/install-deps.sh: clang 14 with libFuzzer
# and the sanitizer runtimes (libclang-rt-14-dev), and llvm-14 for llvm-symbolizer (readable
# stack traces in crash reports). CI does not need them: it replays the corpus with g++
# (tests/fuzz, ctest label fuzz).
#
# Idempotent: when every package is installed it changes nothing and does not refresh the
# package lists. Runs apt-get as root, or through sudo when not root.
set -euo pipefail

packages=(clang-14 libclang-rt-14-dev llvm-14)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)"
    if [[ "${status}" != "installed" ]]; then
        missing+=("${package}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-fuzz-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-fuzz-deps: not root and no sudo; install these packages: ${missing[*]}" >&2
    exit 1
fi

echo "install-fuzz-deps: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
