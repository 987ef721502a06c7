//! The scenario's fleets as real rustls clients: the simulator's visit pattern (first visit,
//! revisit gaps, connections per visit, gaps, hold), on the wall clock divided by the time
//! scale, each connection recorded as the simulator records it.
//!
//! Each fleet kind is configured as the simulator defines it: TLS 1.2 with session IDs only,
//! TLS 1.2 with tickets (rustls sends a random session ID beside the ticket, as Go does, where
//! OpenSSL sends SHA-256 of the ticket),
//! TLS 1.3 tickets (rustls uses each once), or no resumption. Clients behind one NAT share a
//! source address on 127.0.0.0/8: fleet `f` uses 127.(10+f).x.y, so the balancer's logs can be
//! attributed to fleets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind};
use tether_sim::client::{ClientKind, Failure};
use tether_sim::fleet::FleetSpec;
use tether_sim::metrics::{ConnectionRecord, SharedRecorder};
use tether_sim::rng::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::delay::{self, Link, Relay};
use crate::probe::session_store::ChainSessionStore;
use tether_core::server::check::verify::identifying_client;

/// The wall clock of a run, read in scenario time.
#[derive(Clone, Copy)]
pub struct ScaledClock {
    start: Instant,
    scale: f64,
}

impl ScaledClock {
    /// Scenario time starts now; it runs `scale` times faster than the wall clock.
    pub fn start(scale: f64) -> Self {
        ScaledClock {
            start: Instant::now(),
            scale,
        }
    }

    /// Scenario milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.scale) as u64
    }

    /// The wall time that `d` of scenario time takes.
    pub fn wall(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }

    /// The scenario time that `wall` of wall time is.
    pub fn scenario(&self, wall: Duration) -> Duration {
        wall.mul_f64(self.scale)
    }

    /// Sleeps `d` of scenario time.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(self.wall(d)).await;
    }
}

/// Who a certificate belongs to: the testbed's names, else the subject CN (else a fingerprint).
#[derive(Clone, Default)]
pub struct ServerNames {
    known: BTreeMap<Vec<u8>, String>,
}

impl ServerNames {
    /// Names certificates the testbed issued.
    pub fn insert(&mut self, cert: &CertificateDer<'_>, name: &str) {
        self.known.insert(cert.to_vec(), name.to_owned());
    }

    fn name(&self, cert: &[u8]) -> String {
        self.known.get(cert).cloned().unwrap_or_else(|| {
            crate::probe::certificate::subject_common_name(cert).unwrap_or_else(|| {
                let fp = crate::probe::certificate::fingerprint(cert);
                format!("cert-{}", &fp[..fp.len().min(12)])
            })
        })
    }
}

/// What every client of a fleet shares.
pub struct FleetRun {
    /// Position of the fleet in the scenario (RNG stream, source addresses).
    pub index: usize,
    /// The fleet.
    pub spec: FleetSpec,
    /// Scenario seed.
    pub seed: u64,
    /// The balancer.
    pub target: SocketAddr,
    /// No visit starts after this scenario time (ms).
    pub end_ms: u64,
    /// Scenario time.
    pub clock: ScaledClock,
    /// Certificate → server name.
    pub names: Rc<ServerNames>,
    /// Where results go.
    pub recorder: SharedRecorder,
    /// On the testbed, the clients↔balancer link (its servers answer each request with the
    /// bytes it asks for). Against `--target` the network is real and the servers need not
    /// answer; only a reset counts as a failure there.
    pub testbed_link: Option<Link>,
}

impl FleetRun {
    fn testbed_servers(&self) -> bool {
        self.testbed_link.is_some()
    }
}

/// A client's connection to the balancer: the socket, or the testbed's relay in front of it.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// Connect timeout, in scenario time (as the simulator's clients).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshake and transfer timeout, in scenario time.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// The source address of client `c` of fleet `fleet` (clients behind one NAT share it).
pub fn source_ip(fleet: usize, c: usize, clients_per_nat: usize) -> Ipv4Addr {
    let nat = c / clients_per_nat.max(1);
    Ipv4Addr::new(
        127,
        10 + fleet as u8,
        (nat / 254) as u8,
        (nat % 254) as u8 + 1,
    )
}

/// The fleet a source address of [`source_ip`] belongs to.
pub fn fleet_of_ip(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[0] == 127 => (v4.octets()[1] as usize).checked_sub(10),
        _ => None,
    }
}

/// Runs every client of the fleet to the end of the scenario.
pub async fn run_fleet(run: Rc<FleetRun>) {
    if run.spec.kind == ClientKind::Tls12TicketOpenssl {
        // rustls cannot send SHA-256(ticket) as its session ID: the balancer sees Go-like
        // clients, and learns the random ID the server echoes as one more key.
        tracing::warn!(
            fleet = %run.spec.name,
            "tls12-ticket-openssl runs as rustls clients, which send a random session ID beside \
             the ticket (tls12-ticket-go)"
        );
    }
    let clients: Vec<_> = (0..run.spec.clients)
        .map(|c| tokio::task::spawn_local(one_client(run.clone(), c)))
        .collect();
    for c in clients {
        let _ = c.await;
    }
}

