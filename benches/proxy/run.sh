#!/bin/bash
# benches/proxy/run.sh — tether vs HAProxy 2.6 side by side, in one run, on loopback.
#
# usage: benches/proxy/run.sh [-r REPS] [-d SECONDS] [-t "TESTS"] [-o OUTDIR] [LAUNCHER...]
#
# Default launchers: launch-haproxy.sh (the reference for ratios) and launch-tether.sh, both
# with one worker thread and stickiness on (HAProxy: stick-table + stick on payload_lv(43,1) +
# tcp-response inspect-delay; tether: affinity session-id,ticket). A "direct" target (client
# straight to the backend) is measured too (NO_DIRECT=1 to skip).
#
#   LAUNCHER start <listen_port> <backend_port>...  -> prints the PID of a TCP roundrobin
#                                                      balancer on 127.0.0.1:<listen_port>
#   LAUNCHER stop <pid>
#
# Targets are measured alternately, the order rotated every repetition, so drift on the shared
# machine hits all of them alike. Defaults: 2 repetitions of 10 s per test and target.
#
# Tests (default all): iperf1 iperf4 shortconn keepalive tls
#   iperf1/iperf4  iperf3 -P1 / -P4 through the proxy to an iperf3 server   (Gbit/s)
#   shortconn      wrk, "Connection: close", tiny HTTP req/resp to nginx     (conn/s)
#   keepalive      wrk, keep-alive, tiny HTTP req/resp to nginx              (req/s)
#   tls            wrk over https, "Connection: close", full TLS1.3 handshake
#                  per connection (backends disable session cache+tickets)    (handshakes/s)
# For every proxied measurement: proxy CPU time (utime+stime of the launcher's PID and all its
# descendants, /proc/<pid>/stat, before/after) and peak RSS (VmHWM summed over the process
# tree, HWM reset via clear_refs before the load).
#
# CPU placement (env): LOAD_CPUS (client), BACKEND_CPUS (nginx+iperf3 servers), PROXY_CPUS
# (launcher run under taskset, every thread re-pinned after start). Default: proxy alone on
# CPU 1, client+backends on CPU 0.
#
# Noise: before each measurement wait (bounded) for the box to be quiet: QUIET_PCT (20),
# QUIET_WAIT (4 s), QUIET_BUDGET (40 s per run). Foreign CPU during each run is reported (oth%).
# Other env: CONNS (wrk connections, default 50), WRK_THREADS (1), BASE_PORT (21000).
# Everything listens on 127.0.0.1 only; every wait/loop is time-bounded; everything started is
# stopped by PID on exit (also on Ctrl-C).
# Outputs in OUTDIR: report.txt (full), report.md (markdown table), raw.tsv, raw/, env.txt.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)

REPS=${REPS:-2}
DUR=${DUR:-10}
TESTS=${TESTS:-"iperf1 iperf4 shortconn keepalive tls"}
OUTDIR=${OUTDIR:-}
while getopts "r:d:t:o:h" opt; do
    case $opt in
        r) REPS=$OPTARG ;; d) DUR=$OPTARG ;; t) TESTS=$OPTARG ;; o) OUTDIR=$OPTARG ;;
        *) sed -n '2,38p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND-1))
[ $# -ge 1 ] || set -- "$HERE/launch-haproxy.sh" "$HERE/launch-tether.sh"
for tool in wrk iperf3 nginx haproxy openssl taskset ss python3; do
    command -v $tool >/dev/null || { echo "missing $tool (apt-get install -y wrk iperf3 nginx haproxy)" >&2; exit 2; }
done
LAUNCHERS=()
for l in "$@"; do
    [ -x "$l" ] || { echo "not executable: $l" >&2; exit 2; }
    LAUNCHERS+=("$(cd "$(dirname "$l")" && pwd)/$(basename "$l")")
done

NCPU=$(nproc)
LOAD_CPUS=${LOAD_CPUS:-0}
BACKEND_CPUS=${BACKEND_CPUS:-0}
PROXY_CPUS=${PROXY_CPUS:-$([ "$NCPU" -ge 2 ] && echo 1 || echo 0)}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-1}
BASE_PORT=${BASE_PORT:-21000}
NO_DIRECT=${NO_DIRECT:-0}
SETTLE=${SETTLE:-0.3}

P_IPERF=$((BASE_PORT+201))
P_HTTP1=$((BASE_PORT+81)); P_HTTP2=$((BASE_PORT+82))
P_TLS1=$((BASE_PORT+443)); P_TLS2=$((BASE_PORT+444))
P_PROXY0=$((BASE_PORT+1000))          # proxy i listens on P_PROXY0 + i

