#!/bin/bash
# Launcher wrapper: starts the launcher named by PERF_WRAPS (another launcher of this folder's
# protocol) and records the proxy's CPU samples with `perf record -e cpu-clock` while it runs,
# kernel and user alike, one file per start in PERF_DIR (default /tmp/tether-cpu-split).
# `cpu_split.py PERF_DIR` then says how much of each proxy's CPU was the kernel's.
#
#   PERF_WRAPS=benches/proxy/launch-haproxy.sh launch-perf.sh start <listen_port> <backend_port>...
#   PERF_WRAPS=... launch-perf.sh stop <pid>
#
# perf-compare.sh takes one executable per proxy, so give it one-line wrappers, e.g.
#   printf '#!/bin/sh\nPERF_WRAPS=%s exec %s "$@"\n' "$PWD/benches/proxy/launch-haproxy.sh" \
#       "$PWD/benches/proxy/launch-perf.sh" > /tmp/perf-haproxy.sh; chmod +x /tmp/perf-haproxy.sh
# Needs perf (apt-get install -y linux-perf). Sampling at 999 Hz costs the proxy well under 1 %.
set -u
WRAPS=${PERF_WRAPS:?set PERF_WRAPS to the launcher to wrap}
DIR=${PERF_DIR:-/tmp/tether-cpu-split}
NAME=$(basename "$WRAPS" .sh); NAME=${NAME#launch-}
command -v perf >/dev/null || { echo "launch-perf: no perf (apt-get install -y linux-perf)" >&2; exit 1; }
mkdir -p "$DIR"
case "${1:-}" in
start)
    pid=$("$WRAPS" "$@") || exit 1
    nohup perf record -q -e cpu-clock -F 999 -o "$DIR/$NAME-$pid.data" -p "$pid" >/dev/null 2>&1 &
    echo $! > "$DIR/$NAME-$pid.perfpid"
    sleep 0.5
    echo "$pid" ;;
stop)
    if [ -f "$DIR/$NAME-$2.perfpid" ]; then
        kill -INT "$(cat "$DIR/$NAME-$2.perfpid")" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$(cat "$DIR/$NAME-$2.perfpid")" 2>/dev/null || break
            sleep 0.2
        done
        rm -f "$DIR/$NAME-$2.perfpid"
    fi
    exec "$WRAPS" "$@" ;;
*) echo "usage: PERF_WRAPS=LAUNCHER $0 start <listen_port> <backend_port>... | stop <pid>" >&2; exit 2 ;;
esac
