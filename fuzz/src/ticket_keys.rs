//! The ticket-key learner fed whole connections, the way the engine feeds it: each connection's
//! ClientHello is parsed and routed through the backend's chain (`ticket-key` only), then the
//! server's flight is parsed in the reads the input chooses and each ServerHello and
//! NewSessionTicket teaches the learner. Reloads renumber servers in between.
//!
//! Input: one byte choosing the bootstrap, then records until the input ends:
//! `server, client, cut count, cut seeds…, u16 hello length, hello, u16 flight length, flight`.
//! A server byte of 0xff is a reload instead (one more byte: the renumbering).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use tether_core::affinity::ticket_keys::{Bootstrap, Limits, TicketKeys};
use tether_core::affinity::{Affinity, AffinityKey, Chain, NoKeyReason, TableKind, Tables};
use tether_core::stick::{Learn, Lookup};
use tether_core::tls::client_hello::HelloOutcome;
use tether_core::tls::{ClientHelloParser, ServerEvent, ServerFlight, DEFAULT_HELLO_CAP};
use tether_core::{Progress, ServerId, Timestamp};

/// Server ids the input can name: more than [`LIMITS`] tracks, so the server cap is reached.
const SERVERS: u32 = 6;

/// Small caps, so that short inputs reach every one of them.
pub const LIMITS: Limits = Limits {
    names_per_server: 2,
    servers: 4,
    shared: 3,
    refuted: 4,
    clients: 3,
    unnamed_after: 5,
    probe_every: 3,
};

/// A backend whose only table is the learner (the chain has no stick-table key).
struct Backend {
    keys: Mutex<TicketKeys>,
    layout: Cell<u64>,
}

impl Tables for Backend {
    fn lookup(&self, _: TableKind, _: &[u8], _: Timestamp) -> Option<Lookup> {
        None
    }

    fn learn(&self, _: TableKind, _: &[u8], _: ServerId, _: Timestamp) -> Option<Learn> {
        None
    }

    fn ticket_keys(&self) -> Option<&Mutex<TicketKeys>> {
        Some(&self.keys)
    }

    fn ticket_layout(&self) -> u64 {
        self.layout.get()
    }
}

/// One connection: who answers, from where, the client's and the server's bytes.
struct Connection<'a> {
    server: ServerId,
    client: Option<IpAddr>,
    cuts: Vec<usize>,
    hello: &'a [u8],
    flight: &'a [u8],
}

/// One step of the input.
enum Step<'a> {
    Connection(Connection<'a>),
    Reload(u8),
}

/// Takes `n` bytes off the front of `data` (fewer at its end).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fn bytes_u16<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let len = take(data, 2)
        .iter()
        .fold(0usize, |n, &b| n << 8 | usize::from(b));
    take(data, len)
}

/// The steps `data` describes.
fn steps(mut data: &[u8]) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let server = byte(&mut data);
        if server == 0xff {
            out.push(Step::Reload(byte(&mut data)));
            continue;
        }
        let client = match byte(&mut data) {
            0 => None,
            c => Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, c % 5))),
        };
        let n = usize::from(byte(&mut data) % 8);
        let seeds = take(&mut data, n);
        let hello = bytes_u16(&mut data);
        let flight = bytes_u16(&mut data);
        let mut cuts: Vec<usize> = seeds
            .iter()
            .map(|&s| usize::from(s) * flight.len() / 256)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        out.push(Step::Connection(Connection {
            server: ServerId(u32::from(server) % SERVERS),
            client,
            cuts,
            hello,
            flight,
        }));
    }
    out
}

