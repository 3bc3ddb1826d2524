#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
#
# Runs wsmanager's libFuzzer harnesses (tests/fuzz/) for a set time each, one after another:
#
#   client_frame    one client text frame through the codec, and the answers built from it
#   action_parsers  every built-in action's parser on any fields; from_json + with_ack_request
#   handshake       the handshake gate: origin, query string, development / JWT identity
#   frame_router    the frame router, with recording session, services and host actions
#
# Builds them in build/fuzz with clang-14 and -fsanitize=fuzzer,address,undefined (tests,
# examples and benchmarks off; installs clang through scripts/install-fuzz-deps.sh), then
# runs each over a work copy of its corpus, build/fuzz/corpus-work/<target>: the inputs a run
# finds stay there (and a later run goes on from them) and never enter the repository unless
# --merge is given, which minimizes the committed corpus and the work copy together into
# tests/fuzz/corpus/<target>: libFuzzer's merge (-merge=1) in its set-cover form
# (-set_cover_merge=1) on edge coverage (-use_counters=0) picks the fewest inputs that cover
# every edge either covers; they replace the fuzzer-found files (named by SHA-1) there, while
# the hand-made seed-* and the finding-* reproducers always stay. So the committed corpus
# stays at a few hundred files however long the campaigns, and the work copy keeps the rest.
# Inputs are at most 64 KiB (-max_len=65536), the server's default max_message_size.
#
# Usage: scripts/fuzz.sh [--merge] [--keep-going] [SECONDS_PER_TARGET] [TARGET...]
#        (default: 60 seconds, every target)
#
# Prints per target the executions (libFuzzer's stat::number_of_executed_units) and a total.
# A crash, a sanitizer report, a leak, a timeout or running out of memory is kept in
# build/fuzz/artifacts/<target>/, reproduced once to print what it is, and makes the exit
# status non-zero; the other targets still run. A target stops at its first finding, unless
# --keep-going: then libFuzzer runs in fork mode (-fork=1 -ignore_crashes=1 ...), which
# restarts after each finding and fuzzes for the whole time (executions are then the fork
# mode's total, its last "#N:" line). Reproduce a finding with
# build/fuzz/wsmanager_fuzz_<target> <artifact>, minimize it with
# build/fuzz/wsmanager_fuzz_<target> -minimize_crash=1 -runs=100000 <artifact>.
#
# Everything runs under `nice -n 19` and builds with one job: the machine is shared. Full logs
# are in build/fuzz/logs/. A caller's own ASAN_OPTIONS / UBSAN_OPTIONS win.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

if [[ "$(nice)" -lt 19 ]]; then
    exec nice -n 19 bash "${BASH_SOURCE[0]}" "$@"
fi

all_targets=(client_frame action_parsers handshake frame_router)

usage() {
    echo "usage: scripts/fuzz.sh [--merge] [--keep-going] [SECONDS_PER_TARGET] [TARGET...]" >&2
    echo "       targets: ${all_targets[*]}" >&2
    exit 2
}

merge=0
keep_going=0
seconds=60
seconds_given=0
targets=()
for arg in "$@"; do
    case "${arg}" in
        --merge) merge=1 ;;
        --keep-going) keep_going=1 ;;
        -h | --help) usage ;;
        *)
            if [[ "${arg}" =~ ^[0-9]+$ && ${seconds_given} -eq 0 && ${#targets[@]} -eq 0 ]]; then
                seconds="${arg}"
                seconds_given=1
            elif [[ " ${all_targets[*]} " == *" ${arg} "* ]]; then
                targets+=("${arg}")
            else
                echo "fuzz.sh: unknown target or argument: ${arg}" >&2
                usage
            fi
            ;;
    esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
if [[ "${seconds}" -lt 1 ]]; then
    echo "fuzz.sh: SECONDS_PER_TARGET must be at least 1" >&2
    exit 2
fi

log() {
    echo "==> fuzz.sh: $*"
}

bash scripts/install-deps.sh --base
bash scripts/install-fuzz-deps.sh

build=build/fuzz
log "configure ${build} (clang-14, libFuzzer + ASan + UBSan)"
# -O1 -g1 as libFuzzer recommends; no -DNDEBUG, so RapidJSON's assertions stay on.
cmake -S tests/fuzz -B "${build}" \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
    -DWSMANAGER_FUZZ=ON \
    -DWSMANAGER_WARNINGS_AS_ERRORS=ON >/dev/null
log "build ${targets[*]}"
build_args=()
for target in "${targets[@]}"; do
    build_args+=(--target "wsmanager_fuzz_${target}")
done
cmake --build "${build}" -j1 "${build_args[@]}"

asan_defaults="detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1"
asan_defaults+=":strict_init_order=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-${asan_defaults}}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" && -x /usr/lib/llvm-14/bin/llvm-symbolizer ]]; then
    export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

count_files() {
    find "$1" -maxdepth 1 -type f | wc -l
}

# The findings libFuzzer left in a folder (not its slow-unit-* notes).
count_findings() {
    find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) | wc -l
}

# The findings written since the marker file $2 was made, in folder $1.
new_findings() {
    find "$1" -maxdepth 1 -type f -newer "$2" \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | sort
}

# libFuzzer's final statistic `name` from a log, or 0.
final_stat() {
    local value
    value="$(sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -n 1)"
    echo "${value:-0}"
}

