//! The stats listener abused in the ways issue 17 §3 lists and the other stats tests do not
//! already cover (auth: stats_admin.rs; cross-site posts, slow clients, TLS: stats_hardening.rs):
//! oversized heads and bodies are refused with 413 and leave the page and the data plane serving;
//! markup in a path is never reflected as HTML; table keys that are not hex, too long or carry
//! control bytes are refused with 400 and change nothing.

mod stats_support;

use std::net::SocketAddr;
use std::time::Duration;

use stats_support::*;
use tether::stats::server::{MAX_BODY, MAX_HEAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Sends `raw` and returns the status line's code and the whole response.
async fn raw_status(stats: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(stats).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("the stats listener answered within its deadline")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused_and_everything_keeps_serving() {
    let rig = Rig::start(&["alpha", "beta"], "").await;
    let stats = rig.stats_addr();
    // A head that never ends: exactly the bound, so the listener has read every byte sent.
    let mut head = b"GET /stats HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(MAX_HEAD, b'a');
    assert_eq!(raw_status(stats, &head).await.0, 413);
    // 65 headers (over the bound of 64) in a small head.
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..65 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_status(stats, many.as_bytes()).await.0, 413);
    // A body announced over the bound is refused before a byte of it is read.
    let big = format!(
        "POST /table/app HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert_eq!(raw_status(stats, big.as_bytes()).await.0, 413);
    let chunked = b"POST /table/app HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(stats, chunked).await.0, 400);
    assert_eq!(
        raw_status(stats, b"\x16\x03\x01\x00\x05hello\r\n\r\n")
            .await
            .0,
        400
    );
    // Nothing was lost: the page and the balancer still serve.
    assert_eq!(rig.get("/;csv").await.status, 200);
    let backend = rig.connect(&client_hello(&[7; 32])).await;
    assert!(["alpha", "beta"].contains(&backend.as_str()), "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_path_is_never_reflected_as_html() {
    let rig = Rig::start(&["alpha"], "").await;
    let stats = rig.stats_addr();
    let script = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for target in [
        format!("/table/{script}"),
        format!("/table/app/{script}"),
        format!("/{script}"),
        format!("/;st={script}"),
    ] {
        let r = http(stats, "GET", &target, &[], b"").await;
        let html = r.header("content-type").is_some_and(|t| t.contains("html"));
        assert!(
            !(html && r.body.contains("<script>")),
            "{target} reflected markup as HTML: {}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_table_keys_are_refused_and_change_nothing() {
    let rig = Rig::start(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let stats = rig.stats_addr();
    let before = rig.get("/table/app").await.body;
    let long = "ab".repeat(65);
    for key in [
        "zz",
        "abc",
        "%00%0a",
        "%E2%80%AE41",
        long.as_str(),
        "..%2f..%2fetc",
    ] {
        let r = admin_put(stats, &format!("/table/app/{key}?server=alpha")).await;
        assert!(
            r == 400 || r == 404,
            "PUT /table/app/{key} answered {r}, not a refusal"
        );
    }
    assert_eq!(
        rig.get("/table/app").await.body,
        before,
        "a refused key changed the table"
    );
    // The control: the same request with a valid key is applied, so the comparison above can fail.
    let valid = hex(&[0x41; 32]);
    assert_eq!(
        admin_put(stats, &format!("/table/app/{valid}?server=alpha")).await,
        200
    );
    assert_ne!(rig.get("/table/app").await.body, before);
}

/// A table PUT as a script sends it (same origin, the admin header), so only the key decides.
async fn admin_put(stats: SocketAddr, target: &str) -> u16 {
    let origin = format!("http://{stats}");
    let headers = [("Origin", origin.as_str()), ("X-Tether-Admin", "1")];
    http(stats, "PUT", target, &headers, b"").await.status
}
