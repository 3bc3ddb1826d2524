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

source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

apt_find_missing "${packages[@]}"
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-fuzz-deps: all ${#packages[@]} packages already installed"
    exit 0
fi
apt_install install-fuzz-deps "${missing[@]}"
