#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs the dependencies, builds the `minimal` example in build/demo and runs it.
# Arguments are passed to the example: scripts/demo.sh [args...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh

cmake -S . -B build/demo \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DWSMANAGER_BUILD_TESTS=OFF \
    -DWSMANAGER_BUILD_EXAMPLES=ON
cmake --build build/demo -j2 --target minimal

binary="build/demo/examples/minimal/minimal"
if [[ ! -x "${binary}" ]]; then
    echo "demo.sh: built target 'minimal' but found no ${binary}" >&2
    exit 1
fi
exec "${binary}" "$@"
