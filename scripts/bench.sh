#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Builds the benchmarks optimized (-O2) in build/bench and runs the end-to-end benchmark,
# wsmanager_bench (bench/, docs/performance.md): fan-out to 1,000 and 5,000 clients,
# send_to_user, notify_user round trips, idle connections, lone-message latency, each against
# a bare-Asio ceiling and websocketpp in the same run. It prints one JSON line per run and then
# the tables with wsmanager's ratios.
#
#   scripts/bench.sh [--quick] [--micro] [--reps R] [--only SCENARIOS] [--impls SERVERS]
#                    [--client-threads T] [--json FILE]
#
#   --quick   smaller scenarios and one repetition (about 1 minute; the full run: about 5)
#   --micro   also run the Google Benchmark micro-benchmarks (wsmanager_bench_micro)
#   the rest  go to `wsmanager_bench run` (see bench/main.cpp)
#
# The machine is shared: the build runs with -j1 at niceness 19. To measure without other
# people's builds in the way, run this script itself at a high priority, e.g.
#   sudo nice -n -20 scripts/bench.sh
# The benchmark inherits it; the build still runs at 19. With the kernel's autogroups on
# (/proc/sys/kernel/sched_autogroup_enabled = 1, as on the bench machine) a nice value only
# ranks threads within one session, and every session gets an equal share of the CPU, so
# nice -n -20 alone does not keep another session's build off a core. While the benchmark
# runs, this script therefore also gives its own session's autogroup its niceness (root, or
# CAP_SYS_NICE), and puts the old value back when it ends. Compare ratios within one run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

micro=0
run_args=()
for arg in "$@"; do
    case "${arg}" in
        --micro) micro=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
            ;;
        *) run_args+=("${arg}") ;;
    esac
done

bash scripts/install-deps.sh --base

# Builds at niceness 19 whatever this script runs at (nice -n is relative to the current one).
build_nice=(nice -n "$((19 - $(nice)))")
targets=(--target wsmanager_bench)
"${build_nice[@]}" cmake -S . -B build/bench \
    -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
    -DWSMANAGER_BUILD_TESTS=OFF \
    -DWSMANAGER_BUILD_EXAMPLES=OFF \
    -DWSMANAGER_BUILD_BENCHMARKS=ON >/dev/null
if [[ ${micro} -eq 1 ]]; then
    if grep -q '^benchmark_DIR:PATH=.*-NOTFOUND' build/bench/CMakeCache.txt; then
        echo "bench.sh: Google Benchmark not found (Debian: libbenchmark-dev); no micro-benchmarks" >&2
        micro=0
    else
        targets+=(--target wsmanager_bench_micro)
    fi
fi
"${build_nice[@]}" cmake --build build/bench -j1 "${targets[@]}"

# Autogroups: the session's share of the CPU follows its autogroup's nice, not the process's.
autogroup_restore=""
if [[ -r /proc/self/autogroup ]]; then
    autogroup_nice="$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\)$/\1/p' /proc/self/autogroup)"
    if [[ -n "${autogroup_nice}" && "$(nice)" -lt "${autogroup_nice}" ]]; then
        if echo "$(nice)" >/proc/self/autogroup 2>/dev/null; then
            autogroup_restore="${autogroup_nice}"
            trap 'echo "${autogroup_restore}" >/proc/self/autogroup 2>/dev/null || true' EXIT
            echo "bench.sh: this session's autogroup runs at nice $(nice) while the benchmark runs" >&2
        else
            echo "bench.sh: cannot raise this session's autogroup priority: other sessions share the CPU equally" >&2
        fi
    fi
fi

status=0
build/bench/bench/wsmanager_bench run "${run_args[@]}" || status=$?
if [[ ${micro} -eq 1 ]]; then
    echo
    build/bench/bench/wsmanager_bench_micro || status=$?
fi
exit "${status}"
