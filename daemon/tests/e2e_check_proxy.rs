//! What a health check writes before its own bytes, side by side with HAProxy 2.6 on the same
//! haproxy.cfg (issue 19): the PROXY header (`check-send-proxy`, the header `send-proxy` implies
//! for checks on the server's own address, `tcp-check connect send-proxy`) and the server name of
//! a TLS check (`check-sni` on default connects only, `tcp-check connect ssl sni NAME`).
//!
//! Each server here records the first bytes of every connection. The PROXY servers answer
//! `+PONG` only to a `PING` behind a valid PROXY header, so a check that leaves the header out
//! (or sends one where none belongs) also changes the server's state; the TLS servers read the
//! ClientHello, note its server name and hang up.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::engine::proxy_protocol;
use tether_core::tls::{ClientHelloParser, HelloOutcome};
use tether_core::Progress;
use tether_testbed::{free_port, Haproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The first bytes of each connection a recorder accepted.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// A server recording what each connection sends first (until `PING\r\n`, a whole ClientHello,
/// the client's end, or 300 ms of silence). It answers `+PONG` to a PING that follows a valid
/// PROXY header and closes otherwise.
async fn recorder() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let first = first_bytes(&mut s).await;
                let (header, rest) = split_header(&first);
                if header.is_some() && rest.starts_with(b"PING\r\n") {
                    let _ = s.write_all(b"+PONG\r\n").await;
                }
                log.lock().unwrap().push(first);
            });
        }
    });
    (addr, seen)
}

async fn first_bytes(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(300), s.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return buf,
        }
        let hello_done = matches!(
            ClientHelloParser::default().parse(&buf),
            Progress::Done(HelloOutcome::Complete(_))
        );
        if hello_done || buf.ends_with(b"PING\r\n") {
            return buf;
        }
    }
}

/// The PROXY header at the front of `bytes` (its length), and what follows.
fn split_header(bytes: &[u8]) -> (Option<usize>, &[u8]) {
    match proxy_protocol::parse(bytes) {
        Ok(Progress::Done(h)) => (Some(h.header_len), &bytes[h.header_len..]),
        _ => (None, bytes),
    }
}

/// A connection's first bytes as the test compares them: the PROXY header with the check's
/// own source port blanked (it differs from run to run), or `none`; then what followed, or the
/// ClientHello's server name.
fn describe(first: &[u8]) -> String {
    let (header, rest) = split_header(first);
    let header = match header {
        None => "none".to_string(),
        Some(n) if first.starts_with(b"PROXY ") => {
            let line = String::from_utf8_lossy(&first[..n]).trim_end().to_string();
            let mut w: Vec<&str> = line.split(' ').collect();
            if w.len() == 6 {
                w[4] = "SPORT";
            }
            w.join(" ")
        }
        Some(n) => format!("v2 {:02x?}", &first[12..n]),
    };
    let mut parser = ClientHelloParser::default();
    let after = match parser.parse(rest) {
        Progress::Done(HelloOutcome::Complete(h)) => match h.server_name() {
            Some(n) => format!("tls sni={}", String::from_utf8_lossy(n)),
            None => "tls no sni".to_string(),
        },
        _ => String::from_utf8_lossy(rest).escape_debug().to_string(),
    };
    format!("{header} | {after}")
}

/// The backends, one server each, `{N}` standing for recorder N's address.
const BACKENDS: &str = "\
backend default_v1
  option tcp-check
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {0} check send-proxy
backend default_v2
  option tcp-check
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {1} check send-proxy-v2
backend port_given
  option tcp-check
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {2} check send-proxy port {2port}
backend check_send_proxy
  option tcp-check
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {3} check check-send-proxy
backend rule_send_proxy
  option tcp-check
  tcp-check connect send-proxy
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {4} check
backend rule_plain
  option tcp-check
  tcp-check connect
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  server s {5} check send-proxy
backend tls_rule
  option tcp-check
  tcp-check connect ssl
  server s {6} check check-ssl verify none check-sni default.example
backend tls_rule_sni
  option tcp-check
  tcp-check connect ssl sni rule.example
  server s {7} check verify none check-sni default.example
backend tls_default
  option tcp-check
  tcp-check connect default
  server s {8} check check-ssl verify none check-sni default.example
";

const NAMES: [&str; 9] = [
    "default_v1",
    "default_v2",
    "port_given",
    "check_send_proxy",
    "rule_send_proxy",
    "rule_plain",
    "tls_rule",
    "tls_rule_sni",
    "tls_default",
];

