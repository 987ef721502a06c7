#!/bin/sh
# Issue 17 §3 figures at full scale: the slowloris in inspect and the idle-connection memory,
# tether and HAProxy 2.6 side by side, with COUNT clients each (default 10,000). The soft
# descriptor limit is raised to the hard one (at least 2 x COUNT + 1,000 needed: above 4,000 the
# idle test serves its backends from a child process so no process holds both ends).
#
#   scripts/hostile-load.sh [COUNT]
set -eu
count=${1:-10000}
ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
HOSTILE_SLOWLORIS=$count HOSTILE_IDLE_CONNS=$count CARGO_BUILD_JOBS=1 nice \
    cargo test -p tether --test hostile_load -- --nocapture --test-threads=1 2>&1 |
    grep -E "slowloris (tether|haproxy)|idle memory|test result|panicked|KiB|ms during"
