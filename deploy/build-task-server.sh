#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Builds the task server demo (examples/task_server) as a cluster node: the one build recipe
# of the deployment. deploy/Dockerfile runs it, and so does the CI test
# tests/cluster/cluster_deployment_test.py, so the image is built with the commands CI runs.
#
#   deploy/build-task-server.sh deps           Debian 12's packages, through the repository's
#                                              own installers: scripts/install-deps.sh --base
#                                              (build and run) and scripts/install-cluster-deps.sh
#                                              (hiredis, redis-server, nginx). Idempotent: when
#                                              all are installed it changes nothing.
#   deploy/build-task-server.sh build [DIR]    configures DIR (default build/deploy) if it is
#                                              new, builds the target task_server there, and
#                                              prints `TASK_SERVER=<path of the program>`.
#   deploy/build-task-server.sh [DIR]          both.
#
# A new DIR is configured Release, -O2, with the Redis backplane (WSMANAGER_CLUSTER=ON) and
# without tests or benchmarks. An existing DIR (a developer's or CI's build tree) keeps its
# own settings: it is only built, and must have WSMANAGER_CLUSTER and WSMANAGER_BUILD_EXAMPLES
# on. WSMANAGER_BUILD_JOBS sets the build's parallelism (default: the number of CPUs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    echo "usage: deploy/build-task-server.sh [deps | build [DIR] | DIR]" >&2
    exit 2
}

deps() {
    bash "${root}/scripts/install-deps.sh" --base
    bash "${root}/scripts/install-cluster-deps.sh"
}

build() {
    local dir="${1:-${root}/build/deploy}"
    local jobs="${WSMANAGER_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
    if [[ -f "${dir}/CMakeCache.txt" ]]; then
        local option
        for option in WSMANAGER_CLUSTER WSMANAGER_BUILD_EXAMPLES; do
            if ! grep -Eq "^${option}:BOOL=(ON|TRUE|1|YES)$" "${dir}/CMakeCache.txt"; then
                echo "build-task-server: ${dir} is configured without ${option}=ON; the" \
                     "cluster demo needs it (reconfigure it, or give a new folder)" >&2
                exit 1
            fi
        done
        echo "build-task-server: building task_server in ${dir} (its own settings)"
    else
        echo "build-task-server: configuring ${dir}"
        cmake -S "${root}" -B "${dir}" \
            -DCMAKE_BUILD_TYPE=Release \
            "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
            -DWSMANAGER_CLUSTER=ON \
            -DWSMANAGER_BUILD_EXAMPLES=ON \
            -DWSMANAGER_BUILD_TESTS=OFF \
            -DWSMANAGER_BUILD_BENCHMARKS=OFF
    fi
    cmake --build "${dir}" --target task_server -j "${jobs}"

    local binary
    binary="$(cd "${dir}" && pwd)/examples/task_server/task_server"
    if [[ ! -x "${binary}" ]]; then
        echo "build-task-server: built target task_server but found no ${binary}" >&2
        exit 1
    fi
    "${binary}" --help >/dev/null
    echo "TASK_SERVER=${binary}"
}

case "${1:-}" in
    deps)
        [[ $# -eq 1 ]] || usage
        deps
        ;;
    build)
        [[ $# -le 2 ]] || usage
        build "${2:-}"
        ;;
    -h | --help)
        usage
        ;;
    *)
        [[ $# -le 1 ]] || usage
        deps
        build "${1:-}"
        ;;
esac
