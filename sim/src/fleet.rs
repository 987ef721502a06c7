//! Client fleets: who connects, how often, and what each connection does.
//!
//! A fleet is a population of simulated clients of one [`ClientKind`]. Each client visits
//! (first visit and revisit gaps drawn from seeded distributions), opens a few connections per
//! visit, and keeps its TLS session for a limited time. All clients of a fleet run as tasks on
//! one turmoil host (turmoil slows down with the number of hosts); each connection starts with a
//! PROXY v2 header carrying the client's own address, NAT sharing included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::engine::proxy_protocol;
use tether_core::route::Cidr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::activity::Activity;
use crate::client::{self, client_hello, ClientKind, ClientSession, Exchange, Failure, HelloShape};
use crate::frontdoor::SharedFrontDoor;
use crate::metrics::{ConnectionRecord, SharedRecorder};
use crate::rng::Rng;
use crate::scenario::SimDuration;
use crate::tls_server::TLS_PORT;

/// A random duration, as written in the scenario.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dist {
    /// Always the same value.
    Fixed {
        /// The value.
        value: SimDuration,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: SimDuration,
        /// Upper bound.
        max: SimDuration,
    },
    /// Exponential (memoryless) with this mean.
    Exponential {
        /// Mean.
        mean: SimDuration,
    },
    /// Log-normal with this median and shape (heavy tail: most come back soon, some much later).
    Lognormal {
        /// Median.
        median: SimDuration,
        /// Shape (σ of the underlying normal).
        sigma: f64,
    },
}

impl Dist {
    /// Draws a duration, capped at one day (bounded).
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        let secs = match *self {
            Dist::Fixed { value } => value.get().as_secs_f64(),
            Dist::Uniform { min, max } => {
                let (a, b) = (min.get().as_secs_f64(), max.get().as_secs_f64());
                a + (b - a).max(0.0) * rng.unit()
            }
            Dist::Exponential { mean } => rng.exponential(mean.get().as_secs_f64()),
            Dist::Lognormal { median, sigma } => {
                rng.lognormal(median.get().as_secs_f64(), sigma.clamp(0.0, 5.0))
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
    }

    /// The distribution's mean in seconds (before the one-day cap).
    pub fn mean_secs(&self) -> f64 {
        match *self {
            Dist::Fixed { value } => value.get().as_secs_f64(),
            Dist::Uniform { min, max } => {
                (min.get().as_secs_f64() + max.get().as_secs_f64().max(min.get().as_secs_f64()))
                    / 2.0
            }
            Dist::Exponential { mean } => mean.get().as_secs_f64(),
            Dist::Lognormal { median, sigma } => {
                let s = sigma.clamp(0.0, 5.0);
                median.get().as_secs_f64() * (s * s / 2.0).exp()
            }
        }
    }
}

fn fixed(ms: u64) -> Dist {
    Dist::Fixed {
        value: SimDuration(Duration::from_millis(ms)),
    }
}
fn default_nat() -> usize {
    1
}
fn default_first_visit() -> Dist {
    Dist::Uniform {
        min: SimDuration(Duration::ZERO),
        max: SimDuration(Duration::from_secs(60)),
    }
}
fn default_revisit() -> Dist {
    Dist::Exponential {
        mean: SimDuration(Duration::from_secs(120)),
    }
}
fn default_per_visit() -> u32 {
    1
}
fn default_gap() -> Dist {
    fixed(200)
}
fn default_request() -> u32 {
    400
}
fn default_response() -> u32 {
    8_000
}
fn default_hold() -> Dist {
    fixed(100)
}
fn default_lifetime() -> SimDuration {
    SimDuration(Duration::from_secs(7200))
}
fn default_sni() -> String {
    "app.example.com".to_owned()
}

/// One client population, as written in the scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Name in the report.
    pub name: String,
    /// Resumption behaviour.
    pub kind: ClientKind,
    /// Number of simulated clients.
    pub clients: usize,
    /// Clients sharing one public address (carrier-grade NAT, offices).
    #[serde(default = "default_nat")]
    pub clients_per_nat: usize,
    /// When a client first visits.
    #[serde(default = "default_first_visit")]
    pub first_visit: Dist,
    /// Time between the end of a visit and the next one.
    #[serde(default = "default_revisit")]
    pub revisit_gap: Dist,
    /// Connections opened one after another during a visit.
    #[serde(default = "default_per_visit")]
    pub connections_per_visit: u32,
    /// Pause between connections of a visit.
    #[serde(default = "default_gap")]
    pub connection_gap: Dist,
    /// Application bytes sent per connection.
    #[serde(default = "default_request")]
    pub request_bytes: u32,
    /// Application bytes received per connection.
    #[serde(default = "default_response")]
    pub response_bytes: u32,
    /// How long a connection stays open after its response.
    #[serde(default = "default_hold")]
    pub hold: Dist,
    /// How long a client keeps a session or ticket before forgetting it.
    #[serde(default = "default_lifetime")]
    pub session_lifetime: SimDuration,
    /// Send the 1216-byte X25519MLKEM768 key share (TLS 1.3 only): ClientHello spans segments.
    #[serde(default)]
    pub pq_key_share: bool,
    /// Server name in SNI.
    #[serde(default = "default_sni")]
    pub sni: String,
    /// The network the clients' addresses come from (`"203.0.113.0/24"`), one address per NAT
    /// in turn; absent: a network of the fleet's own in 100.64.0.0/10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// No visit of this fleet starts after this time (default: the scenario's end): fleets
    /// with staggered windows draw a daily curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<SimDuration>,
    /// How busy the fleet is through the day: visits are thinned to follow this curve, the
    /// revisit gap giving the rate at its peak (absent: the same all the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

impl FleetSpec {
    /// The fleet's own network, if it names one; an unreadable one is a scenario error.
    pub fn own_network(&self) -> Result<Option<Cidr>, String> {
        self.network
            .as_deref()
            .map(|n| {
                n.parse::<Cidr>()
                    .map_err(|e| format!("fleet {}: network: {e}", self.name))
            })
            .transpose()
    }