async fn one_client(run: Rc<FleetRun>, c: usize) {
    let spec = &run.spec;
    let mut rng = Rng::fork(run.seed, ((run.index as u64) << 32) | c as u64);
    let store = Arc::new(ChainSessionStore::new());
    let Ok(config) = client_config(spec.kind, store.clone()) else {
        return;
    };
    let connector = TlsConnector::from(Arc::new(config));
    let ip = source_ip(run.index, c, spec.clients_per_nat);
    let first = spec.first_visit.sample(&mut rng);
    if run.clock.now_ms() + first.as_millis() as u64 >= run.end_ms {
        return;
    }
    run.clock.sleep(first).await;
    loop {
        for k in 0..spec.connections_per_visit {
            if k > 0 {
                run.clock.sleep(spec.connection_gap.sample(&mut rng)).await;
            }
            let hold = spec.hold.sample(&mut rng);
            let record = connection(&run, &connector, &store, ip, hold).await;
            run.recorder
                .borrow_mut()
                .connection_ended(&spec.name, record, run.clock.now_ms());
        }
        let gap = spec.revisit_gap.sample(&mut rng);
        if run.clock.now_ms() + gap.as_millis() as u64 >= run.end_ms {
            return;
        }
        run.clock.sleep(gap).await;
    }
}

fn client_config(kind: ClientKind, store: Arc<ChainSessionStore>) -> anyhow::Result<ClientConfig> {
    let mut config = identifying_client(kind.is_tls13())?;
    config.resumption = match kind {
        ClientKind::NoResumption => Resumption::disabled(),
        ClientKind::Tls12SessionId => {
            Resumption::store(store).tls12_resumption(Tls12Resumption::SessionIdOnly)
        }
        _ => Resumption::store(store).tls12_resumption(Tls12Resumption::SessionIdOrTickets),
    };
    Ok(config)
}

async fn connection(
    run: &FleetRun,
    connector: &TlsConnector,
    store: &ChainSessionStore,
    ip: Ipv4Addr,
    hold: Duration,
) -> ConnectionRecord {
    let start_ms = run.clock.now_ms();
    let wall_start = Instant::now();
    store.begin_connection();
    let mut record = ConnectionRecord {
        start_ms,
        ..ConnectionRecord::default()
    };
    let connected = timeout(
        run.clock.wall(CONNECT_TIMEOUT),
        connect(ip, run.target, run.testbed_link.as_ref()),
    );
    let tcp = match connected.await {
        Ok(Ok(tcp)) => tcp,
        _ => {
            record.failure = Some(Failure::Connect);
            return record;
        }
    };
    let sni = ServerName::try_from(run.spec.sni.clone())
        .unwrap_or_else(|_| ServerName::try_from("app.example.com").expect("a valid name"));
    let handshake = timeout(run.clock.wall(IO_TIMEOUT), connector.connect(sni, tcp)).await;
    record.attempted = store.activity().offered;
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        _ => {
            record.failure = Some(Failure::Handshake);
            return record;
        }
    };
    record.latency_ms = Some(run.clock.scenario(wall_start.elapsed()).as_millis() as u64);
    let (_, conn) = tls.get_ref();
    record.resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let server = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map_or_else(|| "unknown".to_owned(), |c| run.names.name(c));
    {
        let mut rec = run.recorder.borrow_mut();
        rec.server_open(&server, start_ms);
        rec.server_handshake(&server, record.resumed, start_ms);
    }
    let exchanged = timeout(
        run.clock.wall(IO_TIMEOUT),
        exchange(&mut tls, &run.spec, run.testbed_servers()),
    )
    .await;
    if !matches!(exchanged, Ok(Ok(()))) {
        record.failure = Some(Failure::InFlight);
    } else {
        // Held open; a testbed server never closes first, so EOF or an error means it broke.
        let mut probe = [0u8; 4096];
        let until = Instant::now() + run.clock.wall(hold);
        while let Ok(read) = tokio::time::timeout_at(until, tls.read(&mut probe)).await {
            match read {
                Ok(n) if n > 0 && !run.testbed_servers() => continue,
                Ok(0) if !run.testbed_servers() => break,
                _ => {
                    record.failure = Some(Failure::InFlight);
                    break;
                }
            }
        }
        let _ = tls.shutdown().await;
    }
    run.recorder.borrow_mut().server_close(&server);
    record
}

/// Connects from `ip`; on the testbed, over the clients' link: the connect takes its round
/// trip, and every byte its latency each way.
async fn connect(
    ip: Ipv4Addr,
    target: SocketAddr,
    link: Option<&Link>,
) -> std::io::Result<Box<dyn ClientIo>> {
    if let Some(link) = link {
        delay::wait_until(tokio::time::Instant::now() + delay::round_trip(link)).await;
    }
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    let tcp = socket.connect(target).await?;
    Ok(match link {
        Some(link) => {
            let (stream, relay) = Relay::new(link.clone()).start(tcp);
            tokio::spawn(relay);
            Box::new(stream)
        }
        None => Box::new(tcp),
    })
}

/// Sends the request (the response size wanted, then padding) and, from a testbed server,
/// reads the response.
async fn exchange<S>(tls: &mut S, spec: &FleetSpec, testbed: bool) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = spec.response_bytes.to_be_bytes().to_vec();
    request.resize((spec.request_bytes as usize).max(4), b'r');
    tls.write_all(&request).await?;
    tls.flush().await?;
    if !testbed {
        return Ok(());
    }
    let mut response = vec![0u8; spec.response_bytes as usize];
    tls.read_exact(&mut response).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_groups_share_a_source_and_fleets_are_told_apart() {
        assert_eq!(source_ip(0, 0, 4), source_ip(0, 3, 4));
        assert_ne!(source_ip(0, 0, 4), source_ip(0, 4, 4));
        assert_ne!(source_ip(0, 0, 1), source_ip(1, 0, 1));
        for f in [0, 3, 14] {
            let ip = IpAddr::V4(source_ip(f, 9_999, 1));
            assert_eq!(fleet_of_ip(ip), Some(f));
        }
        assert_eq!(fleet_of_ip("10.0.0.1".parse().unwrap()), None);
    }
}
