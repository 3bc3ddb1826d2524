#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Builds wsmanager and runs its tests, as CI does (.ci/run):
#
#   ci    build/ci    -O2, warnings as errors, every test (package tests included)
#   asan  build/asan  AddressSanitizer + UndefinedBehaviorSanitizer (-O0), every test but
#                     `package` and `browser`
#   tsan  build/tsan  ThreadSanitizer (-O1), the tests labelled `threaded` (but not `package`)
#
# Compile time decides the flags: a translation unit that instantiates the manager compiles
# websocketpp and Asio, and on 2 cores full debug information (-g) costs half again as much
# as -O2 alone, and ASan+UBSan at -O1 three times as much as at -O0. So the ci build has no
# debug information, the sanitizer builds have line tables (-g1: enough for their stack
# traces), and the ASan+UBSan build is not optimized.
#
# Usage: scripts/test.sh [ci] [asan] [tsan]     (no argument: all three, in that order)
#
# Every stage runs even when an earlier one failed; the exit status is non-zero if any failed.
# Build folders are reused, so a second run is incremental.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

stages=("$@")
if [[ ${#stages[@]} -eq 0 ]]; then
    stages=(ci asan tsan)
fi
for stage in "${stages[@]}"; do
    case "${stage}" in
        ci | asan | tsan) ;;
        *)
            echo "usage: scripts/test.sh [ci] [asan] [tsan]" >&2
            exit 2
            ;;
    esac
done

bash scripts/install-deps.sh

build_jobs=2
ctest_args=(--output-on-failure -j2 --timeout 300 --no-tests=error)

# Sanitizer settings; a caller's own *SAN_OPTIONS win.
asan_defaults="detect_leaks=1:detect_stack_use_after_return=1"
asan_defaults+=":check_initialization_order=1:strict_init_order=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-${asan_defaults}}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# atexit_sleep_ms: TSan waits 1 s at exit by default, longer than most tests run.
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0}"

log() {
    echo "==> test.sh: $*"
}

# configure_and_build <build dir> <cmake arguments...>
# Builds every target, or only the targets listed in ${build_targets[@]} when it is set.
configure_and_build() {
    local dir="$1"
    shift
    log "configure ${dir}"
    cmake -S . -B "${dir}" "$@" || return 1
    log "build ${dir}"
    local -a target_args=()
    local target
    for target in "${build_targets[@]}"; do
        target_args+=(--target "${target}")
    done
    cmake --build "${dir}" -j"${build_jobs}" "${target_args[@]}" || return 1
}
build_targets=()

stage_ci() {
    configure_and_build build/ci \
        -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
        -DWSMANAGER_WARNINGS_AS_ERRORS=ON \
        -DWSMANAGER_SANITIZE= || return 1
    log "ctest build/ci"
    ctest --test-dir build/ci "${ctest_args[@]}" || return 1
}

stage_asan() {
    # The browser tests drive the same servers the example smoke tests run, so under ASan
    # the smoke tests stand for them; benchmarks and the header check are build-only.
    configure_and_build build/asan \
        -DCMAKE_BUILD_TYPE=Debug \
        "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" \
        -DWSMANAGER_BUILD_BENCHMARKS=OFF \
        -DWSMANAGER_HEADER_CHECK=OFF \
        -DWSMANAGER_BROWSER_TESTS=OFF \
        -DWSMANAGER_SANITIZE=address,undefined || return 1
    log "ctest build/asan"
    ctest --test-dir build/asan "${ctest_args[@]}" -LE "package|browser|soak" || return 1
}

# Prints the command prefix ThreadSanitizer needs on this machine: nothing, or `setarch <arch> -R`
# when the kernel's address-space randomisation leaves TSan (g++ 12's libtsan) with an
# "unexpected memory mapping" (vm.mmap_rnd_bits above 28). Fails if TSan cannot run at all.
tsan_launcher() {
    local compiler="$1" probe_dir="$2"
    mkdir -p "${probe_dir}"
    printf '%s\n' '#include <thread>' 'int shared = 0;' \
        'int main() { std::thread t([] { shared = 1; }); t.join(); return shared - 1; }' \
        >"${probe_dir}/tsan_probe.cpp"
    "${compiler}" -fsanitize=thread -O1 -pthread "${probe_dir}/tsan_probe.cpp" \
        -o "${probe_dir}/tsan_probe" || return 1
    local output
    if output="$("${probe_dir}/tsan_probe" 2>&1)"; then
        return 0
    fi
    if grep -q "unexpected memory mapping" <<<"${output}"; then
        local -a setarch_cmd=(setarch "$(uname -m)" -R)
        if output="$("${setarch_cmd[@]}" "${probe_dir}/tsan_probe" 2>&1)"; then
            echo "${setarch_cmd[*]}"
            return 0
        fi
    fi
    echo "test.sh: ThreadSanitizer cannot run on this machine:" >&2
    echo "${output}" >&2
    return 1
}

stage_tsan() {
    # Only the multi-threaded tests run here, so only what they need is built (tests of
    # targets not built stay unlabelled, so -L threaded leaves them out).
    local -a build_targets=(wsmanager_integration_tests)
    # The cluster's tests, when the Redis backplane is built (hiredis is there: the
    # installers put it there).
    if [[ -f /usr/include/hiredis/async.h ]]; then
        build_targets+=(wsmanager_cluster_tests wsmanager_cluster_node_tests)
    fi
    configure_and_build build/tsan \
        -DCMAKE_BUILD_TYPE=Debug \
        "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
        -DWSMANAGER_BUILD_EXAMPLES=OFF \
        -DWSMANAGER_BUILD_BENCHMARKS=OFF \
        -DWSMANAGER_HEADER_CHECK=OFF \
        -DWSMANAGER_BROWSER_TESTS=OFF \
        -DWSMANAGER_SANITIZE=thread || return 1
    local compiler launcher
    compiler="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build/tsan/CMakeCache.txt)"
    launcher="$(tsan_launcher "${compiler:-c++}" build/tsan/tsan-probe)" || return 1
    if [[ -n "${launcher}" ]]; then
        log "ThreadSanitizer needs ASLR off here: running ctest under '${launcher}'"
    fi
    log "ctest build/tsan (label threaded)"
    # ${launcher} is unquoted on purpose: empty, or `setarch <arch> -R`.
    # shellcheck disable=SC2086
    ${launcher} ctest --test-dir build/tsan "${ctest_args[@]}" -L threaded -LE package || return 1
}

results=()
failed=0
start_all=${SECONDS}
for stage in "${stages[@]}"; do
    start=${SECONDS}
    log "stage ${stage}"
    status=0
    case "${stage}" in
        ci) stage_ci || status=$? ;;
        asan) stage_asan || status=$? ;;
        tsan) stage_tsan || status=$? ;;
    esac
    if [[ ${status} -eq 0 ]]; then
        results+=("${stage} PASS ($((SECONDS - start))s)")
    else
        results+=("${stage} FAIL ($((SECONDS - start))s)")
        failed=1
    fi
done

summary=""
for result in "${results[@]}"; do
    summary+="${summary:+, }${result}"
done
if [[ ${failed} -eq 0 ]]; then
    log "SUMMARY: all passed in $((SECONDS - start_all))s: ${summary}"
else
    log "SUMMARY: FAILED after $((SECONDS - start_all))s: ${summary}"
fi
exit "${failed}"
