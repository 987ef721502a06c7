//! The same haproxy.cfg run by HAProxy 2.6 and by `tether run --haproxy`: SNI routing, ACLs and
//! connection filtering must land every client on the same backend, or refuse it, in both.
//!
//! Four `openssl s_server` backends with their own certificates (told apart by fingerprint) and
//! a plain TCP echo backend for clients that do not speak TLS; a client matrix over server
//! names (exact, another, wildcard, a regex with `-i`, none, uppercase with and without `-i`, a refused one),
//! source addresses (127.0.0.1 allowed, 127.0.0.66 refused at accept, bound by the client),
//! TLS 1.2 and 1.3, and plain bytes.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tether_core::server::check::verify::identifying_client;
use tether_testbed::{
    free_port, wait_until_listening, Haproxy, OpensslServer, OpensslServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

const CFG: &str = "\
global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:PORT
    tcp-request inspect-delay 2s
    acl blocked src 127.0.0.66
    acl evil req.ssl_sni -m end .evil.test
    acl is_a req.ssl_sni -i a.test
    tcp-request connection reject if blocked
    tcp-request content reject if evil
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend be_a if is_a
    use_backend be_b if { req.ssl_sni -i b.test } || { req.ssl_sni Upper.test }
    use_backend be_wild if { req.ssl_sni -m end .wild.test }
    use_backend be_wild if { req.ssl_sni -m reg -i ^api[0-9]+\\.reg\\.test$ }
    use_backend be_plain if !{ req_ssl_hello_type 1 }
    default_backend be_default
backend be_a
    server s 127.0.0.1:PA
backend be_b
    server s 127.0.0.1:PB
backend be_wild
    server s 127.0.0.1:PW
backend be_default
    server s 127.0.0.1:PD
backend be_plain
    server s PLAIN
";

/// `tether run --haproxy FILE`, killed on drop.
struct Tether {
    child: Child,
    log: PathBuf,
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_tether(cfg: &str, addr: SocketAddr, dir: &std::path::Path) -> Tether {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.join("tether.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--haproxy"])
        .arg(&path)
        .env("TETHER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    let t = Tether { child, log };
    assert!(
        wait_until_listening(addr, Duration::from_secs(10)).await,
        "tether did not listen: {}",
        std::fs::read_to_string(&t.log).unwrap_or_default()
    );
    t
}

/// One client of the matrix.
#[derive(Debug, Clone, Copy)]
struct Case {
    sni: Option<&'static str>,
    source: &'static str,
    tls13: bool,
    tls: bool,
}

/// What a case saw: the backend that answered (by certificate), or refusal.
async fn run_case(c: Case, to: SocketAddr, backends: &[(String, [u8; 32])]) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(c.source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let Ok(mut tcp) = socket.connect(to).await else {
        return "refused".into();
    };
    if !c.tls {
        let msg = b"PING plain bytes\r\n";
        let _ = tcp.write_all(msg).await;
        let mut back = vec![0u8; msg.len()];
        return match timeout(Duration::from_secs(5), tcp.read_exact(&mut back)).await {
            Ok(Ok(_)) if back == msg => "be_plain".into(),
            Ok(_) => "refused".into(),
            Err(_) => "timeout".into(),
        };
    }
    let config = identifying_client(c.tls13).unwrap();
    let name = match c.sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        // An IP address: rustls sends no server_name.
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let connector = TlsConnector::from(Arc::new(config));
    match timeout(Duration::from_secs(5), connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let cert = &stream.get_ref().1.peer_certificates().unwrap()[0];
            let fp: [u8; 32] = Sha256::digest(cert.as_ref()).into();
            backends
                .iter()
                .find(|(_, f)| *f == fp)
                .map_or("unknown".into(), |(n, _)| n.clone())
        }
        Ok(Err(_)) => "refused".into(),
        Err(_) => "timeout".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_lands_where_haproxy_sends_it() {
    let mut servers = Vec::new();
    for name in ["be_a", "be_b", "be_wild", "be_default"] {
        let s = OpensslServer::start(OpensslServerConfig::new(name))
            .await
            .expect("openssl s_server (apt-get install -y openssl)");
        servers.push(s);
    }
    let plain = common::EchoBackend::start().await;
    let backends: Vec<(String, [u8; 32])> = servers
        .iter()
        .map(|s| (s.name().to_string(), s.fingerprint()))
        .collect();
    let cfg_for = |port: u16| {
        CFG.replace("PORT", &port.to_string())
            .replace("PA", &servers[0].addr().port().to_string())
            .replace("PB", &servers[1].addr().port().to_string())
            .replace("PW", &servers[2].addr().port().to_string())
            .replace("PD", &servers[3].addr().port().to_string())
            .replace("PLAIN", &plain.addr.to_string())
    };
    let hp: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let haproxy = Haproxy::start(&cfg_for(hp.port()), hp)
        .await
        .expect("haproxy 2.6 (apt-get install -y haproxy)");
    let tp: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let dir = std::env::temp_dir().join(format!("tether-routing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tether = start_tether(&cfg_for(tp.port()), tp, &dir).await;

    let mut cases = Vec::new();
    for sni in [
        Some("a.test"),
        Some("b.test"),
        Some("x.wild.test"),
        None,
        Some("A.TEST"),
        Some("Upper.test"),
        Some("upper.test"),
        Some("www.evil.test"),
        Some("api7.reg.test"),
        Some("API12.REG.TEST"),
        Some("apix.reg.test"),
        Some("xapi7.reg.test"),
    ] {
        for source in ["127.0.0.1", "127.0.0.66"] {
            for tls13 in [false, true] {
                cases.push(Case {
                    sni,
                    source,
                    tls13,
                    tls: true,
                });
            }
        }
    }
    for source in ["127.0.0.1", "127.0.0.66"] {
        cases.push(Case {
            sni: None,
            source,
            tls13: false,
            tls: false,
        });
    }
    let mut table = String::new();
    let mut differ = Vec::new();
    for c in &cases {
        let h = run_case(*c, hp, &backends).await;
        let t = run_case(*c, tp, &backends).await;
        table.push_str(&format!("{c:?}: haproxy={h} tether={t}\n"));
        if h != t {
            differ.push(format!("{c:?}: haproxy={h} tether={t}"));
        }
    }
    let expect = |sni: Option<&str>| match sni {
        Some("a.test") | Some("A.TEST") => "be_a",
        Some("b.test") | Some("Upper.test") => "be_b",
        Some("x.wild.test") | Some("api7.reg.test") | Some("API12.REG.TEST") => "be_wild",
        Some("www.evil.test") => "refused",
        _ => "be_default",
    };
    assert!(
        differ.is_empty(),
        "tether and HAProxy disagree:\n{}\n\nall:\n{table}\nhaproxy log:\n{}\ntether log:\n{}",
        differ.join("\n"),
        haproxy.log(),
        std::fs::read_to_string(&tether.log).unwrap_or_default()
    );
    // And both did what the config says (not merely the same wrong thing).
    for c in cases.iter().filter(|c| c.tls && c.source == "127.0.0.1") {
        let got = run_case(*c, tp, &backends).await;
        assert_eq!(got, expect(c.sni), "{c:?}");
    }
    for c in cases.iter().filter(|c| c.source == "127.0.0.66") {
        assert_eq!(run_case(*c, tp, &backends).await, "refused", "{c:?}");
    }
    let plain_ok = Case {
        sni: None,
        source: "127.0.0.1",
        tls13: false,
        tls: false,
    };
    assert_eq!(run_case(plain_ok, tp, &backends).await, "be_plain");
    let log = std::fs::read_to_string(&tether.log).unwrap_or_default();
    assert!(log.contains("route=blocked refused=yes"), "{log}");
    assert!(log.contains("route=evil refused=yes"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
