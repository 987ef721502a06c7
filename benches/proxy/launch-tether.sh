#!/bin/bash
# Proxy launcher: tether, quick form, balance roundrobin, native affinity chain
# session-id,ticket (learned from the ServerHello / NewSessionTicket as HAProxy's
# stick store-response does with tcp-response inspect-delay).
#
#   launch-tether.sh start <listen_port> <backend_port>...   -> prints PID
#   launch-tether.sh stop  <pid>
#
# Knobs (environment):
#   TETHER_BIN       the binary (default: $CARGO_TARGET_DIR or <repo>/target, release/tether)
#   TETHER_THREADS   worker threads (default 1, same as HAProxy nbthread 1)
#   TETHER_DEFER     1 = --defer-accept (TCP_DEFER_ACCEPT on the listener)
#   TETHER_MAX_PIPES splicing pipes (default: tether's, a quarter of maxconn; 0 = never splice)
#   TETHER_PIPE_SIZE each splicing pipe's capacity, e.g. 256k (default: the system's, 64k)
#   TETHER_AFFINITY  affinity chain (default session-id,ticket; "none" = plain roundrobin)
#   TETHER_LOG       log filter (default warn: no per-connection lines, as HAProxy without
#                    a `log` directive; set info to include connection logging in the cost)
#   LAUNCHER_RUNDIR  where logs go (default: a fresh temporary folder)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${TETHER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tether}
RUNDIR=${LAUNCHER_RUNDIR:-$(mktemp -d -t tether-bench-launchers.XXXXXX)}
ulimit -n 65536 2>/dev/null || true

die() { echo "launch-tether: $*" >&2; exit 1; }

case "${1:-}" in
start)
    [ $# -ge 3 ] || die "usage: $0 start <listen_port> <backend_port>..."
    [ -x "$BIN" ] || die "no tether binary at $BIN (cargo build --release -p tether, or set TETHER_BIN)"
    listen=$2; shift 2
    mkdir -p "$RUNDIR" || die "cannot create $RUNDIR"
    dir=$(mktemp -d "$RUNDIR/tether.$listen.XXXXXX") || die "mktemp failed"
    args=(run --listen "127.0.0.1:$listen" --balance roundrobin --threads "${TETHER_THREADS:-1}")
    [ "${TETHER_DEFER:-0}" = 1 ] && args+=(--defer-accept)
    [ -n "${TETHER_MAX_PIPES:-}" ] && args+=(--max-pipes "$TETHER_MAX_PIPES")
    [ -n "${TETHER_PIPE_SIZE:-}" ] && args+=(--pipe-size "$TETHER_PIPE_SIZE")
    aff=${TETHER_AFFINITY:-session-id,ticket}
    [ "$aff" = none ] || args+=(--affinity "$aff")
    for b in "$@"; do args+=(--server "127.0.0.1:$b"); done
    echo "$BIN ${args[*]}" > "$dir/cmdline"
    TETHER_LOG=${TETHER_LOG:-warn} setsid "$BIN" "${args[@]}" </dev/null >"$dir/tether.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do       # bounded wait (5 s) for the listener
        kill -0 "$pid" 2>/dev/null || { cat "$dir/tether.log" >&2; die "tether exited"; }
        ss -Hltn "sport = :$listen" 2>/dev/null | grep -q . && { echo "$pid"; exit 0; }
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    die "tether did not listen on $listen within 5s"
    ;;
stop)
    pid=${2:?pid}
    case "$(cat /proc/$pid/comm 2>/dev/null)" in tether*) ;; *) echo "launch-tether: pid $pid is not tether (already gone?)" >&2; exit 0 ;; esac
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    ;;
*) die "usage: $0 start <listen_port> <backend_port>... | stop <pid>" ;;
esac
