#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer via cargo-fuzz): `fuzz/run.sh TARGET|all SECONDS`.
# Builds the targets, runs each for SECONDS on its saved corpus fuzz/corpus/<target>/,
# merges what it found into that corpus (minimised), and prints executions per target.
# Crashes land in fuzz/artifacts/<target>/ (not committed): see README.md for turning one
# into a regression test. FUZZ_TARGET_DIR: the build directory (default fuzz/target).
# Priority is the caller's: `nice -n 19 fuzz/run.sh all 600`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
all_targets=(http_params config profiles loggers session_lines agent_answer legacy_command authservice)

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: ${all_targets[*]})" >&2
    exit 64
}
[ $# -eq 2 ] || usage
case "$2" in '' | *[!0-9]*) usage ;; esac
seconds=$2
if [ "$1" = all ]; then
    targets=("${all_targets[@]}")
else
    found=no
    for known in "${all_targets[@]}"; do [ "$known" = "$1" ] && found=yes; done
    [ $found = yes ] || usage
    targets=("$1")
fi

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 69
}
target_dir=${FUZZ_TARGET_DIR:-$here/target}
# libFuzzer needs -Zsanitizer and -Cpasses=sancov-module; the stable toolchain takes them
# only with RUSTC_BOOTSTRAP (see README.md).
export RUSTC_BOOTSTRAP=1
if [ "$1" = all ]; then
    (cd "$here" && cargo fuzz build -a --target-dir "$target_dir")
else
    (cd "$here" && cargo fuzz build -a --target-dir "$target_dir" "$1")
fi
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus=$here/corpus/$target
    artifacts=$here/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    if [ -z "$(ls -A "$corpus")" ]; then
        python3 "$here/seed.py" >/dev/null
    fi
    before=$(ls "$corpus" | wc -l)
    artifacts_before=$(ls "$artifacts" | wc -l)
    found=$scratch/$target.new
    merged=$scratch/$target.merged
    log=$scratch/$target.log
    mkdir -p "$found" "$merged"
    echo "== $target: ${seconds}s from $before inputs" >&2
    status=0
    "$bin_dir/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$found" "$corpus" \
        >"$log" 2>&1 || status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(($(ls "$artifacts" | wc -l) - artifacts_before))
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "!! $target stopped with status $status; last lines:" >&2
        tail -40 "$log" >&2
    fi
    # The fewest inputs that cover every edge (set cover, hit counts ignored): -merge=1
    # with counters keeps three to six times as many files.
    "$bin_dir/$target" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$merged" "$corpus" "$found" \
        >"$log.merge" 2>&1
    if [ -n "$(ls -A "$merged")" ]; then
        rm -f "$corpus"/*
        cp "$merged"/* "$corpus"/
    fi
    after=$(ls "$corpus" | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    line="$target: ${executions:-0} executions in ${seconds}s, corpus $before -> $after files ($bytes bytes), new artifacts $crashes, exit $status"
    echo "$line" >&2
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
