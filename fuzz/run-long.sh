#!/usr/bin/env bash
# Long fuzz runs without cargo-fuzz (the stable toolchain is enough): builds the targets with the
# instrumentation cargo-fuzz adds (sancov counters, `cfg(fuzzing)`, debug assertions; no ASan,
# the code under test has no `unsafe`), then runs each for SECONDS (default 360) at nice 19, one
# at a time, keeping new inputs in corpus-run/ and crashes in artifacts/<target>/.
#
#   fuzz/run-long.sh [SECONDS] [TARGET...]     (default: the network-facing core targets)
#
# FUZZ_PROFILE picks the cargo profile (default `release`; CI uses the quicker `fuzz-ci`);
# FUZZ_RUNS=N stops a target after N executions if that comes before SECONDS. The daemon's
# targets (haproxy_cfg, stats_request) and the simulator's (scenario_toml) build with the
# features they need.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-360}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_hello proxy_header peers_session server_flight ticket_keys)
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bins=()
features=()
for t in "${targets[@]}"; do
    bins+=(--bin "$t")
    case "$t" in
    haproxy_cfg | stats_request) features+=(daemon) ;;
    scenario_toml) features+=(sim) ;;
    esac
done
[ ${#features[@]} -eq 0 ] || bins+=(--features "$(IFS=,; echo "${features[*]}")")
runs=()
[ -z "${FUZZ_RUNS:-}" ] || runs=(-runs="$FUZZ_RUNS")
profile=${FUZZ_PROFILE:-release}
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} nice cargo build --profile "$profile" \
    --target x86_64-unknown-linux-gnu "${bins[@]}"
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus-run/$t" "artifacts/$t"
    nice -n 19 "target/x86_64-unknown-linux-gnu/$profile/$t" "corpus-run/$t" "corpus/$t" \
        "${runs[@]}" -max_total_time="$secs" -max_len=20000 -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 2>&1 | grep -E "^Done|stat::number_of_executed_units|SUMMARY|panicked" |
        sed "s/^/$t: /" || status=1
    [ -z "$(ls -A "artifacts/$t")" ] || { echo "$t: crash inputs in fuzz/artifacts/$t" >&2; status=1; }
done
exit "$status"