[ -n "$OUTDIR" ] || OUTDIR=${TMPDIR:-/tmp}/tether-bench-proxy.$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUTDIR/raw" "$OUTDIR/backend" || exit 1
export LAUNCHER_RUNDIR=$OUTDIR/launchers
RAW=$OUTDIR/raw.tsv
LOG=$OUTDIR/run.log

log() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }

# ---------------------------------------------------------------- cleanup (by PID only)
BACKEND_PIDS=(); BACKEND_TREE=()
CUR_LAUNCHER=""; CUR_PID=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$CUR_PID" ]; then "$CUR_LAUNCHER" stop "$CUR_PID" >/dev/null 2>&1; fi
    for p in "${BACKEND_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${BACKEND_PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

wait_listen() {  # port, pid, seconds
    local n=$(( ${3:-5} * 20 ))
    for _ in $(seq 1 $n); do
        kill -0 "$2" 2>/dev/null || return 1
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# ---------------------------------------------------------------- process-tree accounting
tree_pids() {  # root pid -> root + all descendants (ppid scan; no /proc/*/task/*/children here)
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
        { l = $0; sub(/.*\) /, "", l); split(l, a, " "); pp[$1] = a[2] }
        END { if (!(root in pp)) exit; want[root] = 1; changed = 1
              while (changed) { changed = 0; for (p in pp) if (!(p in want) && (pp[p] in want)) { want[p] = 1; changed = 1 } }
              for (p in want) print p }'
}
tree_ticks() {  # sum utime+stime (clock ticks) over pids
    local t=0 line r
    for p in "$@"; do
        read -r line < /proc/$p/stat 2>/dev/null || continue
        r=${line##*) }; r=($r); t=$((t + r[11] + r[12]))   # fields 14,15: utime, stime
    done
    echo $t
}
tree_hwm_kb() { local s=0 v; for p in "$@"; do v=$(awk '/^VmHWM:/{print $2}' /proc/$p/status 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
tree_reset_hwm() { for p in "$@"; do echo 5 > /proc/$p/clear_refs 2>/dev/null; done; }
pin_tree() { for p in "$@"; do for t in /proc/$p/task/*; do taskset -p -c "$PROXY_CPUS" "${t##*/}" >/dev/null 2>&1; done; done; }
self_child_ticks() { local line r; read -r line < /proc/$$/stat; r=${line##*) }; r=($r); echo $((r[13] + r[14])); }  # cutime+cstime of reaped children (= the client)
cpustat() { awk '/^cpu[0-9]/ {b=$2+$3+$4+$7+$8; printf "%s:%d:%d:%d ", $1, b, b+$5+$6+$9, $9}' /proc/stat; }  # cpuN:busy:total:steal

# Other processes on the box steal CPU from the measurement. Before each measurement wait
# (bounded: QUIET_WAIT s per measurement, QUIET_BUDGET s per run) until the whole machine
# is below QUIET_PCT busy (percent of one core) over a 0.25 s window.
QUIET_PCT=${QUIET_PCT:-20}; QUIET_WAIT=${QUIET_WAIT:-4}; QUIET_BUDGET=${QUIET_BUDGET:-40}
GATE_SPENT_MS=0
busy_pct_window() {  # total busy (% of one core) over $1 seconds
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    echo "$a $b $NCPU" | awk '{dt=$4-$2; print (dt>0) ? int(100*$5*($3-$1)/dt) : 0}'
}
quiet_gate() {  # sets GATE_BUSY (last sample) and GATE_MS (time waited)
    local start=$(date +%s%N) now
    GATE_BUSY=$(busy_pct_window 0.25)
    while [ "$GATE_BUSY" -gt "$QUIET_PCT" ]; do
        now=$(date +%s%N)
        [ $(( (now - start) / 1000000 )) -ge $((QUIET_WAIT * 1000)) ] && break
        [ $(( GATE_SPENT_MS + (now - start) / 1000000 )) -ge $((QUIET_BUDGET * 1000)) ] && break
        GATE_BUSY=$(busy_pct_window 0.25)
    done
    GATE_MS=$(( ($(date +%s%N) - start) / 1000000 ))
    GATE_SPENT_MS=$((GATE_SPENT_MS + GATE_MS))
}

# ---------------------------------------------------------------- backends
setup_backends() {
    local bd=$OUTDIR/backend
    for p in $P_IPERF $P_HTTP1 $P_HTTP2 $P_TLS1 $P_TLS2; do
        port_free $p || { log "port $p busy — set BASE_PORT"; exit 1; }
    done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj /CN=localhost -keyout "$bd/key.pem" -out "$bd/cert.pem" >/dev/null 2>&1 || { log "cert gen failed"; exit 1; }
    chmod 755 "$bd"
    cat > "$bd/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid $bd/nginx.pid;
error_log $bd/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    client_body_temp_path $bd/tmp;
    server {
        listen 127.0.0.1:$P_HTTP1 backlog=4096;
        listen 127.0.0.1:$P_HTTP2 backlog=4096;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:$P_TLS1 ssl backlog=4096;
        listen 127.0.0.1:$P_TLS2 ssl backlog=4096;
        ssl_certificate     $bd/cert.pem;
        ssl_certificate_key $bd/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;      # force a full handshake on every connection
        ssl_session_tickets off;
        location / { return 200 "ok\n"; }
    }
}
NGX
    ulimit -n 65536 2>/dev/null
    setsid taskset -c "$BACKEND_CPUS" nginx -p "$bd" -e "$bd/error.log" -c "$bd/nginx.conf" </dev/null >"$bd/nginx.out" 2>&1 &
    BACKEND_PIDS+=($!)
    wait_listen $P_TLS2 $! 5 || { log "backend nginx failed"; cat "$bd/error.log" "$bd/nginx.out" >&2; exit 1; }
    setsid taskset -c "$BACKEND_CPUS" iperf3 -s -B 127.0.0.1 -p $P_IPERF </dev/null >"$bd/iperf3.out" 2>&1 &
    BACKEND_PIDS+=($!)
    wait_listen $P_IPERF $! 5 || { log "iperf3 server failed"; exit 1; }
    # sanity checks
    curl -fsS "http://127.0.0.1:$P_HTTP2/" >/dev/null 2>&1 || wrk -t1 -c1 -d1s "http://127.0.0.1:$P_HTTP2/" >/dev/null \
        || { log "http backend check failed"; exit 1; }
    mapfile -t BACKEND_TREE < <(for p in "${BACKEND_PIDS[@]}"; do tree_pids "$p"; done)
    log "backends: nginx http :$P_HTTP1,:$P_HTTP2  https :$P_TLS1,:$P_TLS2 (ECDSA P-256, no resumption)  iperf3 :$P_IPERF  pids ${BACKEND_PIDS[*]}"
}

cat > "$OUTDIR/wrk-report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d p50_us=%d p99_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
LUA
# same reporter, plus "Connection: close" (wrk's -H needs "Name: value" with a space,
# which does not survive word splitting, so set it from Lua)
{ echo 'wrk.headers["Connection"] = "close"'; cat "$OUTDIR/wrk-report.lua"; } > "$OUTDIR/wrk-close.lua"

# ---------------------------------------------------------------- one measurement
backends_for() {
    case $1 in
        iperf1|iperf4) echo $P_IPERF ;;       # iperf3 needs control+data on the same server
        shortconn|keepalive) echo "$P_HTTP1 $P_HTTP2" ;;
        tls) echo "$P_TLS1 $P_TLS2" ;;
    esac
}
client_cmd() {  # test port -> command line
    local tl=$((DUR + 20))
    local W="timeout $tl taskset -c $LOAD_CPUS wrk -t$WRK_THREADS -c$CONNS -d${DUR}s --timeout 5s"
    case $1 in
        iperf1)    echo "timeout $tl taskset -c $LOAD_CPUS iperf3 -c 127.0.0.1 -p $2 -t $DUR -P 1 -J" ;;
        iperf4)    echo "timeout $tl taskset -c $LOAD_CPUS iperf3 -c 127.0.0.1 -p $2 -t $DUR -P 4 -J" ;;
        shortconn) echo "$W -s $OUTDIR/wrk-close.lua http://127.0.0.1:$2/" ;;
        keepalive) echo "$W -s $OUTDIR/wrk-report.lua http://127.0.0.1:$2/" ;;
        tls)       echo "$W -s $OUTDIR/wrk-close.lua https://127.0.0.1:$2/" ;;
    esac
}