/// The haproxy.cfg for one proxy's set of recorders.
fn config(global: &str, fe_port: u16, servers: &[SocketAddr]) -> String {
    let mut backends = BACKENDS.to_string();
    for (i, a) in servers.iter().enumerate().rev() {
        backends = backends
            .replace(&format!("{{{i}port}}"), &a.port().to_string())
            .replace(&format!("{{{i}}}"), &a.to_string());
    }
    format!(
        "global\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  \
         timeout server 5s\n  timeout check 1s\n  default-server inter 300ms rise 1 fall 1\n\
         {backends}frontend f\n  bind 127.0.0.1:{fe_port}\n  default_backend default_v1\n"
    )
}

async fn recorders() -> (Vec<SocketAddr>, Vec<Seen>) {
    let mut addrs = Vec::new();
    let mut seen = Vec::new();
    for _ in NAMES {
        let (a, s) = recorder().await;
        addrs.push(a);
        seen.push(s);
    }
    (addrs, seen)
}

/// What each backend's server saw first from its latest check, the server's port in a PROXY
/// v1 line written as `PORT`.
fn latest(seen: &[Seen], addrs: &[SocketAddr]) -> Vec<String> {
    seen.iter()
        .zip(addrs)
        .map(|(s, a)| match s.lock().unwrap().last() {
            Some(first) => describe(first).replace(&format!(" {}", a.port()), " PORT"),
            None => String::new(),
        })
        .collect()
}

fn tether_states(t: &common::Running) -> Vec<bool> {
    let rt = t.daemon.runtime();
    (NAMES.iter())
        .map(|n| rt.backends[*n].server_states()[0].oper == tether_core::server::OperState::Up)
        .collect()
}

async fn haproxy_states(sock: &std::path::Path) -> Vec<bool> {
    let rows = common::haproxy_server_stats(sock).await;
    (NAMES.iter())
        .map(|n| {
            (rows.iter()).any(|r| {
                r.get("pxname").map(String::as_str) == Some(n)
                    && r.get("status").is_some_and(|s| s.starts_with("UP"))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proxy_headers_and_sni_match_haproxy() {
    let (ours_at, ours_seen) = recorders().await;
    let (theirs_at, theirs_seen) = recorders().await;
    let im = tether::haproxy::import::import("checks.cfg", &config("", 0, &ours_at));
    assert!(!im.has_errors(), "{:#?}", im.findings);
    let t = common::start_config(&im.config).await;
    let scratch = tether_testbed::ScratchDir::create("check-proxy").unwrap();
    let sock = scratch.path().join("haproxy.sock");
    let port = free_port().unwrap();
    let global = format!("  stats socket {} level admin\n", sock.display());
    // Started without a probe connection: it would reach default_v1's recorder.
    let _haproxy = Haproxy::start_unprobed(
        &config(&global, port, &theirs_at),
        &[format!("127.0.0.1:{port}").parse().unwrap()],
    )
    .await
    .expect("haproxy runs (apt-get install -y haproxy)");
    // Each side's checks every 300 ms: wait until every server has seen two checks.
    let checked = |seen: &[Seen]| seen.iter().all(|s| s.lock().unwrap().len() >= 2);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(checked(&ours_seen) && checked(&theirs_seen)) {
        assert!(tokio::time::Instant::now() < give_up, "checks did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ours = latest(&ours_seen, &ours_at);
    let theirs = latest(&theirs_seen, &theirs_at);
    for ((name, o), h) in NAMES.iter().zip(&ours).zip(&theirs) {
        assert_eq!(o, h, "backend {name}: tether vs HAProxy");
    }
    // And what each one is, so that both agreeing on something else would fail too.
    let v1 = "PROXY TCP4 127.0.0.1 127.0.0.1 SPORT PORT | PING\\r\\n";
    let local = "v2 [20, 00, 00, 00] | PING\\r\\n";
    let want = [
        v1,
        local,
        "none | PING\\r\\n",
        v1,
        v1,
        "none | PING\\r\\n",
        "none | tls no sni",
        "none | tls sni=rule.example",
        "none | tls sni=default.example",
    ];
    assert_eq!(ours, want);
    let up = [true, true, false, true, true, false, false, false, false];
    assert_eq!(tether_states(&t), up, "tether: {NAMES:?}");
    assert_eq!(haproxy_states(&sock).await, up, "HAProxy: {NAMES:?}");
}
