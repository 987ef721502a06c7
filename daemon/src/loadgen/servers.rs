//! The scenario's servers as real rustls TLS servers on 127.0.0.1, for `tether loadgen --testbed`.
//!
//! Each server has its own certificate (clients tell servers apart by it), a session cache of the
//! scenario's size whose entries expire after the (time-scaled) session timeout, and ticket keys
//! as the scenario says: none, per server (new at every boot) or shared (one key for all, kept
//! across restarts). A crash aborts the listener and every connection, so the port refuses at
//! once, as a dead process's port does; a restart binds the same port with an empty cache. A
//! lost host or a partition makes the server silent instead ([`super::silence`]): connects get
//! no answer and open connections freeze; a heal brings a partitioned server back as it was.
//! Every connection to a server passes through a relay holding its bytes for the balancer↔server
//! link's latency ([`super::delay`]), which `latency` events change.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use socket2::SockRef;
use tether_sim::scenario::{ServersSpec, TicketKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::delay::{Link, Relay};
use super::silence::{Gate, GatedStream, SilentPort};

/// A server's certificate and key, made once and kept across restarts.
pub struct Identity {
    /// The server's name (certificate subject CN).
    pub name: String,
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    /// Issues a self-signed P-256 certificate with CN = `name` with `openssl req` (the binary
    /// carries no certificate issuer of its own).
    pub fn issue(name: &str, dir: &Path) -> Result<Self> {
        let key_pem = dir.join(format!("{name}.key.pem"));
        let cert = dir.join(format!("{name}.crt.der"));
        let key = dir.join(format!("{name}.key.der"));
        let subject = format!("/CN={name}");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-outform",
            "DER",
            "-keyout",
            path(&key_pem)?,
            "-out",
            path(&cert)?,
        ])?;
        openssl(&[
            "pkey",
            "-in",
            path(&key_pem)?,
            "-outform",
            "DER",
            "-out",
            path(&key)?,
        ])?;
        Ok(Identity {
            name: name.to_owned(),
            cert: CertificateDer::from(std::fs::read(&cert)?),
            key: std::fs::read(&key)?,
        })
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::try_from(self.key.clone())
            .map_err(|e| anyhow::anyhow!("{}: private key: {e}", self.name))
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 scratch path")
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (install it: apt-get install openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Session cache entries older than the timeout are not resumed (OpenSSL counts from creation).
#[derive(Debug)]
struct TimedCache {
    inner: Arc<ServerSessionMemoryCache>,
    timeout: Duration,
    epoch: Instant,
}

impl TimedCache {
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (stamp, value) = stored.split_at_checked(8)?;
        let born = u64::from_be_bytes(stamp.try_into().ok()?);
        let age = (self.epoch.elapsed().as_millis() as u64).saturating_sub(born);
        (Duration::from_millis(age) < self.timeout).then(|| value.to_vec())
    }
}

impl StoresServerSessions for TimedCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut v = (self.epoch.elapsed().as_millis() as u64)
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(&value);
        self.inner.put(key, v)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.get(key)?)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.take(key)?)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// One server of the testbed: its identity, port, the running boot (if up) and whether its
/// port is held silent.
pub struct TestbedServer {
    /// Certificate and name.
    pub identity: Arc<Identity>,
    /// Where it listens (the same port across restarts).
    pub addr: SocketAddr,
    /// The one-way latency of the balancer↔server link (wall time), kept across restarts.
    pub link: watch::Sender<Duration>,
    boot: Option<Boot>,
    silent: Option<Silent>,
}

/// One boot of a server: its TLS configuration (session cache, ticket key), the task accepting
/// on its port (none while silent) and its open connections, which move bytes while `open`.
struct Boot {
    acceptor: TlsAcceptor,
    /// The listening socket, kept while the server is silent (then not accepting).
    listener: Option<Arc<TcpListener>>,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<JoinSet<()>>>,
    open: watch::Sender<bool>,
}

impl Boot {
    /// Starts accepting on the server's port (bound now, or again after silence: its queue
    /// grows back); connections go through the server's link.
    async fn listen(&mut self, server: &TestbedServer) -> Result<()> {
        let (addr, name) = (server.addr, &server.identity.name);
        let listener = match &self.listener {
            Some(l) => {
                SockRef::from(&**l).listen(BACKLOG)?;
                l.clone()
            }
            None => Arc::new(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("{name}: binding {addr}"))?,
            ),
        };
        self.listener = Some(listener.clone());
        self.accept = Some(tokio::spawn(serve(
            listener,
            self.acceptor.clone(),
            self.connections.clone(),
            self.open.subscribe(),
            server.link.subscribe(),
        )));
        Ok(())
    }

    /// Stops accepting (the listener stays open); returns once the accept task is gone.
    async fn stop_accepting(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Closes every open connection.
    fn close_all(&self) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        if let Some(task) = &self.accept {
            task.abort();
        }
        self.close_all();
    }
}

/// A server whose port is held silent; `lost`: the host is down (only a restart brings it
/// back), otherwise it is cut off by a partition and keeps its state for the heal.
struct Silent {
    _port: SilentPort,
    lost: bool,
}

/// The scenario's servers, their shared ticket key (if any), the time scale and the
/// balancer↔server latency new servers start with.
pub struct ServerFleet {
    spec: ServersSpec,
    shared_ticketer: Option<Arc<dyn ProducesTickets>>,
    scale: f64,
    latency: Duration,
    /// The servers, by index.
    pub servers: Vec<TestbedServer>,
}