# merge_corpus <target> <fuzzer> <committed corpus> <work copy>: see --merge above. Sets
# merge_summary.
merge_corpus() {
    local target="$1" fuzzer="$2" corpus="$3" work="$4"
    local fresh="${build}/merge/${target}" merge_log="${build}/logs/${target}-merge.log"
    local before file name
    before="$(count_files "${corpus}")"
    rm -rf "${fresh}" "${fresh}-artifacts"
    mkdir -p "${fresh}" "${fresh}-artifacts"
    # Crashes met while merging are the known finding-* files: their artifacts stay aside.
    "${fuzzer}" -set_cover_merge=1 -use_counters=0 -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="${fresh}-artifacts/" \
        "${fresh}" "${corpus}" "${work}" >"${merge_log}" 2>&1 || return 1
    # libFuzzer names what it merges by the SHA-1 of the content: skip copies of kept files.
    local -A kept=()
    for file in "${corpus}"/seed-* "${corpus}"/finding-*; do
        if [[ -f "${file}" ]]; then
            kept["$(sha1sum <"${file}" | cut -d' ' -f1)"]=1
        fi
    done
    find "${corpus}" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'finding-*' -delete
    for file in "${fresh}"/*; do
        [[ -f "${file}" ]] || continue
        name="$(basename "${file}")"
        if [[ -z "${kept[${name}]:-}" ]]; then
            cp "${file}" "${corpus}/"
        fi
    done
    merge_summary="${before} -> $(count_files "${corpus}") files"
}

mkdir -p "${build}/logs"
rows=()
total=0
failed=0
start_all=${SECONDS}
for target in "${targets[@]}"; do
    fuzzer="${build}/wsmanager_fuzz_${target}"
    corpus="tests/fuzz/corpus/${target}"
    work="${build}/corpus-work/${target}"
    artifacts="${build}/artifacts/${target}"
    run_log="${build}/logs/${target}.log"
    mkdir -p "${work}" "${artifacts}"
    # The work copy: the committed corpus, plus whatever earlier runs found.
    for file in "${corpus}"/*; do
        [[ -f "${file}" ]] || continue
        [[ -e "${work}/$(basename "${file}")" ]] || cp "${file}" "${work}/"
    done
    dict_args=()
    if [[ -f "tests/fuzz/dict/${target}.dict" ]]; then
        dict_args=("-dict=tests/fuzz/dict/${target}.dict")
    fi
    before_artifacts="$(count_findings "${artifacts}")"
    before_work="$(count_files "${work}")"
    marker="${build}/logs/${target}.start"
    touch "${marker}"
    mode_args=()
    if [[ ${keep_going} -eq 1 ]]; then
        mode_args=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    fi

    log "fuzz ${target} for ${seconds}s (corpus ${work}, ${before_work} inputs; log ${run_log})"
    start=${SECONDS}
    status=0
    "${fuzzer}" "${dict_args[@]}" "${mode_args[@]}" \
        -max_total_time="${seconds}" \
        -max_len=65536 \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="${artifacts}/" \
        "${work}" >"${run_log}" 2>&1 || status=$?
    elapsed=$((SECONDS - start))

    if [[ ${keep_going} -eq 1 ]]; then
        executions="$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "${run_log}" | tail -n 1)"
        executions="${executions:-0}"
    else
        executions="$(final_stat number_of_executed_units "${run_log}")"
    fi
    peak_rss="-"  # fork mode prints no final statistics
    if [[ ${keep_going} -eq 0 ]]; then
        peak_rss="$(final_stat peak_rss_mb "${run_log}")"
    fi
    total=$((total + executions))
    new_inputs=$(($(count_files "${work}") - before_work))
    new_artifacts=$(($(count_findings "${artifacts}") - before_artifacts))
    result="ok"
    if [[ ${status} -ne 0 || ${new_artifacts} -gt 0 ]]; then
        result="FAILED (exit ${status}, ${new_artifacts} new artifact(s) in ${artifacts})"
        failed=1
        # What each finding is: its first report lines, reproduced.
        while IFS= read -r finding; do
            echo "fuzz.sh: ${target}: ${finding}:" >&2
            timeout 60 "${fuzzer}" -timeout=10 -rss_limit_mb=2048 "${finding}" 2>&1 |
                grep -m4 -E "wsmanager fuzz:|ERROR: |runtime error:|^SUMMARY" |
                sed 's/^/    /' >&2 || true
        done < <(new_findings "${artifacts}" "${marker}")
        if [[ ${status} -ne 0 && ${new_artifacts} -eq 0 ]]; then
            tail -n 20 "${run_log}" >&2
        fi
    fi

    if [[ ${merge} -eq 1 ]]; then
        log "merge ${work} into ${corpus}"
        merge_summary="unchanged (merge failed)"
        merge_corpus "${target}" "${fuzzer}" "${corpus}" "${work}" || {
            echo "fuzz.sh: merge of ${target} failed; see ${build}/logs/${target}-merge.log" >&2
            failed=1
        }
        result+=", corpus ${merge_summary}"
    fi
    rows+=("$(printf '%-15s %12s execs %6ss %8s exec/s %5s MB %6s new inputs  %s' \
        "${target}" "${executions}" "${elapsed}" "$((executions / (elapsed > 0 ? elapsed : 1)))" \
        "${peak_rss}" "${new_inputs}" "${result}")")
done

log "SUMMARY ($((SECONDS - start_all))s, ${seconds}s per target)"
for row in "${rows[@]}"; do
    echo "    ${row}"
done
echo "    total           $(printf '%12s' "${total}") execs"
for target in "${targets[@]}"; do
    echo "    corpus ${target}: $(count_files "tests/fuzz/corpus/${target}") files," \
        "$(du -sh "tests/fuzz/corpus/${target}" | cut -f1); work copy:" \
        "$(count_files "${build}/corpus-work/${target}") files"
done
if [[ ${failed} -ne 0 ]]; then
    log "FAILED: see the reports above and ${build}/artifacts/"
fi
exit "${failed}"
