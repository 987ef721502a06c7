#!/bin/bash
# Proxy launcher for benches/proxy/run.sh: HAProxy 2.6, mode tcp, balance roundrobin, plus the
# SSL-session-id stick table (payload_lv(43,1)) used in production.
#
#   launch-haproxy.sh start <listen_port> <backend_port>...   -> prints PID
#   launch-haproxy.sh stop  <pid>
#
# Knobs (environment):
#   HAPROXY_NBTHREAD  threads (default 1: one core, same as nginx worker_processes 1)
#   HAPROXY_STICK     1 = include the stick-table/inspect rules (default), 0 = plain roundrobin
#   HAPROXY_SPLICE    1 = add "option splice-auto" (default 0, HAProxy's default)
#   HAPROXY_DEFER     1 = "bind ... defer-accept" (default 0)
#   HAPROXY_LEARN     1 = add "tcp-response inspect-delay 5s" so store-response really learns
#                     from the ServerHello (default 1; without it HAProxy 2.2+ never does)
#   LAUNCHER_RUNDIR   where configs/logs go (default: a fresh temporary folder)
# The process runs in the foreground (-db) under setsid, so the printed PID is the
# single HAProxy process (all threads); it inherits the caller's CPU affinity.
set -u
BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
RUNDIR=${LAUNCHER_RUNDIR:-$(mktemp -d -t perf-harness-launchers.XXXXXX)}
ulimit -n 65536 2>/dev/null || true

die() { echo "launch-haproxy: $*" >&2; exit 1; }

case "${1:-}" in
start)
    [ $# -ge 3 ] || die "usage: $0 start <listen_port> <backend_port>..."
    listen=$2; shift 2
    mkdir -p "$RUNDIR" || die "cannot create $RUNDIR"
    dir=$(mktemp -d "$RUNDIR/haproxy.$listen.XXXXXX") || die "mktemp failed"
    cfg=$dir/haproxy.cfg
    {
        echo "global"
        echo "    nbthread ${HAPROXY_NBTHREAD:-1}"
        echo "    maxconn 8000"
        # Pipes take descriptors too: HAProxy's default maxpipes (maxconn/4) would need more
        # than a 20,000-descriptor hard limit allows.
        [ "${HAPROXY_SPLICE:-0}" = 1 ] && echo "    maxpipes 1000"
        echo "defaults"
        echo "    mode tcp"
        echo "    maxconn 8000"
        echo "    timeout connect 5s"
        echo "    timeout client 60s"
        echo "    timeout server 60s"
        [ "${HAPROXY_SPLICE:-0}" = 1 ] && echo "    option splice-auto"
        echo "frontend fe"
        if [ "${HAPROXY_DEFER:-0}" = 1 ]; then
            echo "    bind 127.0.0.1:$listen defer-accept"
        else
            echo "    bind 127.0.0.1:$listen"
        fi
        echo "    default_backend be"
        echo "backend be"
        echo "    balance roundrobin"
        if [ "${HAPROXY_STICK:-1}" = 1 ]; then
            echo "    stick-table type binary len 32 size 60k expire 60m"
            echo "    acl clienthello req_ssl_hello_type 1"
            echo "    acl serverhello rep_ssl_hello_type 2"
            echo "    tcp-request inspect-delay 5s"
            echo "    tcp-request content accept if clienthello"
            [ "${HAPROXY_LEARN:-1}" = 1 ] && echo "    tcp-response inspect-delay 5s"
            echo "    tcp-response content accept if serverhello"
            echo "    stick on payload_lv(43,1) if clienthello"
            echo "    stick store-response payload_lv(43,1) if serverhello"
        fi
        i=0
        for b in "$@"; do i=$((i+1)); echo "    server s$i 127.0.0.1:$b"; done
    } > "$cfg"
    "$BIN" -c -q -f "$cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; die "config check failed ($cfg)"; }
    setsid "$BIN" -db -f "$cfg" </dev/null >"$dir/haproxy.log" 2>&1 &
    pid=$!
    # bounded wait (5 s) for the listener
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/haproxy.log" >&2; die "haproxy exited"; }
        ss -Hltn "sport = :$listen" 2>/dev/null | grep -q . && { echo "$pid"; exit 0; }
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    die "haproxy did not listen on $listen within 5s"
    ;;
stop)
    pid=${2:?pid}
    [ "$(cat /proc/$pid/comm 2>/dev/null)" = haproxy ] || { echo "launch-haproxy: pid $pid is not haproxy (already gone?)" >&2; exit 0; }
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    ;;
*) die "usage: $0 start <listen_port> <backend_port>... | stop <pid>" ;;
esac
