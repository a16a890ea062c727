#!/usr/bin/env bash
# Builds the fuzz targets with cargo-afl and runs each for SECONDS (default 10) from the
# committed seed corpus; fails when AFL++ saved a crash or a hang. Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
cargo afl build --quiet
status=0
for target in jwt claims_request sdk_message soap personal_data saml_request paos; do
    out="out/$target"
    rm -rf "$out"
    mkdir -p out
    cargo afl fuzz -i "corpus/$target" -o "$out" -V "$seconds" "target/debug/$target" >"out/$target.log" 2>&1 || {
        echo "$target: afl-fuzz failed:"; tail -20 "out/$target.log"; status=1; continue;
    }
    stats="$out/default/fuzzer_stats"
    execs=$(awk -F': ' '/^execs_done/ {print $2}' "$stats")
    crashes=$(awk -F': ' '/^saved_crashes/ {print $2}' "$stats")
    hangs=$(awk -F': ' '/^saved_hangs/ {print $2}' "$stats")
    echo "$target: $execs executions, $crashes crashes, $hangs hangs in ${seconds}s"
    if [ "$crashes" != "0" ] || [ "$hangs" != "0" ]; then
        echo "  inputs are in fuzz/$out/default/crashes and hangs"; status=1
    fi
done
exit $status
