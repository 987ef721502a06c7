#!/usr/bin/env python3
# Writes fuzz/corpus/ticket_keys/ from the captured vectors (core/tests/vectors): each seed is a
# run of connections (see fuzz/src/ticket_keys.rs for the format). Run from the repository root.
import struct, os
V='core/tests/vectors/'
def h(n): return bytes.fromhex(open(V+n+'.hex').read().replace(' ','').replace('\n',''))
def conn(server, client, hello, flight, cuts=b''):
    return bytes([server, client, len(cuts)]) + cuts + struct.pack('>H', len(hello)) + hello + struct.pack('>H', len(flight)) + flight
def reload(shift): return bytes([0xff, shift])
out='fuzz/corpus/ticket_keys/'
seeds = {}
for kind in ['tls13', 'tls12_ticket', 'tls12_sessid']:
    full = (h(kind+'_full.c2s'), h(kind+'_full.s2c'))
    res = (h(kind+'_resumed.c2s'), h(kind+'_resumed.s2c'))
    # one client served in full by server 1, then resuming there; a second client resuming
    seeds[kind] = bytes([0]) + conn(1, 1, *full) + conn(1, 1, *res) + conn(2, 2, res[0], full[1])
    # split reads, another bootstrap, a reload between the full and the resumed handshake
    seeds[kind+'.split_reload'] = bytes([1]) + conn(3, 1, *full, cuts=b'\x05\x40\x41\x90\xfe') + reload(1) + conn(4, 1, *res, cuts=b'\x01\x80')
# a server whose resumptions all fail (names refused), and every server id named
seeds['refused'] = bytes([2]) + b''.join(conn(s, s + 1, h('tls13_resumed.c2s'), h('tls13_full.s2c')) for s in range(6))
for name, data in seeds.items():
    open(out + name, 'wb').write(data)
    print(name, len(data))
# three_names_one_server: one server issuing TLS 1.2 tickets under three key names (the NST
# ticket's first 16 bytes rewritten), past names-per-server = 2: reaches the names cap (red when
# the learner's eviction is off by one).
