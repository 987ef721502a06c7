#!/usr/bin/env python3
"""Relay ONE TCP connection from 127.0.0.1:<listen> to 127.0.0.1:<target> and record each
direction, byte for byte, as hex: <prefix>.c2s.hex and <prefix>.s2c.hex. Used by capture.sh."""
import select, socket, sys

listen_port, target_port, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", listen_port)); ls.listen(1)
print("ready", flush=True)
c, _ = ls.accept()
s = socket.create_connection(("127.0.0.1", target_port))
data = {c: bytearray(), s: bytearray()}
peer = {c: s, s: c}
open_ = {c, s}
while open_:
    r, _, _ = select.select(list(open_), [], [], 10)
    if not r:
        break
    for sock in r:
        try:
            buf = sock.recv(65536)
        except ConnectionResetError:
            buf = b""
        if not buf:
            open_.discard(sock)
            try: peer[sock].shutdown(socket.SHUT_WR)
            except OSError: pass
            continue
        data[sock] += buf
        peer[sock].sendall(buf)
open(prefix + ".c2s.hex", "w").write(data[c].hex() + "\n")
open(prefix + ".s2c.hex", "w").write(data[s].hex() + "\n")
