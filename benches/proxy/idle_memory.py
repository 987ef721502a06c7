#!/usr/bin/env python3
"""Memory per idle TLS connection, each proxy side by side in one run.

For every launcher (same two-verb contract as run.sh: `LAUNCHER start <port> <backend>...` prints
the PID; `LAUNCHER stop PID`), in turn: start the proxy in front of a TLS backend in this script,
open N TLS 1.3 connections through it (full handshake, then idle), and read the proxy's RSS
(VmRSS of /proc/PID/status, summed over its threads' process) before, with the N connections
open, and some seconds after they have all closed. Per connection = (open - before) / N.

usage: benches/proxy/idle_memory.py [-n 4000] [-s SETTLE] LAUNCHER [LAUNCHER...]
Needs openssl (certificate) and enough file descriptors (ulimit -n >= 2 N + 100).
"""
import argparse, asyncio, os, resource, socket, ssl, subprocess, sys, tempfile, time

BACKEND_PORT, LISTEN_PORT = 23443, 23400


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def make_cert(d):
    key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=backend"],
                   check=True, capture_output=True)
    return crt, key


async def serve(reader, writer):
    # Idle until the client goes: the connection holds, nothing moves.
    try:
        await reader.read()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


async def open_idle(n, ctx):
    conns, sem = [], asyncio.Semaphore(64)

    async def one():
        async with sem:
            for attempt in range(20):
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", LISTEN_PORT, ssl=ctx,
                                                         server_hostname="backend")
                    conns.append(w)
                    return
                except OSError:
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise RuntimeError("could not connect through the proxy")
    await asyncio.gather(*(one() for _ in range(n)))
    return conns


async def measure(launcher, n, settle, sctx, cctx):
    out = subprocess.run([launcher, "start", str(LISTEN_PORT), str(BACKEND_PORT)], check=True,
                         capture_output=True, text=True)
    pid = int(out.stdout.split()[-1])
    try:
        await asyncio.sleep(1)
        before = rss_kib(pid)
        t = time.monotonic()
        conns = await open_idle(n, cctx)
        opened = time.monotonic() - t
        await asyncio.sleep(settle)
        during = rss_kib(pid)
        for w in conns:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in conns), return_exceptions=True)
        await asyncio.sleep(settle)
        after = rss_kib(pid)
    finally:
        subprocess.run([launcher, "stop", str(pid)], capture_output=True)
    return before, during, after, opened


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=4000)
    ap.add_argument("-s", "--settle", type=float, default=3.0)
    ap.add_argument("launchers", nargs="+")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * a.n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    d = tempfile.mkdtemp(prefix="idle-mem.")
    crt, key = make_cert(d)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(crt)
    server = await asyncio.start_server(serve, "127.0.0.1", BACKEND_PORT, ssl=sctx, backlog=4096)
    print(f"{a.n} idle TLS 1.3 connections through each proxy; RSS in KiB (VmRSS)")
    print("| proxy | RSS before | RSS with N open | per connection | RSS after close | open time |")
    print("|---|---|---|---|---|---|")
    for launcher in a.launchers:
        b, du, af, t = await measure(launcher, a.n, a.settle, sctx, cctx)
        per = (du - b) * 1024 / a.n
        print(f"| {os.path.basename(launcher)} | {b:,} | {du:,} | {per:,.0f} B | {af:,} | {t:.1f} s |",
              flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
