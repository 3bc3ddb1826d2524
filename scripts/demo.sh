#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs the dependencies, builds the task server demo (examples/task_server) in build/demo
# and runs it on 0.0.0.0:8765 (WEBSOCKET_PORT / WEBSOCKET_HOST override). Arguments go to
# the server: scripts/demo.sh [--max-running N] ...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh --base

cmake -S . -B build/demo \
    -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
    -DWSMANAGER_BUILD_TESTS=OFF \
    -DWSMANAGER_BUILD_BENCHMARKS=OFF \
    -DWSMANAGER_BUILD_EXAMPLES=ON
cmake --build build/demo -j2 --target task_server

binary="build/demo/examples/task_server/task_server"
if [[ ! -x "${binary}" ]]; then
    echo "demo.sh: built target 'task_server' but found no ${binary}" >&2
    exit 1
fi
port="${WEBSOCKET_PORT:-8765}"
echo
echo "demo.sh: the task server listens on 0.0.0.0:${port}. Open in a browser:"
echo "    http://localhost:${port}/?user_id=alice"
echo "    http://localhost:${port}/?user_id=bob      (a second user sees only their own tasks)"
echo "Press Ctrl-C to stop (open connections close with 1001)."
echo
exec "${binary}" --host "${WEBSOCKET_HOST:-0.0.0.0}" --port "${port}" "$@"