    /// Why the fleet's own settings cannot be used, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.own_network()?;
        if let Some(a) = &self.activity {
            a.validate()
                .map_err(|e| format!("fleet {}: {e}", self.name))?;
        }
        Ok(())
    }

    /// Connections a second the fleet opens at its busiest (every client visiting at the rate
    /// its revisit gap gives).
    pub fn peak_connection_rate(&self) -> f64 {
        let gap = self.revisit_gap.mean_secs()
            + f64::from(self.connections_per_visit.saturating_sub(1))
                * self.connection_gap.mean_secs();
        self.clients as f64 * f64::from(self.connections_per_visit) / gap.max(0.001)
    }

    /// The public address of client `client` of this fleet (at position `fleet`).
    pub fn address(&self, fleet: usize, client: usize) -> IpAddr {
        match self.own_network() {
            Ok(Some(net)) => address_in(net, client / self.clients_per_nat.max(1)),
            _ => client_address(fleet, client, self.clients_per_nat),
        }
    }
}

/// Host `n` of `net` (skipping the network's own address when it has others), wrapping
/// around when the network has fewer hosts.
pub fn address_in(net: Cidr, n: usize) -> IpAddr {
    let (lo, hi) = net.range();
    let hosts = hi - lo;
    let offset = if hosts == 0 {
        0
    } else {
        1 + (n as u128) % hosts
    };
    let ip = Ipv6Addr::from(lo + offset);
    match ip.to_ipv4_mapped() {
        Some(v4) if net.to_string().contains('.') => IpAddr::V4(v4),
        _ => IpAddr::V6(ip),
    }
}

/// The public address of client `client` of fleet `fleet` (clients behind one NAT share it).
pub fn client_address(fleet: usize, client: usize, clients_per_nat: usize) -> IpAddr {
    let nat = (client / clients_per_nat.max(1)) as u32 & 0x000F_FFFF;
    let f = ((fleet as u32 + 1) & 0x0F) << 20;
    IpAddr::V4(Ipv4Addr::from((100u32 << 24) | f | nat))
}

/// The fleet index encoded in an address made by [`client_address`], so that the balancer's
/// per-connection log (which knows only the client address) can be attributed to a fleet.
pub fn fleet_of_address(ip: Ipv4Addr) -> Option<usize> {
    let bits = u32::from(ip);
    if bits >> 24 != 100 {
        return None;
    }
    ((bits >> 20) & 0x0F).checked_sub(1).map(|f| f as usize)
}