impl ServerFleet {
    /// Issues certificates for `spec.count` servers (named as the simulator names them), each
    /// reached over a link of one-way `latency` (wall time).
    pub fn new(spec: &ServersSpec, scale: f64, latency: Duration, dir: &Path) -> Result<Self> {
        let shared_ticketer = match spec.ticket_keys {
            TicketKeys::Shared => Some(rustls::crypto::ring::Ticketer::new()?),
            _ => None,
        };
        let mut fleet = ServerFleet {
            spec: spec.clone(),
            shared_ticketer,
            scale,
            latency,
            servers: Vec::new(),
        };
        for _ in 0..spec.count {
            fleet.add(dir)?;
        }
        Ok(fleet)
    }

    /// Adds a server (not started): a new identity on a free port.
    pub fn add(&mut self, dir: &Path) -> Result<usize> {
        let i = self.servers.len();
        let identity = Arc::new(Identity::issue(&tether_sim::server_name(i), dir)?);
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        self.servers.push(TestbedServer {
            identity,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            link: watch::channel(self.latency).0,
            boot: None,
            silent: None,
        });
        Ok(i)
    }

    /// Boots server `i`: empty cache, new per-server ticket key, listening on its port.
    pub async fn start(&mut self, i: usize) -> Result<()> {
        let config = Arc::new(self.config(&self.servers[i].identity)?);
        let s = &mut self.servers[i];
        s.silent = None;
        let mut boot = Boot {
            acceptor: TlsAcceptor::from(config),
            listener: None,
            accept: None,
            connections: Arc::default(),
            open: watch::channel(true).0,
        };
        boot.listen(s).await?;
        s.boot = Some(boot);
        Ok(())
    }

    /// The process dies: the listener and every connection close; the port refuses. Returns
    /// once the listener is closed (the port can be bound again).
    pub async fn crash(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.silent = None;
        if let Some(mut boot) = s.boot.take() {
            boot.stop_accepting().await;
            boot.close_all();
        }
    }

    /// The host is lost: the port goes silent, open connections freeze; `restart` reboots it
    /// (empty cache), `heal` does not bring it back.
    pub async fn host_down(&mut self, i: usize) -> Result<()> {
        self.silence(i, true).await
    }

    /// The balancer is cut off from server `i`: silent as a lost host, but the server keeps
    /// running behind the cut (its cache, its connections) until `heal`.
    pub async fn partition(&mut self, i: usize) -> Result<()> {
        self.silence(i, false).await
    }

    async fn silence(&mut self, i: usize, lost: bool) -> Result<()> {
        let s = &mut self.servers[i];
        if let Some(held) = s.silent.as_mut() {
            held.lost |= lost;
            return Ok(());
        }
        let listener = match s.boot.as_mut() {
            Some(boot) => {
                boot.stop_accepting().await;
                boot.open.send_replace(false);
                boot.listener.clone()
            }
            None => None,
        };
        // The running server's port goes silent in place (never refusing in between); a
        // crashed one's is bound anew.
        let port = match listener {
            Some(l) => SilentPort::over(&l)?,
            None => SilentPort::hold(s.addr)?,
        };
        s.silent = Some(Silent { _port: port, lost });
        Ok(())
    }

    /// The partition of server `i` heals: it accepts again and its frozen connections go on.
    /// A lost host stays down (only `restart` boots it).
    pub async fn heal(&mut self, i: usize) -> Result<()> {
        let s = &mut self.servers[i];
        if s.silent.as_ref().is_none_or(|h| h.lost) {
            return Ok(());
        }
        s.silent = None;
        if let Some(mut boot) = s.boot.take() {
            let listening = boot.listen(s).await;
            boot.open.send_replace(true);
            s.boot = Some(boot);
            listening?;
        }
        Ok(())
    }

    fn config(&self, identity: &Identity) -> Result<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(vec![identity.cert.clone()], identity.key()?)?;
        c.session_storage = Arc::new(TimedCache {
            inner: ServerSessionMemoryCache::new(self.spec.session_cache.max(1)),
            timeout: self.spec.session_timeout.get().div_f64(self.scale),
            epoch: Instant::now(),
        });
        c.send_tls13_tickets = usize::from(self.spec.tls13_tickets);
        c.ticketer = match self.spec.ticket_keys {
            TicketKeys::None => c.ticketer,
            TicketKeys::PerServer => rustls::crypto::ring::Ticketer::new()?,
            TicketKeys::Shared => self.shared_ticketer.clone().context("shared ticket key")?,
        };
        Ok(c)
    }
}

/// The listen backlog of a server that accepts (tokio's default).
const BACKLOG: i32 = 1024;

async fn serve(
    listener: Arc<TcpListener>,
    acceptor: TlsAcceptor,
    connections: Arc<Mutex<JoinSet<()>>>,
    gate: Gate,
    link: Link,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // The relay runs in the connection's task: a crash drops both, closing the socket.
        let (stream, relay) = Relay::accepted(link.clone()).start(tcp);
        let session = session(GatedStream::new(stream, gate.clone()), acceptor.clone());
        let mut set = connections.lock().unwrap_or_else(|e| e.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            tokio::join!(relay, session);
        });
    }
}

/// After the handshake: the client asks for N response bytes (4 bytes, big endian, then its
/// request padding); the server sends them and reads until the client closes.
async fn session(tcp: GatedStream<DuplexStream>, acceptor: TlsAcceptor) {
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    let mut want = [0u8; 4];
    if tls.read_exact(&mut want).await.is_err() {
        return;
    }
    let n = u32::from_be_bytes(want).min(1 << 20) as usize;
    if tls.write_all(&vec![b'x'; n]).await.is_err() || tls.flush().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    while matches!(tls.read(&mut sink).await, Ok(k) if k > 0) {}
}
