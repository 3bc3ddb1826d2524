#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Installs the dependencies, builds the benchmarks optimized (-O2) in build/bench and runs the
# fan-out benchmark; arguments go to it:
#
#   scripts/bench.sh [--clients K] [--messages M] [--size BYTES] [--rounds R]
#
# It prints messages delivered per second for a bare Asio server, plain websocketpp and
# wsmanager, measured in the same run, and their ratios (docs/performance.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh --base

cmake -S . -B build/bench \
    -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
    -DWSMANAGER_BUILD_TESTS=OFF \
    -DWSMANAGER_BUILD_EXAMPLES=OFF \
    -DWSMANAGER_BUILD_BENCHMARKS=ON
cmake --build build/bench -j2 --target wsmanager_bench_fanout

exec build/bench/bench/wsmanager_bench_fanout "$@"
