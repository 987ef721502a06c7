//! Shared pieces of the end-to-end suites: a daemon started from TOML text on 127.0.0.1:0, a log
//! sink that keeps every connection record for assertions, a plain TCP echo backend, a rustls
//! client that chains sessions, and a relay that dribbles the client's first bytes.
//!
//! Each `e2e_*.rs` file compiles this module on its own, so not every helper is used everywhere.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::ServerName;
use tether::run::Daemon;
use tether_core::engine::{ConnectionRecord, LogSink};
use tether_core::server::check::verify::identifying_client;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Keeps every connection record the daemon reports.
#[derive(Default)]
pub struct CollectingSink {
    records: Mutex<Vec<ConnectionRecord>>,
}

impl LogSink for CollectingSink {
    fn record(&self, rec: &ConnectionRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rec.clone());
    }
}

impl CollectingSink {
    /// Every record so far, in completion order.
    pub fn records(&self) -> Vec<ConnectionRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` records exist (connections are logged when they close, a moment
    /// after the client sees the close) and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<ConnectionRecord> {
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.records();
            if r.len() >= n || Instant::now() >= give_up {
                assert!(
                    r.len() >= n,
                    "expected {n} records, got {}: {r:#?}",
                    r.len()
                );
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The tcplog line of each record, for failure messages.
    pub fn lines(&self) -> String {
        self.records()
            .iter()
            .map(|r| r.tcplog("-"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A running daemon, its records and its (single) frontend address.
pub struct Running {
    pub daemon: Daemon,
    pub sink: Arc<CollectingSink>,
    pub addr: SocketAddr,
}

/// Starts a daemon from native TOML text (whose frontend binds `127.0.0.1:0`).
pub async fn start_toml(toml: &str) -> Running {
    let config = tether_core::config::load_toml("test.toml", toml)
        .unwrap_or_else(|e| panic!("test config must load: {e}\n{toml}"));
    start_config(&config).await
}

/// Starts a daemon from a configuration.
pub async fn start_config(config: &tether_core::config::Config) -> Running {
    // As `run` builds it: the CA files the config names are read first.
    let rt = tether::ca_files::build(config, None, 0).expect("runtime builds");
    let sink = Arc::new(CollectingSink::default());
    let daemon = tether::run::start(rt, sink.clone())
        .await
        .expect("daemon starts");
    let addr = *daemon
        .local_addrs()
        .values()
        .next()
        .expect("one frontend bound");
    Running { daemon, sink, addr }
}

/// A native configuration: one frontend on 127.0.0.1:0, backend `app` with servers s1..sN at
/// `servers`. `frontend` and `backend` are extra TOML lines for those tables; `server` extra lines
/// for every server.
pub fn native_toml(
    global: &str,
    frontend: &str,
    backend: &str,
    server: &str,
    servers: &[SocketAddr],
) -> String {
    let mut t = format!(
        "[global]\ngrace = \"1s\"\n{global}\n\n[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n{frontend}\n\n[[backend]]\nname = \"app\"\n{backend}\n"
    );
    for (i, a) in servers.iter().enumerate() {
        t.push_str(&format!(
            "\n[[backend.server]]\nname = \"s{}\"\naddress = \"{a}\"\n{server}\n",
            i + 1
        ));
    }
    t
}

/// The `[peers]` TOML of `s`, to append to a test configuration.
pub fn peers_toml(s: &tether_core::config::peers::PeersSection) -> String {
    let mut t = format!(
        "[peers]\nname = \"{}\"\nlocal = \"{}\"\nbind = \"{}\"\n",
        s.name,
        s.local,
        s.bind.as_deref().unwrap_or_default()
    );
    for p in &s.peers {
        t.push_str(&format!(
            "[[peers.peer]]\nname = \"{}\"\naddress = \"{}\"\n",
            p.name, p.address
        ));
    }
    t
}

/// A plain TCP echo server that also reports when it accepted each connection.
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    pub accepts: mpsc::UnboundedReceiver<Instant>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoBackend {
    /// Binds 127.0.0.1:0 and echoes every byte back until the client closes.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let (tx, accepts) = mpsc::unbounded_channel();
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    r = listener.accept() => {
                        let Ok((mut s, _)) = r else { continue };
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Instant::now());
                        conns.spawn(async move {
                            let (mut r, mut w) = s.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            accepted,
            accepts,
            task,
        }
    }
}

/// Sends `msg` and reads exactly as many bytes back.
pub async fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    timeout(Duration::from_secs(3), s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo"))??;
    Ok(back)
}

/// Which resumption a [`TlsClient`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// TLS 1.2, session IDs only.
    SessionId,
    /// TLS 1.2, tickets (and IDs).
    Ticket,
    /// TLS 1.3 PSK.
    Psk,
}

/// A rustls client that keeps its sessions across connections, as a browser would.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

/// One TLS connection through the balancer: who answered and whether it resumed.
pub struct TlsConn {
    pub stream: TlsStream<BufReader<TcpStream>>,
    pub backend: String,
    pub resumed: bool,
}

impl TlsClient {
    /// A client with its own session store.
    pub fn new(resume: Resume) -> Self {
        let mut config = identifying_client(matches!(resume, Resume::Psk)).unwrap();
        config.resumption = Resumption::in_memory_sessions(64).tls12_resumption(match resume {
            Resume::SessionId => Tls12Resumption::SessionIdOnly,
            _ => Tls12Resumption::SessionIdOrTickets,
        });
        Self {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Connects to `addr`, completes the handshake and reads the backend's banner line.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsConn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        self.connect_over(tcp).await
    }

    /// The same over an already connected socket (e.g. to a relay).
    pub async fn connect_over(&self, tcp: TcpStream) -> std::io::Result<TlsConn> {
        let name = ServerName::try_from("backend.test").unwrap();
        let fut = async {
            let mut stream = self.connector.connect(name, BufReader::new(tcp)).await?;
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let mut line = Vec::new();
            read_line(&mut stream, &mut line).await?;
            let backend = String::from_utf8_lossy(&line).trim().to_string();
            Ok::<_, std::io::Error>(TlsConn {
                stream,
                backend,
                resumed,
            })
        };
        timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS timed out"))?
    }
}

async fn read_line(
    s: &mut TlsStream<BufReader<TcpStream>>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if b[0] == b'\n' {
            return Ok(());
        }
        out.push(b[0]);
        if out.len() > 256 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

impl TlsConn {
    /// Sends a line and expects it echoed back.
    pub async fn echo(&mut self, msg: &str) -> std::io::Result<()> {
        self.stream.write_all(msg.as_bytes()).await?;
        self.stream.flush().await?;
        let mut back = vec![0u8; msg.len()];
        timeout(Duration::from_secs(3), self.stream.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo"))??;
        if back != msg.as_bytes() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        Ok(())
    }

    /// Closes cleanly (close_notify, then FIN).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A relay in front of `target` that forwards the client's first `slow_bytes` one byte at a time
/// with a pause between each, then relays normally: a ClientHello split over many TCP segments.
pub async fn dribble_relay(target: SocketAddr, slow_bytes: usize, pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                server.set_nodelay(true).ok();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let mut sent = 0usize;
                let mut buf = [0u8; 4096];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    for &b in &buf[..n] {
                        if sent < slow_bytes {
                            if sw.write_all(&[b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(pause).await;
                        } else if sw.write_all(&[b]).await.is_err() {
                            return;
                        }
                        sent += 1;
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    addr
}

/// A 127.0.0.1 address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Waits until `cond` holds, polling every 20 ms, for at most `within`.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until EOF or error, with a bound; returns whether EOF came within `within`.
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let fut = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(within, fut).await.is_ok()
}

/// The server rows of HAProxy's `show stat` on its stats socket `sock`, each keyed by column
/// name (`pxname`, `status`, `check_status`...); empty when the socket does not answer yet.
pub async fn haproxy_server_stats(
    sock: &std::path::Path,
) -> Vec<std::collections::BTreeMap<String, String>> {
    let Ok(mut s) = tokio::net::UnixStream::connect(sock).await else {
        return Vec::new();
    };
    if s.write_all(b"show stat\n").await.is_err() {
        return Vec::new();
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    server_rows(&out)
}

/// The server rows of a `show stat` CSV (HAProxy's or tether's), each keyed by column name.
pub fn server_rows(csv: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .filter(|row| {
            row.get("svname")
                .is_some_and(|s| s != "FRONTEND" && s != "BACKEND")
        })
        .collect()
}
