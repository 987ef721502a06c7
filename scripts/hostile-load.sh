#!/bin/sh
# Issue 17 §3 figures at full scale: the slowloris in inspect and the idle-connection memory,
# tether and HAProxy 2.6 side by side, with COUNT clients each (default 10,000). The test process
# holds both ends of every connection, so the descriptor limit is raised first (run as root, or
# with a hard limit of at least 4 x COUNT).
#
#   scripts/hostile-load.sh [COUNT]
set -eu
count=${1:-10000}
ulimit -n $((count * 4 + 1024))
cd "$(dirname "$0")/.."
HOSTILE_SLOWLORIS=$count HOSTILE_IDLE_CONNS=$count CARGO_BUILD_JOBS=1 nice \
    cargo test -p tether --test hostile_load -- --nocapture --test-threads=1 2>&1 |
    grep -E "slowloris (tether|haproxy)|idle memory|test result|panicked|KiB|ms during"