/// Runs every step against a fresh learner, each flight in one read (`split` false) or cut as
/// the input says; checks the caps after every step.
fn run(bootstrap: Bootstrap, steps: &[Step<'_>], split: bool) -> Vec<String> {
    let chain = Chain::new(&[AffinityKey::TicketKey]).with_bootstrap(bootstrap);
    let backend = Backend {
        keys: Mutex::new(TicketKeys::new(LIMITS)),
        layout: Cell::new(0),
    };
    let mut trace = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let now = Timestamp(i as u64);
        match step {
            Step::Reload(shift) => {
                let mut keys = backend.keys.lock().unwrap();
                // A reload renumbers by server name: one-to-one, some servers gone.
                keys.remap_servers(|s| {
                    let to = (s.0 + u32::from(*shift)) % SERVERS;
                    (to != u32::from(*shift) % SERVERS || shift % 2 == 0).then_some(ServerId(to))
                });
                // The backend built by the reload numbers servers as the learner now does.
                backend.layout.set(keys.layout());
                trace.push(format!("reload {shift}"));
            }
            Step::Connection(c) => c.run(&chain, &backend, split, now, &mut trace),
        }
        let keys = backend.keys.lock().unwrap();
        assert_within_caps(&keys);
    }
    let keys = backend.keys.lock().unwrap();
    trace.push(format!("{:?} {}", keys.snapshot(), keys.footprint()));
    trace
}

impl Connection<'_> {
    /// Routes the ClientHello, then learns from the server's flight read by read, as the
    /// engine does (`Connection::on_server_bytes`).
    fn run(
        &self,
        chain: &Chain,
        backend: &Backend,
        split: bool,
        now: Timestamp,
        trace: &mut Vec<String>,
    ) {
        let mut parser = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        let keys = match parser.parse(self.hello) {
            Progress::Done(HelloOutcome::Complete(h)) => Some(chain.hello_wants().extract(&h)),
            _ => None,
        };
        let decision = chain.decide(
            keys.as_ref(),
            NoKeyReason::Malformed,
            self.client,
            backend,
            now,
        );
        trace.push(format!("decide {decision:?}"));
        let mut reads: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for &c in self.cuts.iter().filter(|_| split) {
            reads.push(&self.flight[from..c]);
            from = c;
        }
        reads.push(&self.flight[from..]);
        let mut parser = ServerFlight::new(DEFAULT_HELLO_CAP);
        let mut events = Vec::new();
        for read in reads {
            parser.feed_into(read, &mut events);
            for ev in events.drain(..) {
                let learned = match ev {
                    ServerEvent::ServerHello(info) => format!(
                        "{:?}",
                        chain.on_server_hello(
                            keys.as_ref(),
                            self.client,
                            &info,
                            self.server,
                            backend,
                            now
                        )
                    ),
                    ServerEvent::NewSessionTicket { ticket, .. } => {
                        format!("{}", chain.on_ticket(&ticket, self.server, backend, now))
                    }
                    other => format!("{other:?}"),
                };
                trace.push(learned);
            }
        }
    }
}

/// Every table of the learner within [`LIMITS`].
fn assert_within_caps(keys: &TicketKeys) {
    let l = LIMITS;
    let snap = keys.snapshot();
    assert!(snap.servers.len() <= l.servers, "servers over the cap");
    for s in &snap.servers {
        assert!(s.names.len() <= l.names_per_server, "names over the cap");
        assert!(s.server.0 < SERVERS, "a server that does not exist");
    }
    assert!(snap.shared.len() <= l.shared, "shared names over the cap");
    let names = l.servers * l.names_per_server + l.shared;
    assert!(keys.len() <= names, "{} names held", keys.len());
    let bound = names + l.refuted * l.servers + l.clients + l.servers;
    assert!(keys.footprint() <= bound, "footprint {}", keys.footprint());
}

/// What the learner decided and learned for `data`, each flight in one read or (`split`) cut
/// as the input says; panics when a cap is exceeded.
pub fn trace(data: &[u8], split: bool) -> Vec<String> {
    let mut data = data;
    let bootstrap = match byte(&mut data) % 4 {
        0 => Bootstrap::ClientThenNameless,
        1 => Bootstrap::Nameless,
        2 => Bootstrap::Client,
        _ => Bootstrap::None,
    };
    run(bootstrap, &steps(data), split)
}

/// The fuzz target: no panic, the same decisions and learning whatever the split, caps kept.
pub fn ticket_keys(data: &[u8]) {
    assert_eq!(
        trace(data, false),
        trace(data, true),
        "the split into reads changed what was learned"
    );
}