measure() {  # rep test target_index(-1 = direct)
    local rep=$1 test=$2 ti=$3 name port pids=() pid="" out
    if [ "$ti" -lt 0 ]; then
        name=direct
        port=$(backends_for "$test"); port=${port%% *}
    else
        local L=${LAUNCHERS[$ti]}
        name=$(basename "$L"); name=${name%.sh}
        port=$((P_PROXY0 + ti * 50))
        for _ in $(seq 1 49); do port_free $port && break; port=$((port + 1)); done   # bounded search
        port_free $port || { log "no free proxy port near $((P_PROXY0 + ti * 50))"; return 1; }
        pid=$(timeout 30 taskset -c "$PROXY_CPUS" "$L" start $port $(backends_for "$test") 2>>"$LOG" | tail -n1)
        if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
            log "$name start failed for $test (got '$pid')"; return 1
        fi
        CUR_LAUNCHER=$L; CUR_PID=$pid
        wait_listen $port $pid 5 || { log "$name: not listening on $port"; }
        mapfile -t pids < <(tree_pids "$pid")
        pin_tree "${pids[@]}"
        sleep "$SETTLE"
        tree_reset_hwm "${pids[@]}"
    fi
    out=$OUTDIR/raw/r${rep}-${test}-${name}.out
    local cmd; cmd=$(client_cmd "$test" "$port")
    echo "# $cmd" > "$out"
    local t0 c0 s0 t1 c1 s1 rc b0 b1 k0 k1
    quiet_gate
    [ -n "$pid" ] && c0=$(tree_ticks "${pids[@]}") || c0=0
    b0=$(tree_ticks "${BACKEND_TREE[@]}"); k0=$(self_child_ticks)
    s0=$(cpustat); t0=$(date +%s%N)
    $cmd >>"$out" 2>&1; rc=$?
    t1=$(date +%s%N); s1=$(cpustat)
    k1=$(self_child_ticks); b1=$(tree_ticks "${BACKEND_TREE[@]}")
    local hwm=0
    if [ -n "$pid" ]; then
        mapfile -t pids < <(tree_pids "$pid")   # workers could have been respawned
        c1=$(tree_ticks "${pids[@]}"); hwm=$(tree_hwm_kb "${pids[@]}")
        "$L" stop "$pid" >>"$LOG" 2>&1
        CUR_PID=""
    else c1=0; fi
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$rep" "$test" "$name" "$rc" \
        $(( (t1 - t0) / 1000 )) $((c1 - c0)) "$hwm" "${#pids[@]}" "$s0" "$s1" "$out" $((b1 - b0)) $((k1 - k0)) "$GATE_BUSY" "$GATE_MS" >> "$RAW"
    log "rep $rep  $(printf '%-10s %-24s' "$test" "$name") rc=$rc  proxy_cpu_ticks=$((c1 - c0)) hwm_kb=$hwm pre_busy=${GATE_BUSY}% (waited ${GATE_MS}ms)"
}

# ---------------------------------------------------------------- main
{
    echo "date: $(date -Is)  host: $(hostname)  kernel: $(uname -r)  cpus: $NCPU ($(lscpu | sed -n 's/^Model name: *//p'))"
    echo "haproxy: $(haproxy -v 2>/dev/null | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)   iperf3: $(iperf3 --version | head -1)   openssl: $(openssl version)"
    echo "placement: load generator CPU $LOAD_CPUS, backends CPU $BACKEND_CPUS, proxy CPU $PROXY_CPUS (taskset)"
    echo "reps=$REPS dur=${DUR}s conns=$CONNS wrk_threads=$WRK_THREADS tests='$TESTS'"
    for i in "${!LAUNCHERS[@]}"; do echo "launcher[$i]: ${LAUNCHERS[$i]}"; done
    echo "sysctl: $(sysctl -n net.ipv4.tcp_tw_reuse net.ipv4.ip_local_port_range net.core.somaxconn | tr '\n' ' ')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest processes at start (other users of the 2 CPUs add noise):"
    ps -eo pid,pcpu,etimes,args --sort=-pcpu | head -6 | cut -c1-150 | sed 's/^/    /'
} > "$OUTDIR/env.txt"
cat "$OUTDIR/env.txt" >&2
printf "rep\ttest\ttarget\trc\twall_us\tproxy_ticks\thwm_kb\tnprocs\tcpustat0\tcpustat1\tout\tbackend_ticks\tclient_ticks\tpre_busy_pct\tgate_ms\n" > "$RAW"

setup_backends
TARGETS=("${!LAUNCHERS[@]}")
[ "$NO_DIRECT" = 1 ] || TARGETS+=(-1)
NT=${#TARGETS[@]}
T_START=$(date +%s)
for rep in $(seq 1 "$REPS"); do
    for test in $TESTS; do
        for k in $(seq 0 $((NT - 1))); do
            ti=${TARGETS[$(( (k + rep - 1) % NT ))]}     # rotate order each repetition
            measure "$rep" "$test" "$ti"
        done
    done
done
log "measurements done in $(( $(date +%s) - T_START ))s (quiet-gate waits: ${GATE_SPENT_MS}ms)"
python3 "$HERE/report.py" "$OUTDIR" "$(getconf CLK_TCK)" > "$OUTDIR/report.txt"
python3 "$HERE/report.py" --markdown "$OUTDIR" "$(getconf CLK_TCK)" > "$OUTDIR/report.md"
cat "$OUTDIR/report.txt" "$OUTDIR/report.md"
log "results in $OUTDIR"
