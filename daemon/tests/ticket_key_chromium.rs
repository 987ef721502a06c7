//! A real browser through tether: headless Chromium fetches the same https origin again and
//! again, each fetch on a new connection (`openssl s_server -www` closes after its answer), each
//! TLS 1.3 ticket used once. With `ticket-key` it resumes on the server that issued its ticket;
//! with `session-id,ticket,psk`, roundrobin hands every single-use ticket to the next server.
//! CI installs Debian's `chromium` (see `.ci/run`); without it this test fails and says so.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{native_toml, start_toml, Running};
use tether_testbed::{OpensslServer, OpensslServerConfig, ScratchDir, TlsVersions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CHROMIUM: &str = "/usr/bin/chromium";
const FETCHES: usize = 11;

/// Serves one HTML page over plain HTTP whose script fetches `target` `FETCHES` times, one after
/// the other, then marks the document done.
async fn page_server(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = format!(
        "<!doctype html><html><body><script>\
         (async () => {{ let ok = 0; for (let i = 0; i < {FETCHES}; i++) {{ \
         try {{ await fetch('https://{target}/?' + i, {{mode: 'no-cors', cache: 'no-store'}}); ok++; }} \
         catch (e) {{}} }} document.body.setAttribute('data-fetched', String(ok)); }})();\
         </script></body></html>"
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n",
                    page.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(page.as_bytes()).await;
            });
        }
    });
    addr
}

/// Runs Chromium on `url` until its script is done; returns the DOM and the NetLog text.
fn chromium(profile: &Path, url: &str) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it (apt-get install -y chromium); .ci/run does"
    );
    let netlog = profile.join("netlog.json");
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    (dom, log)
}

/// Three TLS 1.3 `s_server`s behind tether with `chain`; Chromium fetches through it. Returns
/// tether's records (the browser's fetches only) and the NetLog's resumed handshakes.
async fn browse(chain: &str) -> (Running, usize) {
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let cfg = OpensslServerConfig::new(name).versions(TlsVersions::Tls13);
        servers.push(OpensslServer::start(cfg).await.expect("s_server starts"));
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(OpensslServer::addr).collect();
    let backend = format!("balance = \"roundrobin\"\naffinity = {chain}");
    let running = start_toml(&native_toml("", "", &backend, "", &addrs)).await;
    let page = page_server(running.addr).await;
    let profile = ScratchDir::create("ticket-key-chromium").unwrap();
    let url = format!("http://{page}/");
    let (dom, netlog) = tokio::task::spawn_blocking(move || {
        let r = chromium(profile.path(), &url);
        drop(profile);
        r
    })
    .await
    .unwrap();
    assert!(
        dom.contains(&format!("data-fetched=\"{FETCHES}\"")),
        "every fetch answered:\n{dom}\n{}",
        running.sink.lines()
    );
    let resumed = netlog.matches("\"is_resumed\":true").count();
    drop(servers);
    (running, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resumes_through_ticket_key_with_single_use_tickets() {
    let (running, netlog_resumed) = browse("[\"ticket-key\"]").await;
    let recs = running.sink.records();
    let lines = running.sink.lines();
    let resumed = recs.iter().filter(|r| r.resumed == Some(true)).count();
    eprintln!(
        "ticket-key: {resumed} of {} connections resumed (NetLog: {netlog_resumed})\n{lines}",
        recs.len()
    );
    assert!(recs.len() >= FETCHES, "{lines}");
    // The first connection is a full handshake; after it, ≥ 9 in 10 resume.
    assert!(resumed * 10 >= (recs.len() - 1) * 9, "{lines}");
    assert_eq!(
        netlog_resumed, resumed,
        "the browser agrees with the wire:\n{lines}"
    );

    let (running, _) = browse("[\"session-id\", \"ticket\", \"psk\"]").await;
    let recs = running.sink.records();
    let before = recs.iter().filter(|r| r.resumed == Some(true)).count();
    eprintln!("session-id,ticket,psk: {before} of {} resumed", recs.len());
    assert!(
        before * 3 < resumed,
        "ticket-key does what the old chain cannot:\n{}",
        running.sink.lines()
    );
}
