//! A rustls TLS server on 127.0.0.1 with its own certificate, session cache and ticket keys.
//!
//! After the handshake it writes its name and a newline, then echoes; it counts handshakes and
//! resumptions so a test can check what the servers saw, not only what a client reports.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::{SelfSignedCert, TestbedError, TlsVersions};

/// How to build a [`TlsBackend`].
#[derive(Debug, Clone)]
pub struct TlsBackendConfig {
    /// Name, certificate CN, and the first line sent on every connection.
    pub name: String,
    /// Versions offered.
    pub versions: TlsVersions,
    /// Issue stateless tickets (TLS 1.2 RFC 5077 and TLS 1.3) from this backend's own keys.
    /// Without them TLS 1.2 resumes by session ID and TLS 1.3 tickets refer to the cache.
    pub tickets: bool,
    /// Server-side session cache entries; 0 disables the cache.
    pub session_cache: usize,
    /// Start every ticket with 16 fresh random bytes instead of rustls' 16-byte key name, as
    /// Go ≥ 1.21 does (`iv | encrypted_state | mac`): tickets with no stable key name.
    pub unnamed_tickets: bool,
}

impl TlsBackendConfig {
    /// Both versions, tickets on, a 256-entry cache.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            versions: TlsVersions::Both,
            tickets: true,
            session_cache: 256,
            unnamed_tickets: false,
        }
    }

    /// Issue tickets with a random prefix (no stable key name).
    pub fn unnamed_tickets(mut self, on: bool) -> Self {
        self.unnamed_tickets = on;
        self
    }

    /// Restrict the versions.
    pub fn versions(mut self, versions: TlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// Turn tickets on or off.
    pub fn tickets(mut self, tickets: bool) -> Self {
        self.tickets = tickets;
        self
    }

    /// Set the session cache size (0 = none).
    pub fn session_cache(mut self, entries: usize) -> Self {
        self.session_cache = entries;
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
}

/// A running rustls backend; aborted (with its connections) on drop or [`TlsBackend::shutdown`].
#[derive(Debug)]
pub struct TlsBackend {
    addr: SocketAddr,
    cert: Arc<SelfSignedCert>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    /// Bind 127.0.0.1:0 and serve until dropped.
    pub async fn start(config: TlsBackendConfig) -> Result<Self, TestbedError> {
        Self::start_at(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Bind a given address (e.g. the port of a backend that was shut down, to bring "the same"
    /// server back) and serve until dropped.
    pub async fn start_at(
        config: TlsBackendConfig,
        addr: SocketAddr,
    ) -> Result<Self, TestbedError> {
        let cert = Arc::new(SelfSignedCert::generate(&config.name)?);
        let server_config = Arc::new(server_config(&config, &cert)?);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| TestbedError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestbedError::io("reading the bound address", e))?;
        let counters = Arc::new(Counters::default());
        let banner = Arc::<[u8]>::from(format!("{}\n", config.name).into_bytes());
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(server_config),
            banner,
            counters.clone(),
        ));
        Ok(Self {
            addr,
            cert,
            counters,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name (certificate CN and banner).
    pub fn name(&self) -> &str {
        &self.cert.name
    }

    /// SHA-256 of its certificate, as the probe reports it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.cert.fingerprint()
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Completed TLS handshakes, full or resumed.
    pub fn handshakes(&self) -> u64 {
        self.counters.handshakes.load(Ordering::Relaxed)
    }

    /// Completed handshakes that resumed a session this backend issued.
    pub fn resumed(&self) -> u64 {
        self.counters.resumed.load(Ordering::Relaxed)
    }

    /// Handshakes that failed.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Stop accepting and drop every open connection.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(
    config: &TlsBackendConfig,
    cert: &SelfSignedCert,
) -> Result<ServerConfig, TestbedError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.versions {
        TlsVersions::Tls12 => &[&rustls::version::TLS12],
        TlsVersions::Tls13 => &[&rustls::version::TLS13],
        TlsVersions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.key_der())?;
    server.session_storage = if config.session_cache == 0 {
        Arc::new(NoServerSessionStorage {})
    } else {
        ServerSessionMemoryCache::new(config.session_cache)
    };
    if config.tickets {
        server.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    if config.unnamed_tickets {
        server.ticketer = Arc::new(RandomPrefix {
            inner: rustls::crypto::ring::Ticketer::new()?,
            random: provider_random(),
        });
    }
    Ok(server)
}

fn provider_random() -> &'static dyn rustls::crypto::SecureRandom {
    rustls::crypto::ring::default_provider().secure_random
}

/// A ticketer whose tickets start with 16 random bytes: no two tickets share a prefix.
#[derive(Debug)]
struct RandomPrefix {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    random: &'static dyn rustls::crypto::SecureRandom,
}

impl rustls::server::ProducesTickets for RandomPrefix {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; 16];
        self.random.fill(&mut out).ok()?;
        out.extend(self.inner.encrypt(plain)?);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher.get(16..)?)
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    banner: Arc<[u8]>,
    counters: Arc<Counters>,
) {
    // Owned here so that aborting this task aborts every connection too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(session(tcp, acceptor.clone(), banner.clone(), counters.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn session(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    banner: Arc<[u8]>,
    counters: Arc<Counters>,
) {
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "testbed backend: handshake failed");
            return;
        }
    };
    counters.handshakes.fetch_add(1, Ordering::Relaxed);
    if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
        counters.resumed.fetch_add(1, Ordering::Relaxed);
    }
    if tls.write_all(&banner).await.is_err() || tls.flush().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
