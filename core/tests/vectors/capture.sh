#!/usr/bin/env bash
# Regenerates the captured TLS vectors in this directory from real OpenSSL handshakes on
# 127.0.0.1. Each scenario runs `openssl s_server` behind relay.py, which records every byte of
# one connection per direction (<name>.c2s.hex = client->server, <name>.s2c.hex = server->client).
# The facts the tests assert (SNI, ALPN, resumption) are the arguments passed below.
#
#   tls12_sessid_{full,resumed}  TLS 1.2, server -no_ticket: session-ID resumption
#   tls12_ticket_{full,resumed}  TLS 1.2 with RFC 5077 tickets
#   tls13_{full,resumed}         TLS 1.3, resumption with a PSK (ticket)
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
# A TEST-ONLY key pair, committed so tls_rustls.rs can run a rustls server with it too.
if [ ! -f test_server.key.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
    -subj /CN=vectors.tether.test -addext subjectAltName=DNS:vectors.tether.test \
    -keyout test_server.key.pem -out test_server.cert.pem 2>/dev/null
fi
cp test_server.key.pem "$work/key.pem"; cp test_server.cert.pem "$work/cert.pem"
SPORT=${SPORT:-24433}; RPORT=${RPORT:-24434}

# run NAME SNI CLIENT_ARGS... : one client connection through the relay.
run() {
  local name=$1 sni=$2; shift 2
  python3 relay.py "$RPORT" "$SPORT" "$name" > "$work/relay.out" &
  local relay=$!
  until grep -q ready "$work/relay.out" 2>/dev/null; do sleep 0.05; done
  # The sleep keeps the client up long enough to receive TLS 1.3 tickets after the handshake.
  (sleep 1) | openssl s_client -connect "127.0.0.1:$RPORT" -servername "$sni" \
      -alpn h2,http/1.1 "$@" > "$work/$name.client.log" 2>&1 || true
  wait "$relay"
}

# server SERVER_ARGS... : one s_server for two connections (full + resumed).
server() {
  openssl s_server -accept "$SPORT" -naccept 2 -cert "$work/cert.pem" -key "$work/key.pem" \
      -alpn h2 "$@" < <(sleep 60) > "$work/server.log" 2>&1 &
  srv=$!  # stdin stays open: s_server quits on stdin EOF
  sleep 0.5
}

server -tls1_2 -no_ticket
run tls12_sessid_full sessid.tether.test -tls1_2 -sess_out "$work/s1.pem"
run tls12_sessid_resumed sessid.tether.test -tls1_2 -sess_in "$work/s1.pem"
wait "$srv"

server -tls1_2
run tls12_ticket_full ticket.tether.test -tls1_2 -sess_out "$work/s2.pem"
run tls12_ticket_resumed ticket.tether.test -tls1_2 -sess_in "$work/s2.pem"
wait "$srv"

server -tls1_3
run tls13_full tls13.tether.test -tls1_3 -sess_out "$work/s3.pem"
run tls13_resumed tls13.tether.test -tls1_3 -sess_in "$work/s3.pem"
wait "$srv"

# What OpenSSL itself reported, as an independent oracle for the tests (<name>.openssl.txt).
for f in "$work"/*.client.log; do
  n=$(basename "$f" .client.log)
  grep -E '^(Reused|New),|^ *(Protocol|Session-ID) *:|lifetime hint|^ALPN protocol' "$f" \
    | sed 's/^ *//' | sort -u > "$n.openssl.txt" || true
  sed "s/^/$n: /" "$n.openssl.txt"
done
