//! `server ... send-proxy` / `send-proxy-v2` from an imported haproxy.cfg, over loopback, side
//! by side with HAProxy 2.6 on the same file (issue 19: the keyword was dropped by the importer's
//! suggested fix; tether writes both headers).
//!
//! The server parses the PROXY header with tether's parser and answers what it learned: the
//! version, the client address, the address the client connected to, and the bytes after the
//! header. The client connects from 127.0.0.2, so the address in the header is the client's and
//! not the balancer's own.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tether_core::engine::proxy_protocol::{self, ProxyHeader};
use tether_core::progress::Progress;
use tether_testbed::{free_port, Haproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// A server that reads a PROXY header and 5 payload bytes, then answers
/// `v1|v2 SOURCE DESTINATION PAYLOAD` (or `bad ...` when no header came first).
async fn proxy_reader() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let answer = loop {
                    let mut chunk = [0u8; 512];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break format!("bad {buf:?}"),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    match proxy_protocol::parse(&buf) {
                        Ok(Progress::Done(ProxyHeader {
                            header_len,
                            source: Some(src),
                            destination: Some(dst),
                        })) if buf.len() >= header_len + 5 => {
                            let v = if buf[0] == b'P' { "v1" } else { "v2" };
                            let payload = String::from_utf8_lossy(&buf[header_len..]);
                            break format!("{v} {src} {dst} {payload}");
                        }
                        Ok(Progress::NeedMore) | Ok(Progress::Done(_)) => continue,
                        Err(e) => break format!("bad {e:?} {buf:?}"),
                    }
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Connects to `fe` from 127.0.0.2, sends `hello`, returns the server's answer and the client's
/// own address.
async fn ask(fe: SocketAddr) -> (String, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(fe).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .expect("server answers")
        .unwrap();
    (out, me)
}

fn config(v1_port: u16, v2_port: u16, server: SocketAddr) -> String {
    format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  \
         timeout client 10s\n  timeout server 10s\nlisten one\n  bind 127.0.0.1:{v1_port}\n  \
         server s1 {server} send-proxy\nlisten two\n  bind 127.0.0.1:{v2_port}\n  \
         server s1 {server} send-proxy-v2\n"
    )
}

#[tokio::test]
async fn servers_get_the_client_address_in_a_proxy_header_like_haproxy() {
    let server = proxy_reader().await;
    let im = tether::haproxy::import::import(
        "send-proxy.cfg",
        &config(free_port().unwrap(), free_port().unwrap(), server),
    );
    assert!(!im.has_errors(), "{:#?}", im.findings);
    let tether = common::start_config(&im.config).await;
    let addrs = tether.daemon.local_addrs();
    let (h1, h2) = (free_port().unwrap(), free_port().unwrap());
    let haproxy_one: SocketAddr = format!("127.0.0.1:{h1}").parse().unwrap();
    let haproxy = Haproxy::start(&config(h1, h2, server), haproxy_one)
        .await
        .expect("haproxy runs");
    let haproxy_two: SocketAddr = format!("127.0.0.1:{h2}").parse().unwrap();
    common::eventually(Duration::from_secs(3), || {
        std::net::TcpStream::connect(haproxy_two).is_ok()
    })
    .await;
    for (who, one, two) in [
        ("tether", addrs["one"], addrs["two"]),
        ("haproxy", haproxy_one, haproxy_two),
    ] {
        for (version, fe) in [("v1", one), ("v2", two)] {
            let (answer, me) = ask(fe).await;
            assert_eq!(
                answer,
                format!("{version} {me} {fe} hello"),
                "{who} {version}:\n{}",
                haproxy.log()
            );
        }
    }
}
