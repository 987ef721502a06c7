#!/usr/bin/env python3
"""Load-independent A/B of tether builds: instructions (callgrind Ir) the tether process spends
per short connection and per keep-alive request, over loopback (127.0.0.1:22000 -> :22081),
against a tiny HTTP backend in this script. Each figure is (Ir for the larger run - Ir for the
smaller) / (difference in connections or requests), so start-up and shutdown cancel out.
Needs valgrind (apt-get install -y valgrind). Counts do not depend on machine load; they vary by
about 2 % run to run (syscall paths), so compare medians of a few runs.

usage: benches/proxy/instructions.py TETHER_BINARY [TETHER_BINARY...]
"""
import os, socket, subprocess, sys, threading, time, signal, re

BACK, LISTEN = 22081, 22000
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

def backend():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", BACK)); s.listen(512)
    def serve(c):
        with c:
            buf = b""
            while True:
                d = c.recv(4096)
                if not d: return
                buf += d
                while b"\r\n\r\n" in buf:
                    req, buf = buf.split(b"\r\n\r\n", 1)
                    c.sendall(RESP)
                    if b"close" in req.lower(): return
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()

def wait_port(p):
    for _ in range(600):
        try: socket.create_connection(("127.0.0.1", p), 0.2).close(); return
        except OSError: time.sleep(0.1)
    sys.exit("proxy never listened")

def short(n):
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", LISTEN))
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while c.recv(4096): pass
        c.close()

def keepalive(n):
    c = socket.create_connection(("127.0.0.1", LISTEN))
    for _ in range(n):
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b"ok"): got += c.recv(4096)
    c.close()

def measure(binary, kind, n, out):
    env = dict(os.environ, TETHER_LOG="warn")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "run",
        "--listen", f"127.0.0.1:{LISTEN}", "--balance", "roundrobin", "--threads", "1",
        "--affinity", "session-id,ticket", "--server", f"127.0.0.1:{BACK}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(LISTEN)
    (short if kind == "short" else keepalive)(n)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM); p.wait(timeout=120)
    total = 0
    for f in os.listdir(os.path.dirname(out)):
        if f.startswith(os.path.basename(out)):
            for line in open(os.path.join(os.path.dirname(out), f)):
                m = re.match(r"summary: (\d+)", line) or re.match(r"totals: (\d+)", line)
                if m: total += int(m.group(1)); break
    return total

if len(sys.argv) < 2:
    sys.exit(__doc__)
threading.Thread(target=backend, daemon=True).start()
for binary in sys.argv[1:]:
    for kind, (lo, hi) in (("short", (300, 1300)), ("keepalive", (1000, 6000))):
        a = measure(binary, kind, lo, f"/tmp/cg-{os.getpid()}-a")
        b = measure(binary, kind, hi, f"/tmp/cg-{os.getpid()}-b")
        for f in os.listdir("/tmp"):
            if f.startswith(f"cg-{os.getpid()}"): os.remove(os.path.join("/tmp", f))
        per = (b - a) / (hi - lo)
        print(f"{binary}\t{kind}\t{per:,.0f} instructions per {'connection' if kind=='short' else 'request'}", flush=True)