/// Everything a fleet's client tasks share.
#[derive(Debug)]
pub struct FleetRun {
    /// Fleet position in the scenario (for addresses and RNG streams).
    pub index: usize,
    /// The fleet.
    pub spec: FleetSpec,
    /// Scenario seed.
    pub seed: u64,
    /// Where each connection goes (a balancer instance, or the server in direct mode).
    pub door: SharedFrontDoor,
    /// No visit starts after this simulated time (ms).
    pub end_ms: u64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Handshake and transfer timeout.
    pub io_timeout: Duration,
    /// Where results go.
    pub recorder: SharedRecorder,
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// The software of a client host: runs its share of the fleet's clients (every `hosts`-th,
/// from `host`) to completion.
pub async fn run_fleet(run: Rc<FleetRun>, host: usize, hosts: usize) -> turmoil::Result {
    let handles: Vec<_> = (host..run.spec.clients)
        .step_by(hosts.max(1))
        .map(|c| tokio::task::spawn_local(simulated_client(run.clone(), c)))
        .collect();
    for h in handles {
        h.await?;
    }
    Ok(())
}

async fn simulated_client(run: Rc<FleetRun>, c: usize) {
    let spec = &run.spec;
    let mut rng = Rng::fork(run.seed, ((run.index as u64) << 32) | c as u64);
    let mut session = ClientSession::new(spec.kind, spec.session_lifetime.get());
    let ip = spec.address(run.index, c);
    let mut port_seq: u32 = (c % spec.clients_per_nat.max(1)) as u32 * 997;
    let first = spec.first_visit.sample(&mut rng);
    if now_ms() + first.as_millis() as u64 >= run.end_ms {
        return;
    }
    tokio::time::sleep(first).await;
    loop {
        if !quiet_spell(&run, &mut rng).await {
            return;
        }
        // DNS round robin: one lookup per visit (None for the other spreads).
        let resolved = run.door.borrow_mut().resolve();
        for k in 0..spec.connections_per_visit {
            if k > 0 {
                tokio::time::sleep(spec.connection_gap.sample(&mut rng)).await;
            }
            port_seq = port_seq.wrapping_add(1);
            let source = SocketAddr::new(ip, 1024 + (port_seq % 64_000) as u16);
            let target = run.door.borrow().pick(source, resolved);
            let target = target.map(|i| (i, run.door.borrow().host(i).to_owned()));
            // Boxed: a client spends most of its life asleep between visits, and its task is
            // sized for its largest state; a day of 100k clients would otherwise hold a
            // connection's worth of state (timers, socket halves, buffers) for each of them.
            let record =
                Box::pin(one_connection(&run, &mut session, &mut rng, source, target)).await;
            run.recorder
                .borrow_mut()
                .connection_ended(&spec.name, record, now_ms());
        }
        if !revisit_gap(&run, &mut rng).await {
            return;
        }
    }
}

/// Sleeps one revisit gap; false (without sleeping) when the next visit would start after the
/// scenario's end: visits only start before it, and nobody sleeps past it.
async fn revisit_gap(run: &FleetRun, rng: &mut Rng) -> bool {
    let gap = run.spec.revisit_gap.sample(rng);
    if now_ms() + gap.as_millis() as u64 >= run.end_ms {
        return false;
    }
    tokio::time::sleep(gap).await;
    true
}

/// Waits out the visits the fleet's activity curve thins away (each a revisit gap); false when
/// the scenario ends first. Without a curve every visit goes ahead and no number is drawn.
async fn quiet_spell(run: &FleetRun, rng: &mut Rng) -> bool {
    let Some(activity) = &run.spec.activity else {
        return true;
    };
    while rng.unit() >= activity.level(now_ms()) {
        if !revisit_gap(run, rng).await {
            return false;
        }
    }
    true
}

async fn one_connection(
    run: &FleetRun,
    session: &mut ClientSession,
    rng: &mut Rng,
    source: SocketAddr,
    target: Option<(usize, String)>,
) -> ConnectionRecord {
    let spec = &run.spec;
    let start_ms = now_ms();
    let kind = spec.kind;
    let offer = session.offer(rng, start_ms);
    let mut record = ConnectionRecord {
        start_ms,
        attempted: offer.attempts_resumption(kind.is_tls13()),
        resumed: false,
        latency_ms: None,
        failure: None,
        instance: target.as_ref().map_or(0, |t| t.0),
    };
    let hello = client_hello(
        kind,
        &offer,
        &HelloShape {
            sni: &spec.sni,
            pq_key_share: spec.pq_key_share && kind.is_tls13(),
        },
        rng,
    );
    let exchange = Exchange {
        request_bytes: spec.request_bytes,
        response_bytes: spec.response_bytes,
        hold: spec.hold.sample(rng),
    };
    let Some((_, target)) = target else {
        // No instance announced: the connection goes nowhere.
        record.failure = Some(Failure::Connect);
        return record;
    };
    // Resolved once: the connect and the PROXY header's destination.
    let destination = SocketAddr::new(turmoil::lookup(target.as_str()), TLS_PORT);
    let connect =
        tokio::time::timeout(run.connect_timeout, crate::net::connect_tcp(destination)).await;
    let stream = match connect {
        Ok(Ok(s)) => s,
        _ => {
            record.failure = Some(Failure::Connect);
            return record;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut first = proxy_protocol::encode_v2(source, destination);
    first.extend_from_slice(&hello);
    let handshake = tokio::time::timeout(run.io_timeout, async {
        client::write_segments(&mut wr, &first).await?;
        client::finish_handshake(&mut rd, &mut wr, kind).await
    })
    .await;
    let mut answer = match handshake {
        Ok(Ok(a)) => a,
        _ => {
            record.failure = Some(Failure::Handshake);
            return record;
        }
    };
    record.latency_ms = Some(now_ms().saturating_sub(start_ms));
    let mut tickets13 = Vec::new();
    let transfer = tokio::time::timeout(
        run.io_timeout,
        client::exchange(&mut rd, &mut wr, exchange, &mut tickets13),
    )
    .await;
    answer.tickets.extend(tickets13);
    record.resumed = session.learn(&offer, &answer, now_ms());
    if !matches!(transfer, Ok(Ok(()))) {
        record.failure = Some(Failure::InFlight);
        return record;
    }
    // Keep the connection open for the hold time; the server never closes first, so EOF or an
    // error meanwhile means the connection broke while in use.
    let mut probe = [0u8; 64];
    if let Ok(read) = tokio::time::timeout(exchange.hold, rd.read(&mut probe)).await {
        if !matches!(read, Ok(n) if n > 0) {
            record.failure = Some(Failure::InFlight);
            return record;
        }
    }
    let _ = wr.shutdown().await;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_shares_addresses_and_fleets_differ() {
        assert_eq!(client_address(0, 0, 10), client_address(0, 9, 10));
        assert_ne!(client_address(0, 0, 10), client_address(0, 10, 10));
        assert_ne!(client_address(0, 0, 1), client_address(1, 0, 1));
        for fleet in [0, 1, 14] {
            let IpAddr::V4(ip) = client_address(fleet, 12_345, 3) else {
                panic!("v4 expected")
            };
            assert_eq!(fleet_of_address(ip), Some(fleet));
        }
        assert_eq!(fleet_of_address(Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    #[test]
    fn own_networks_give_addresses_inside_them() {
        let net: Cidr = "203.0.113.0/30".parse().unwrap();
        let got: Vec<IpAddr> = (0..4).map(|n| address_in(net, n)).collect();
        let want: Vec<IpAddr> = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let host: Cidr = "192.0.2.9".parse().unwrap();
        assert_eq!(address_in(host, 7), "192.0.2.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn distributions_sample_in_bounds() {
        let mut rng = Rng::new(5);
        let u = Dist::Uniform {
            min: SimDuration(Duration::from_secs(1)),
            max: SimDuration(Duration::from_secs(2)),
        };
        for _ in 0..100 {
            let d = u.sample(&mut rng);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
        }
        assert_eq!(fixed(250).sample(&mut rng), Duration::from_millis(250));
    }
}
