//! The reference tools end to end: `openssl s_server` backends and `openssl s_client -reconnect`
//! (a separate process, as a user would run it) through tether, natively and with the user's
//! haproxy.cfg imported (`--haproxy`), with and without `tcp-response inspect-delay`.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{start_config, start_toml, native_toml, Running};
use tether::testbed::{free_port, Haproxy, OpensslServer, OpensslServerConfig, TlsVersions};

/// One connection of an `s_client -reconnect` run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handshake {
    /// The server certificate's CN; for a resumed handshake (no certificate sent) the server
    /// that issued the session, i.e. the previous one.
    server: String,
    reused: bool,
}

/// Runs `openssl s_client -reconnect` (1 connection + 5 reconnections with the first session),
/// TLS 1.2 with session IDs only, and parses which server answered each one.
async fn s_client_reconnect(addr: SocketAddr) -> Vec<Handshake> {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-reconnect"])
            .args(["-tls1_2", "-no_ticket"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("s_client finishes")
    .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_s_client(&text)
}

fn parse_s_client(text: &str) -> Vec<Handshake> {
    let mut out: Vec<Handshake> = Vec::new();
    let mut cn: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("depth=0 CN = ") {
            cn = Some(rest.trim().to_string());
        } else if line.starts_with("New, ") || line.starts_with("Reused, ") {
            let reused = line.starts_with("Reused, ");
            let server = match (reused, cn.take()) {
                (_, Some(c)) => c,
                (true, None) => out.last().map(|h| h.server.clone()).unwrap_or_default(),
                (false, None) => String::from("?"),
            };
            out.push(Handshake { server, reused });
        }
    }
    out
}

async fn four_s_servers() -> Vec<OpensslServer> {
    let mut v = Vec::new();
    for i in [1, 2, 3, 5] {
        v.push(
            OpensslServer::start(
                OpensslServerConfig::new(&format!("lanneluc-node{i}"))
                    .versions(TlsVersions::Tls12)
                    .tickets(false),
            )
            .await
            .expect("openssl s_server starts"),
        );
    }
    v
}

fn assert_sticky_and_reused(hs: &[Handshake]) {
    assert_eq!(hs.len(), 6, "1 + 5 reconnections: {hs:#?}");
    assert!(!hs[0].reused);
    for h in &hs[1..] {
        assert!(h.reused, "every reconnect resumes: {hs:#?}");
        assert_eq!(h.server, hs[0].server);
    }
}

#[tokio::test]
async fn s_client_reconnect_through_tether_native_is_sticky_and_reused() {
    let servers = four_s_servers().await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr()).collect();
    let running = start_toml(&native_toml("", "", "", "check = false", &addrs)).await;
    let hs = s_client_reconnect(running.addr).await;
    assert_sticky_and_reused(&hs);
    assert!(servers.iter().any(|s| s.name() == hs[0].server));
}

/// The posted haproxy.cfg, changed only where it cannot load on a test machine: the frontend
/// binds 127.0.0.1:0 (tether) or `bind` (haproxy), the servers get the test backends' addresses,
/// `log local2` (needs a syslog) logs to stdout, the process-level lines that need root go, and
/// the `listen stats` section (a privileged port and a password) is dropped.
fn fixed_seed(bind: &str, servers: &[OpensslServer], response_delay: bool) -> String {
    let seed = include_str!("fixtures/seed-haproxy.cfg");
    let mut out = String::new();
    for line in seed.lines() {
        let t = line.trim();
        if t.starts_with("listen stats") {
            break;
        }
        let keep = match t.split_whitespace().next().unwrap_or("") {
            "chroot" | "pidfile" | "user" | "group" | "stats" => false,
            "log" if t == "log local2" => {
                out.push_str("    log stdout format raw local0\n");
                false
            }
            _ => true,
        };
        if !keep {
            continue;
        }
        if t == "bind *:9443" {
            out.push_str(&format!("    bind {bind}\n"));
        } else if let Some(name) = t.strip_prefix("server ").map(str::trim) {
            let name = name.split_whitespace().next().unwrap();
            let s = servers
                .iter()
                .find(|s| s.name() == name)
                .unwrap_or_else(|| panic!("no test server {name}"));
            out.push_str(&format!("    server {name} {} check\n", s.addr()));
        } else if response_delay && t == "tcp-response content accept if serverhello" {
            out.push_str("    tcp-response inspect-delay 5s\n");
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn tether_haproxy(servers: &[OpensslServer], response_delay: bool) -> Running {
    let cfg = fixed_seed("127.0.0.1:0", servers, response_delay);
    let (config, _findings) = tether::haproxy::convert_haproxy("seed-fixed.cfg", &cfg)
        .unwrap_or_else(|e| panic!("the fixed seed must import: {e}\n{cfg}"));
    start_config(&config).await
}

/// HAProxy evaluates `stick store-response` on the response buffer as it is when the connection
/// is established: without `tcp-response inspect-delay` that buffer is empty, nothing is ever
/// stored, and roundrobin rotates every reconnection over the four servers with no resumption.
#[tokio::test]
async fn s_client_through_imported_seed_rotates_without_resumption() {
    let servers = four_s_servers().await;
    let running = tether_haproxy(&servers, false).await;
    let hs = s_client_reconnect(running.addr).await;
    assert_eq!(hs.len(), 6, "{hs:#?}");
    assert!(hs.iter().all(|h| !h.reused), "{hs:#?}");
    for w in hs.windows(2) {
        assert_ne!(w[0].server, w[1].server, "roundrobin rotation: {hs:#?}");
    }
    let mut distinct: Vec<_> = hs.iter().map(|h| h.server.clone()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{hs:#?}");
    let recs = running.sink.wait_for(6).await;
    assert!(recs.iter().all(|r| r.learned == 0), "{}", running.sink.lines());
}

#[tokio::test]
async fn s_client_through_imported_seed_with_response_delay_is_sticky() {
    let servers = four_s_servers().await;
    let running = tether_haproxy(&servers, true).await;
    let hs = s_client_reconnect(running.addr).await;
    assert_sticky_and_reused(&hs);
}

/// The same fixed configuration on the real HAProxy 2.6 gives the same two answers.
#[tokio::test]
async fn real_haproxy_on_the_fixed_seed_agrees() {
    Haproxy::program().expect("these tests need HAProxy 2.6");
    let servers = four_s_servers().await;
    for response_delay in [false, true] {
        let mut started = None;
        for _ in 0..3 {
            let fe = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let cfg = fixed_seed(&fe.to_string(), &servers, response_delay);
            match Haproxy::start(&cfg, fe).await {
                Ok(h) => {
                    started = Some(h);
                    break;
                }
                Err(e) => eprintln!("haproxy start: {e}"),
            }
        }
        let haproxy = started.expect("haproxy starts on the fixed seed");
        let hs = s_client_reconnect(haproxy.frontend()).await;
        if response_delay {
            assert_sticky_and_reused(&hs);
        } else {
            assert!(hs.iter().all(|h| !h.reused), "{hs:#?}\n{}", haproxy.log());
            let mut distinct: Vec<_> = hs.iter().map(|h| h.server.clone()).collect();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 4, "{hs:#?}");
        }
    }
}
