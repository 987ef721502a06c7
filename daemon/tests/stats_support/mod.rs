//! Shared by the stats tests: a real daemon started in-process with a stats listener, plain TCP
//! backends that announce their name, a crafted TLS 1.2 ClientHello and a tiny HTTP client.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether::logsink::DaemonSink;
use tether::run::Daemon;
use tether::stats::{serve_stats, StatsListener};
use tether_core::config::load_toml;
use tether_core::engine::runtime;
use tether_core::tls::encode::ClientHelloBuilder;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that writes its name and a newline to every connection, then reads until EOF.
pub struct BannerBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BannerBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let banner = format!("{name}\n");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let banner = banner.clone();
                tokio::spawn(async move {
                    let _ = s.write_all(banner.as_bytes()).await;
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = s.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        BannerBackend {
            name: name.to_string(),
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for BannerBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A daemon with one frontend `main`, one backend `app` (roundrobin, session-id affinity) and a
/// stats listener on 127.0.0.1.
pub struct Rig {
    pub daemon: Daemon,
    pub frontend: SocketAddr,
    pub stats: StatsListener,
    pub backends: Vec<BannerBackend>,
    /// The configuration text the daemon was started with.
    pub text: String,
}

impl Rig {
    /// `stats_extra` is appended to the `[stats]` section (e.g. `admin = true`).
    pub async fn start(names: &[&str], stats_extra: &str) -> Rig {
        Self::start_with_table(names, stats_extra, "").await
    }

    /// As [`Rig::start`], with `table_extra` added to the backend's `[backend.stick-table]`.
    pub async fn start_with_table(names: &[&str], stats_extra: &str, table_extra: &str) -> Rig {
        let mut backends = Vec::new();
        for n in names {
            backends.push(BannerBackend::start(n).await);
        }
        let mut text = format!(
            "[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\ninspect-delay = \"300ms\"\n\n\
             [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\naffinity = [\"session-id\"]\n\n\
             [backend.stick-table]\nsize = \"1k\"\n{table_extra}\n\n[backend.check]\ninter = \"1s\"\n\n",
        );
        for b in &backends {
            text.push_str(&format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n\n",
                b.name, b.addr
            ));
        }
        text.push_str(&format!("[stats]\nbind = \"127.0.0.1:0\"\n{stats_extra}\n"));
        let config = load_toml("stats-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let built = runtime::build(&config, None).unwrap();
        let daemon = tether::run::start(built, Arc::new(DaemonSink::default()))
            .await
            .unwrap();
        let frontend = *daemon.local_addrs().get("main").unwrap();
        let stats = serve_stats(config.stats.clone().unwrap(), daemon.view())
            .await
            .unwrap();
        Rig {
            daemon,
            frontend,
            stats,
            backends,
            text,
        }
    }

    pub fn stats_addr(&self) -> SocketAddr {
        self.stats.local_addr()
    }

    /// Connects through the balancer, sends `first`, returns the name of the backend that answered.
    pub async fn connect(&self, first: &[u8]) -> String {
        connect_via(self.frontend, first).await
    }

    pub async fn get(&self, target: &str) -> HttpResponse {
        http(self.stats_addr(), "GET", target, &[], b"").await
    }
}

/// Connects to `frontend`, sends `first`, reads the banner line of the backend that answered.
pub async fn connect_via(frontend: SocketAddr, first: &[u8]) -> String {
    let run = async {
        let mut s = TcpStream::connect(frontend).await.unwrap();
        s.write_all(first).await.unwrap();
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line).await.unwrap();
        line.trim().to_string()
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the balancer answered within 10 s")
}

/// Bytes that are not TLS: forwarded at once, balanced without a key.
pub const PLAIN: &[u8] = b"hello\n";

/// A TLS 1.2 ClientHello carrying `session_id` (no extensions: nothing says TLS 1.3).
pub fn client_hello(session_id: &[u8]) -> Vec<u8> {
    assert!(session_id.len() <= 32);
    ClientHelloBuilder::new([0x42; 32])
        .session_id(session_id)
        .cipher_suites(&[0xc02f])
        .records()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let s = TcpStream::connect(addr).await.unwrap();
    exchange(s, addr, method, target, headers, body).await
}

/// One HTTP/1.1 request to `addr` on the connection `s`.
async fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// An admin POST as a script sends it: from the page's own origin, with `X-Tether-Admin` (a
/// header no cross-site form can set) in place of the page's token.
pub async fn admin_post(addr: SocketAddr, fields: &str, auth: Option<&str>) -> HttpResponse {
    admin_post_from(IpAddr::from([127, 0, 0, 1]), addr, fields, auth).await
}

/// [`admin_post`] from the client address `source` (a loopback address: 127.0.0.0/8).
pub async fn admin_post_from(
    source: IpAddr,
    addr: SocketAddr,
    fields: &str,
    auth: Option<&str>,
) -> HttpResponse {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let s = socket.connect(addr).await.unwrap();
    let origin = format!("http://{addr}");
    let mut headers = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
        ("X-Tether-Admin", "1"),
    ];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    exchange(s, addr, "POST", "/", &headers, fields.as_bytes()).await
}

/// The CSV row of `svname` in backend `app`, as a column-name lookup.
pub fn csv_row(csv: &str, pxname: &str, svname: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .map(String::from)
        .collect();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        if cells.first() == Some(&pxname) && cells.get(1) == Some(&svname) {
            return header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect();
        }
    }
    panic!("no row {pxname}/{svname} in\n{csv}");
}

pub fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column}"))
}
