#!/usr/bin/env bash
# Runs every core fuzz target for SECONDS seconds each (default 60) on its seed corpus, keeping
# new inputs in corpus-run/ (the committed seeds stay small); crashes land in artifacts/.
# Needs nightly and cargo-fuzz: rustup toolchain install nightly; cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
status=0
for t in client_hello proxy_header peers_session server_flight native_toml ticket_keys; do
    mkdir -p "corpus-run/$t"
    cargo +nightly fuzz run -O "$t" "corpus-run/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=20000 2>&1 |
        grep -E "^(#[0-9]+ *DONE|Done|==[0-9]+==|SUMMARY)" | sed "s/^/$t: /" || status=1
    # A crash leaves an input in artifacts/: fail so that CI shows it.
    if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
        echo "$t: crash inputs in fuzz/artifacts/$t" >&2
        status=1
    fi
done
# The daemon-backed targets build the whole daemon (or the simulator) under the sanitizer:
#   cargo +nightly fuzz run -O --features daemon haproxy_cfg   (and stats_request)
#   cargo +nightly fuzz run -O --features sim scenario_toml
exit "$status"
