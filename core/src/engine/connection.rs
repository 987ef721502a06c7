//! One client connection's life, as a sans-IO state machine: inspect → decide → queue → connect
//! (retry, redispatch, turnaround) → forward while learning → log record.
//!
//! The machine does no I/O and reads no clock: every input carries `now`, and it answers with
//! the next [`Action`] for its driver and the deadline of the step in progress
//! ([`Connection::poll_timeout`]), in quinn-proto's shape. The async driver
//! ([`super::flow::handle`]) performs the actions on a [`super::Net`]; unit tests drive it with
//! bytes and a clock only. Moving bytes once connected stays in [`super::forward`] (the fast
//! path): the machine only sees the server's bytes through [`Connection::on_server_bytes`] and
//! the result through [`Connection::on_forwarded`].
//!
//! The machine updates its backend's shared state (server choice, connection counts, stick
//! tables, passive health): that is the engine's bookkeeping, not I/O.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::affinity::rules::{PendingStore, RequestView};
use crate::affinity::AffinityKey;
use crate::affinity::{AffinityOutcome, Decision, HelloKeys, MatchOutcome, NoKeyReason, Route};
use crate::progress::Progress;
use crate::retry::{Attempts, ConnectFailure, RetryDecision};
use crate::route::{AcceptVerdict, Facts, HelloFacts, Verdict};
use crate::tls::{ClientHelloParser, HelloOutcome, ServerEvent, ServerFlight};
use crate::ServerId;

use super::backend::{Backend, Choice, QueueError};
use super::clock::Clock;
use super::forward::{ForwardTimeouts, Forwarded};
use super::frontend::Frontend;
use super::log::ConnectionRecord;
use super::proxy_protocol::{self, ProxyHeader};
use super::router::Routed;
use super::termination::Termination;

/// Most bytes read from the client per inspect read.
pub const READ_CHUNK: usize = 4096;
/// Longest PROXY protocol v1 line (v2 headers the engine accepts fit too).
const PROXY_HEADER_ROOM: usize = 108;

/// What the driver must do next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read at most `max` more client bytes into [`Connection::inspect_buffer`], until
    /// [`Connection::poll_timeout`]; report with [`Connection::on_client_read`] or
    /// [`Connection::handle_timeout`].
    ReadClient {
        /// Most bytes to read.
        max: usize,
    },
    /// Wait for a connection slot of `server` (its `maxconn`) until the deadline (none when
    /// [`Connection::poll_timeout`] is `None`); report with [`Connection::on_slot`].
    TakeSlot {
        /// The server.
        server: ServerId,
    },
    /// Connect to `server` sending [`Connection::first_bytes`], until the deadline (none when
    /// [`Connection::poll_timeout`] is `None`); report with [`Connection::on_connect`] or
    /// [`Connection::handle_timeout`].
    Connect {
        /// The server.
        server: ServerId,
    },
    /// Sleep until [`Connection::poll_timeout`], then call [`Connection::handle_timeout`]
    /// (the turnaround before a retry).
    Sleep,
    /// Write [`Connection::unsent`] to the server, then forward both ways with these idle
    /// timeouts, feeding server bytes to [`Connection::on_server_bytes`]; report with
    /// [`Connection::on_forwarded`].
    Forward {
        /// The server.
        server: ServerId,
        /// Idle timeouts.
        timeouts: ForwardTimeouts,
    },
    /// Close the client (after shutting its write side down when `shutdown`), then take the
    /// record with [`Connection::finish`].
    Close {
        /// Send a FIN first (a connection that was going to be served).
        shutdown: bool,
    },
}

/// Where the connection is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Inspect,
    Queue {
        server: ServerId,
        until: Option<Instant>,
    },
    Connect {
        server: ServerId,
        until: Option<Instant>,
    },
    Turnaround {
        until: Instant,
        redispatch: bool,
    },
    Forward {
        server: ServerId,
    },
    Closing {
        shutdown: bool,
    },
}

/// What inspection has seen so far.
#[derive(Debug)]
struct Inspection {
    buf: Vec<u8>,
    data_start: usize,
    parser: ClientHelloParser,
    proxy_pending: bool,
    eof: bool,
    timed_out: bool,
    deadline: Instant,
}

/// Retry bookkeeping once a server was chosen.
#[derive(Debug, Default)]
struct Routing {
    decision: Option<Decision>,
    pending: Option<PendingStore>,
    choice: Choice,
    /// How the sticky server fared; outlives the rest (see [`StickyFate`]).
    sticky: StickyFate,
    attempts: Option<Attempts>,
    queue_failed: Option<QueueError>,
    /// A connect failed for lack of a local resource (ends `RC`, the server not blamed).
    local_exhausted: bool,
    balance_key: Option<Vec<u8>>,
    /// When the current slot wait began (queue time is added to `Tw`).
    queued_at: Option<Instant>,
    connect_started: Option<Instant>,
}

/// Learning from the server's cleartext handshake while it is forwarded.
#[derive(Debug)]
struct Learning {
    /// Boxed, and dropped once nothing more can be learned: an idle forwarded connection
    /// (hours, perhaps) does not carry it.
    reader: Option<Box<FlightReader>>,
    response_done: bool,
    learned: u32,
    sent: u64,
}

/// What reads the server's cleartext flight, and its first bytes for response rules.
#[derive(Debug)]
struct FlightReader {
    flight: ServerFlight,
    events: Vec<ServerEvent>,
    response: Vec<u8>,
}

/// What a connection needs only until its first bytes reach a server: inspection, the route
/// verdict and the retry bookkeeping. Boxed, and dropped once the client's first bytes are
/// delivered, so a forwarded connection (idle for hours, perhaps) does not carry them.
#[derive(Debug)]
struct Early {
    inspect: Inspection,
    routing: Routing,
    verdict: RouteVerdict,
}

/// How the connection's sticky server fared: part of the routing state, and copied out at
/// connect for the outcome, which is computed once [`Early`] is gone.
#[derive(Copy, Clone, Debug, Default)]
struct StickyFate {
    /// The sticky server could not be used (down, full, unknown).
    unusable: bool,
    /// The sticky server was given up after a failure (redispatched).
    redispatched: bool,
}

/// Why the early state must be there: the phase says so.
const EARLY: &str = "early state lives until the first bytes are delivered";

/// One client connection, from accept to its log record.
#[derive(Debug)]
pub struct Connection<'a> {
    fe: &'a Frontend,
    be: &'a Backend,
    clock: Clock,
    actconn: &'a AtomicU64,
    start: Instant,
    client: SocketAddr,
    /// The address the client connected to, as a PROXY header from the client's side said.
    proxied_to: Option<SocketAddr>,
    phase: Phase,
    /// `None` once the client's first bytes reached the server.
    early: Option<Box<Early>>,
    /// Boxed, and dropped once the server's handshake has been learned from.
    hello: Option<Box<HelloKeys>>,
    no_hello: NoKeyReason,
    sticky: StickyFate,
    learning: Learning,
    rec: Option<ConnectionRecord>,
}

/// Where the frontend's route rules stand for this connection.
#[derive(Debug, Default)]
struct RouteVerdict {
    /// A rule needs the ClientHello: the backend is chosen when inspection ends.
    pending: bool,
    /// The rule that decided, as logs name it.
    label: Option<String>,
    /// A rule refused the connection.
    refused: bool,
}

impl<'a> Connection<'a> {
    /// A connection accepted at `now` from `peer` on `fe`. `actconn` is the process's count of
    /// open connections, logged as `%ac`.
    pub fn new(
        fe: &'a Frontend,
        clock: Clock,
        actconn: &'a AtomicU64,
        peer: SocketAddr,
        now: Instant,
    ) -> Self {
        let be: &Backend = &fe.backend;
        Connection {
            fe,
            be,
            clock,
            actconn,
            start: now,
            client: peer,
            proxied_to: None,
            phase: Phase::Inspect,
            early: Some(Box::new(Early {
                inspect: Inspection {
                    // One read's worth: a ClientHello (even a post-quantum one) fits without
                    // regrowing.
                    buf: Vec::with_capacity(READ_CHUNK),
                    data_start: 0,
                    parser: ClientHelloParser::new(fe.inspect_cap),
                    proxy_pending: fe.accept_proxy,
                    eof: false,
                    timed_out: false,
                    deadline: now + fe.inspect_delay,
                },
                routing: Routing::default(),
                verdict: RouteVerdict::default(),
            })),
            hello: None,
            no_hello: NoKeyReason::InspectTimeout,
            sticky: StickyFate::default(),
            learning: Learning {
                reader: Some(Box::new(FlightReader {
                    flight: ServerFlight::new(fe.inspect_cap),
                    events: Vec::new(),
                    response: Vec::new(),
                })),
                response_done: !be.affinity.reads_response(),
                learned: 0,
                sent: 0,
            },
            rec: None,
        }
        .routed_at_accept(now)
    }

    /// The PROXY header `server` gets before the client's bytes, if it is configured to:
    /// the client and the address it connected to (a received PROXY header's, else `local`,
    /// the accepted socket's, else the bind address).
    pub fn proxy_header(
        &self,
        server: ServerId,
        local: impl FnOnce() -> Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let version = self.be.servers[server.index()].send_proxy?;
        let destination = self
            .proxied_to
            .or_else(local)
            .unwrap_or(self.fe.destination);
        Some(proxy_protocol::encode(version, self.client, destination))
    }

    /// The backend serving the connection (the frontend's default until a rule chose one).
    pub fn backend(&self) -> &'a Backend {
        self.be
    }

    /// The state of the phases before forwarding (see [`EARLY`] for why it is there).
    fn early(&self) -> &Early {
        self.early.as_deref().expect(EARLY)
    }

    fn early_mut(&mut self) -> &mut Early {
        self.early.as_deref_mut().expect(EARLY)
    }

    /// Runs the frontend's route rules that only need addresses, before any byte is read.
    fn routed_at_accept(mut self, now: Instant) -> Self {
        let Some(router) = self.fe.router.as_deref() else {
            return self;
        };
        match router
            .table
            .decide_at_accept(self.client.ip(), self.fe.destination)
        {
            AcceptVerdict::NeedHello => self.early_mut().verdict.pending = true,
            AcceptVerdict::Decided(v) => {
                if self.apply_verdict(v) {
                    self.fe.denied_connections.fetch_add(1, Ordering::Relaxed);
                    self.no_hello = NoKeyReason::Refused;
                    self.close_early(now, Termination::DENIED);
                }
            }
        }
        self
    }

    /// Takes the backend (or refusal) a verdict names; true when refused.
    fn apply_verdict(&mut self, v: Verdict) -> bool {
        let verdict = &mut self.early.as_deref_mut().expect(EARLY).verdict;
        take_verdict(self.fe, v, &mut self.be, &mut self.learning, verdict)
    }

    /// The next thing to do. Call after construction and after every input.
    pub fn poll(&mut self, now: Instant) -> Action {
        if self.phase == Phase::Inspect {
            self.advance_inspect(now);
        }
        match self.phase {
            Phase::Inspect => Action::ReadClient {
                max: self.read_room(),
            },
            Phase::Queue { server, .. } => Action::TakeSlot { server },
            Phase::Connect { server, .. } => Action::Connect { server },
            Phase::Turnaround { .. } => Action::Sleep,
            Phase::Forward { server } => Action::Forward {
                server,
                timeouts: ForwardTimeouts {
                    client: (self.be.timeouts.tunnel).unwrap_or(self.fe.timeout_client),
                    server: (self.be.timeouts.tunnel).unwrap_or(self.be.timeouts.server),
                    client_fin: self.fe.timeout_client_fin,
                    server_fin: self.be.timeouts.server_fin,
                },
            },
            Phase::Closing { shutdown } => Action::Close { shutdown },
        }
    }

    /// The deadline of the step in progress, if it has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Inspect => Some(self.early().inspect.deadline),
            Phase::Queue { until, .. } | Phase::Connect { until, .. } => until,
            Phase::Turnaround { until, .. } => Some(until),
            Phase::Forward { .. } | Phase::Closing { .. } => None,
        }
    }

    /// The deadline passed (inspect delay, queue or connect timeout, end of a turnaround).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Inspect => self.early_mut().inspect.timed_out = true,
            Phase::Queue { .. } => self.on_slot(now, Err(QueueError::Timeout)),
            Phase::Connect { .. } => self.on_connect(now, Err(ConnectFailure::Timeout)),
            Phase::Turnaround { redispatch, .. } => self.next_attempt(now, redispatch),
            Phase::Forward { .. } | Phase::Closing { .. } => {}
        }
    }

    // ---- inspection -------------------------------------------------------------------------

    /// The buffer client bytes are read into while inspecting (append only).
    pub fn inspect_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.early_mut().inspect.buf
    }

    /// `n` bytes were appended to [`Connection::inspect_buffer`]; 0 means the client closed (or
    /// its read failed).
    pub fn on_client_read(&mut self, n: usize) {
        if n == 0 {
            self.early_mut().inspect.eof = true;
        }
    }

    /// The client's buffered bytes, after any PROXY header: what goes to the server first
    /// (nothing once they were delivered).
    pub fn first_bytes(&self) -> &[u8] {
        self.early.as_deref().map_or(&[], |e| {
            let ins = &e.inspect;
            &ins.buf[ins.data_start.min(ins.buf.len())..]
        })
    }

    /// Whether the client sent any byte, forwarded or not (HAProxy's `option dontlognull`
    /// leaves out of the log only the connections that sent none).
    pub fn client_sent_data(&self) -> bool {
        !self.first_bytes().is_empty()
            || self.learning.sent > 0
            || self.rec.as_ref().is_some_and(|r| r.bytes_up > 0)
    }

    /// What remains of [`Connection::first_bytes`] after the connect sent some.
    pub fn unsent(&self) -> &[u8] {
        let data = self.first_bytes();
        &data[(self.learning.sent as usize).min(data.len())..]
    }

    /// The client's first bytes have all reached the server: counts them as sent and drops
    /// what only the phases before forwarding needed (the inspect buffer among it), which a
    /// forwarded connection would otherwise hold until it closes.
    pub fn first_bytes_delivered(&mut self) {
        self.learning.sent = self.first_bytes().len() as u64;
        self.early = None;
    }

    /// Room for the next read: never past the cap plus a PROXY header, and within the buffer's
    /// spare capacity while it has some, so a client trickling its hello a byte at a time
    /// keeps the one buffer it started with instead of doubling it on its first byte.
    fn read_room(&self) -> usize {
        let ins = &self.early().inspect;
        let buf = &ins.buf;
        let spare = buf.capacity() - buf.len();
        let chunk = if spare > 0 { spare } else { READ_CHUNK };
        (self.fe.inspect_cap + ins.data_start + PROXY_HEADER_ROOM)
            .saturating_sub(buf.len())
            .min(chunk)
    }

    /// Runs inspection on what has arrived until it needs more bytes or has ended.
    fn advance_inspect(&mut self, now: Instant) {
        loop {
            if self.early().inspect.proxy_pending && !self.take_proxy_header() {
                self.no_hello = NoKeyReason::BadProxyHeader;
                return self.close_early(now, Termination::BAD_PROXY_HEADER);
            }
            if !self.early().inspect.proxy_pending {
                if self.first_bytes().is_empty() && self.early().inspect.eof {
                    self.no_hello = NoKeyReason::ClientClosed;
                    return self.close_early(now, Termination::CLIENT_CLOSED_EARLY);
                }
                if let Some(reason) = self.inspect_hello() {
                    self.no_hello = reason;
                    if self.early().verdict.refused {
                        self.fe.denied_requests.fetch_add(1, Ordering::Relaxed);
                        return self.close_early(now, Termination::DENIED);
                    }
                    return self.route(now);
                }
            }
            let ins = &mut self.early.as_deref_mut().expect(EARLY).inspect;
            if ins.buf.len() - ins.data_start < self.fe.inspect_cap || ins.timed_out {
                return;
            }
            // Cap reached while waiting on a PROXY header or rules: evaluate as final.
            ins.timed_out = true;
        }
    }

    /// Parses a pending PROXY header; false when it is broken (or cut short).
    fn take_proxy_header(&mut self) -> bool {
        let ins = &mut self.early.as_deref_mut().expect(EARLY).inspect;
        match proxy_protocol::parse(&ins.buf) {
            Ok(Progress::NeedMore) if !(ins.eof || ins.timed_out) => true,
            Ok(Progress::Done(ProxyHeader {
                header_len,
                source,
                destination,
            })) => {
                ins.data_start = header_len;
                if let Some(src) = source {
                    self.client = src;
                }
                self.proxied_to = destination;
                ins.proxy_pending = false;
                true
            }
            _ => false,
        }
    }

    /// Whether inspection ends now, and why no hello was usable if it does.
    fn inspect_hello(&mut self) -> Option<NoKeyReason> {
        let Early {
            inspect: ins,
            verdict,
            ..
        } = self.early.as_deref_mut().expect(EARLY);
        let data = &ins.buf[ins.data_start..];
        let full = data.len() >= self.fe.inspect_cap;
        let final_ = ins.eof || ins.timed_out || full;
        let outcome = ins.parser.parse(data);
        let routing_waits = verdict.pending;
        if routing_waits && (final_ || !matches!(outcome, Progress::NeedMore)) {
            // The rules that need the hello run on what inspection parsed, once.
            verdict.pending = false;
            let router = self.fe.router.as_deref().expect("pending only with rules");
            let facts = Facts {
                source: self.client.ip(),
                destination: self.fe.destination,
                hello: match &outcome {
                    Progress::Done(HelloOutcome::Complete(h)) => HelloFacts::Hello(h.clone()),
                    Progress::Done(HelloOutcome::NotTls) => HelloFacts::NotTls,
                    _ => HelloFacts::Nothing,
                },
            };
            let v = router.table.decide(&facts);
            take_verdict(self.fe, v, &mut self.be, &mut self.learning, verdict);
        }
        let parsed = match outcome {
            Progress::NeedMore if !final_ => None,
            Progress::NeedMore => Some(if full {
                NoKeyReason::TooLarge
            } else if ins.timed_out {
                NoKeyReason::InspectTimeout
            } else {
                NoKeyReason::ClientClosed
            }),
            Progress::Done(HelloOutcome::Complete(hello)) => {
                let wants = self.be.affinity.hello_wants();
                self.hello = Some(Box::new(wants.extract(&hello)));
                Some(NoKeyReason::NoSample)
            }
            Progress::Done(HelloOutcome::NotTls) => Some(NoKeyReason::NotTls),
            Progress::Done(HelloOutcome::SslV2) => Some(NoKeyReason::Sslv2),
            Progress::Done(HelloOutcome::TooLarge) => Some(NoKeyReason::TooLarge),
            Progress::Done(HelloOutcome::Malformed(_)) => Some(NoKeyReason::Malformed),
        };
        if routing_waits && parsed.is_none() {
            return None;
        }
        if verdict.refused {
            return Some(parsed.unwrap_or(NoKeyReason::Refused));
        }
        let data = &ins.buf[ins.data_start..];
        if !self
            .be
            .affinity
            .request_ready(data, parsed.is_some(), final_)
        {
            return None;
        }
        Some(parsed.unwrap_or(if ins.timed_out {
            NoKeyReason::InspectTimeout
        } else {
            NoKeyReason::NoSample
        }))
    }

    /// The record as it stands when inspection ends.
    fn open_record(&mut self, now: Instant) -> &mut ConnectionRecord {
        let matched = MatchOutcome::NoKey(self.no_hello);
        let (route, refused) = self.early.as_deref().map_or((None, false), |e| {
            (e.verdict.label.clone(), e.verdict.refused)
        });
        let rec = ConnectionRecord {
            client: self.client,
            frontend: self.fe.name.clone(),
            backend: self.be.name.clone(),
            server: None,
            tw_ms: ms_between(self.start, now),
            tc_ms: -1,
            tt_ms: 0,
            bytes_down: 0,
            bytes_up: 0,
            termination: Termination::NORMAL,
            actconn: self.actconn.load(Ordering::Relaxed),
            feconn: self.fe.current.load(Ordering::Relaxed),
            beconn: 0,
            srvconn: 0,
            retries: 0,
            redispatched: false,
            matched,
            affinity: AffinityOutcome::NoKey(self.no_hello),
            key: None,
            learned: 0,
            resumed: None,
            tls_version: None,
            sni: self
                .hello
                .as_ref()
                .and_then(|h| h.sni.as_deref())
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            route,
            refused,
        };
        self.rec.insert(rec)
    }

    /// A PROXY header was broken (`PR`) or the client closed before sending anything (`CR`).
    fn close_early(&mut self, now: Instant, termination: Termination) {
        self.open_record(now).termination = termination;
        self.phase = Phase::Closing { shutdown: false };
    }

    // ---- routing -----------------------------------------------------------------------------

    /// Inspection ended: decide affinity and choose the first server.
    fn route(&mut self, now: Instant) {
        self.open_record(now);
        let be = self.be;
        let ts = self.clock.at(now);
        let req = RequestView {
            buf: self.first_bytes(),
            hello: self.hello.as_deref(),
            client: Some(self.client.ip()),
        };
        let (decision, pending) = be.affinity.decide(req, self.no_hello, &be.tables, ts);
        let rec = self.record();
        rec.matched = decision.matched;
        if let MatchOutcome::Hit(k) = decision.matched {
            rec.key = Some(k);
        }
        let balance_key = self.balance_key();
        let r = &mut self.early.as_deref_mut().expect(EARLY).routing;
        r.balance_key = balance_key;
        r.choice = be.choose(&decision.route, &[], r.balance_key.as_deref());
        r.sticky.unusable = r.choice.sticky_unusable;
        r.decision = Some(decision);
        r.pending = pending;
        self.attempt(now);
    }

    /// What `balance hash` hashes for this connection.
    fn balance_key(&self) -> Option<Vec<u8>> {
        match self.be.balance_hash {
            Some(AffinityKey::Sni) => self
                .hello
                .as_ref()
                .and_then(|h| h.sni.as_deref())
                .map(<[u8]>::to_vec),
            Some(_) => Some(crate::affinity::chain::ip_bytes(self.client.ip())),
            None => None,
        }
    }

    /// Starts an attempt on the chosen server: queue for a slot if it has `maxconn`, else
    /// connect; with no server, give up.
    fn attempt(&mut self, now: Instant) {
        let Some(server) = self.early().routing.choice.server else {
            return self.give_up();
        };
        if self.be.servers[server.index()].slots.is_some() {
            self.early_mut().routing.queued_at = Some(now);
            self.phase = Phase::Queue {
                server,
                until: deadline(now, self.be.timeouts.queue),
            };
        } else {
            self.connect(now, server);
        }
    }

    fn connect(&mut self, now: Instant, server: ServerId) {
        self.early_mut().routing.connect_started = Some(now);
        self.phase = Phase::Connect {
            server,
            until: deadline(now, self.be.timeouts.connect),
        };
    }

    /// The slot wait ended: a slot (or no limit), or the queue was full or timed out.
    pub fn on_slot(&mut self, now: Instant, result: Result<(), QueueError>) {
        let Phase::Queue { server, .. } = self.phase else {
            return;
        };
        match result {
            Ok(()) => {
                self.left_queue(now);
                self.connect(now, server);
            }
            Err(QueueError::ServerDown) => {
                // Balanced anew, its sticky server given up (HAProxy clears SF_DIRECT); the
                // time queued so far stays in its `Tw`.
                self.left_queue(now);
                let be = self.be;
                be.release(server);
                let r = &mut self.early_mut().routing;
                r.sticky.redispatched |= r.choice.sticky;
                r.choice = be.choose(&Route::Balance, &[server], r.balance_key.as_deref());
                self.attempt(now);
            }
            Err(e) => {
                self.be.release(server);
                self.early_mut().routing.queue_failed = Some(e);
                self.give_up();
            }
        }
    }

    /// The time spent in a server's queue goes into the connection's `Tw`.
    fn left_queue(&mut self, now: Instant) {
        let waited = self.early_mut().routing.queued_at.take().unwrap_or(now);
        self.record().tw_ms += ms_between(waited, now);
    }

    /// The connect ended: `Ok(sent)` with how many of [`Connection::first_bytes`] it sent.
    pub fn on_connect(&mut self, now: Instant, result: Result<usize, ConnectFailure>) {
        let Phase::Connect { server, .. } = self.phase else {
            return;
        };
        match result {
            Ok(sent) => self.connected(now, server, sent),
            Err(failure) => self.connect_failed(now, server, failure),
        }
    }

    fn connect_failed(&mut self, now: Instant, server: ServerId, failure: ConnectFailure) {
        let be = self.be;
        let slot = &be.servers[server.index()];
        if failure == ConnectFailure::Local {
            // Our own descriptors or memory ran out: no error, health or retry is charged to
            // the server, and another server would fail alike.
            be.release(server);
            self.early_mut().routing.local_exhausted = true;
            return self.give_up();
        }
        tracing::debug!(backend = %be.name, server = %slot.name, ?failure, "connect failed");
        slot.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
        be.release(server);
        if be.passive_health {
            if let Some(t) = be.passive_result(server, false) {
                tracing::warn!(backend = %be.name, server = %slot.name, transition = ?t, "passive health: server marked down after failed connects");
            }
        }
        let r = &mut self.early.as_deref_mut().expect(EARLY).routing;
        let sticky = r.choice.sticky;
        let a = r.attempts.get_or_insert_with(|| {
            Attempts::new(&be.retry, server, sticky).with_algorithm(&be.algorithm)
        });
        let decision = a.on_failure_in(failure, self.clock.at(now), be.retry_context(server));
        let (not_before, redispatch) = match decision {
            RetryDecision::RetrySame { not_before } => (not_before, false),
            RetryDecision::Redispatch { not_before } => (not_before, true),
            RetryDecision::GiveUp => return self.give_up(),
        };
        slot.counters.retries.fetch_add(1, Ordering::Relaxed);
        if redispatch {
            slot.counters.redispatches.fetch_add(1, Ordering::Relaxed);
        }
        // The policy counts whole milliseconds: wait what it asks from `now` itself, so the
        // turnaround neither ends before it began nor falls short by the sub-millisecond part.
        let wait = not_before.saturating_duration_since(self.clock.at(now));
        self.phase = Phase::Turnaround {
            until: now + wait,
            redispatch,
        };
    }

    /// The turnaround passed: the same server again, or another one.
    fn next_attempt(&mut self, now: Instant, redispatch: bool) {
        let be = self.be;
        let r = &mut self.early_mut().routing;
        let Some(a) = r.attempts.as_mut() else {
            return self.give_up();
        };
        if redispatch {
            r.sticky.redispatched |= r.choice.sticky;
            r.choice = be.choose(&Route::Balance, a.avoid(), r.balance_key.as_deref());
            if let Some(s) = r.choice.server {
                a.set_server(s);
            }
        } else {
            let server = a.server();
            be.acquire(server);
            r.choice.server = Some(server);
        }
        self.attempt(now);
    }

    /// No usable server, or every attempt failed: close at once (HAProxy `SC`, `<NOSRV>` when
    /// nothing was ever chosen, `sQ`/`SQ` when the queue refused). Nothing is stored.
    fn give_up(&mut self) {
        let be = self.be;
        let r = &self.early().routing;
        let tried = r.attempts.is_some() || r.queue_failed.is_some() || r.local_exhausted;
        let server = match r.choice.server {
            Some(s) if tried => Some(be.servers[s.index()].name.clone()),
            _ => {
                be.nosrv.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let termination = match r.queue_failed {
            Some(QueueError::Timeout) => Termination::QUEUE_TIMEOUT,
            Some(QueueError::Full | QueueError::ServerDown) => Termination::QUEUE_FULL,
            None if r.local_exhausted => Termination::LOCAL_RESOURCE,
            None => Termination::NO_SERVER,
        };
        let matched = self.matched();
        let sticky_unusable = r.sticky.unusable;
        self.count_attempts();
        let rec = self.record();
        rec.server = server;
        rec.termination = termination;
        rec.affinity = AffinityOutcome::resolve(matched, sticky_unusable, false, false);
        self.phase = Phase::Closing { shutdown: true };
    }

    fn count_attempts(&mut self) {
        if let Some(a) = &self.early().routing.attempts {
            let (retries, redispatched) = (a.retries(), a.redispatched());
            let rec = self.record();
            rec.retries = retries;
            rec.redispatched = redispatched;
        }
    }

    // ---- connected ---------------------------------------------------------------------------

    fn connected(&mut self, now: Instant, server: ServerId, sent: usize) {
        let be = self.be;
        if be.passive_health {
            be.passive_result(server, true);
        }
        let started = self.early().routing.connect_started.unwrap_or(now);
        self.count_attempts();
        let slot = &be.servers[server.index()];
        slot.counters.total.fetch_add(1, Ordering::Relaxed);
        let rec = self.record();
        rec.tc_ms = ms_between(started, now) as i64;
        rec.server = Some(slot.name.clone());
        // Request-side stores commit now that the server connection exists; a sticky key whose
        // server could not be used now names the server that was.
        let r = &self.early.as_deref().expect(EARLY).routing;
        let route = r.decision.map_or(Route::Balance, |d| d.route);
        self.sticky = r.sticky;
        self.learning.learned += be.affinity.on_connected(
            self.hello.as_deref(),
            &route,
            r.pending.as_ref(),
            server,
            &be.tables,
            self.clock.at(now),
        );
        self.learning.sent = sent as u64;
        self.phase = Phase::Forward { server };
    }

    /// Server bytes on their way to the client, at `now`: learns affinity keys from the
    /// cleartext handshake. Returns whether more server bytes are wanted.
    pub fn on_server_bytes(&mut self, now: Instant, chunk: &[u8]) -> bool {
        let Phase::Forward { server } = self.phase else {
            return false;
        };
        let be = self.be;
        let ts = self.clock.at(now);
        let l = &mut self.learning;
        let Some(r) = l.reader.as_deref_mut() else {
            return false;
        };
        if !r.flight.is_done() {
            r.flight.feed_into(chunk, &mut r.events);
            for ev in r.events.drain(..) {
                match ev {
                    ServerEvent::ServerHello(info) => {
                        let rec = self.rec.as_mut().expect("record opened at routing");
                        rec.tls_version = Some(info.negotiated.0);
                        let learned = be.affinity.on_server_hello(
                            self.hello.as_deref(),
                            Some(self.client.ip()),
                            &info,
                            server,
                            &be.tables,
                            ts,
                        );
                        rec.resumed = learned.resumed;
                        l.learned += u32::from(learned.stored);
                    }
                    ServerEvent::NewSessionTicket { ticket, .. } => {
                        l.learned +=
                            u32::from(be.affinity.on_ticket(&ticket, server, &be.tables, ts));
                    }
                    _ => {}
                }
            }
            if r.flight.is_done() {
                // The flight is over: its event list is not needed again while response
                // rules still read.
                r.events = Vec::new();
            }
        }
        if !l.response_done {
            let room = crate::tls::DEFAULT_HELLO_CAP.saturating_sub(r.response.len());
            r.response
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            let final_ = room <= chunk.len();
            match be
                .affinity
                .on_response(&r.response, final_, server, &be.tables, ts)
            {
                Progress::NeedMore => {}
                Progress::Done(stored) => {
                    l.learned += u32::from(stored);
                    l.response_done = true;
                    r.response = Vec::new();
                }
            }
        }
        let more = !r.flight.is_done() || !l.response_done;
        if !more {
            // Learned all there was to learn: neither the reader nor the hello's keys are
            // needed again.
            l.reader = None;
            self.hello = None;
        }
        more
    }

    /// Forwarding ended: `None` when writing [`Connection::unsent`] to the server failed (`SD`),
    /// else the forwarder's result.
    pub fn on_forwarded(&mut self, forwarded: Option<Forwarded>) {
        let Phase::Forward { server } = self.phase else {
            return;
        };
        let be = self.be;
        let learned = self.learning.learned;
        let up_prefix = self.learning.sent + self.unsent().len() as u64;
        let rec = self.record();
        rec.learned = learned;
        match forwarded {
            Some(f) => {
                rec.bytes_up = up_prefix + f.up;
                rec.bytes_down = f.down;
                rec.termination = f.termination();
            }
            None => rec.termination = Termination::SERVER_ABORT,
        }
        let (up, down) = (rec.bytes_up, rec.bytes_down);
        let counters = &be.servers[server.index()].counters;
        counters.bytes_in.fetch_add(up, Ordering::Relaxed);
        counters.bytes_out.fetch_add(down, Ordering::Relaxed);
        be.release(server);
        // `%bc`/`%sc` as HAProxy logs them: after this connection left its server.
        let rec = self.record();
        rec.srvconn = counters.current.load(Ordering::Relaxed);
        rec.beconn = (be.servers.iter())
            .map(|s| s.counters.current.load(Ordering::Relaxed))
            .sum();
        let outcome = AffinityOutcome::resolve(
            self.matched(),
            self.sticky.unusable,
            self.sticky.redispatched,
            learned > 0,
        );
        self.record().affinity = outcome;
        self.phase = Phase::Closing { shutdown: false };
    }

    /// The connection is over at `now`: its log record, counted in the backend's outcomes.
    pub fn finish(mut self, now: Instant) -> ConnectionRecord {
        let start = self.start;
        let mut rec = self.rec.take().unwrap_or_else(|| {
            // Never reached by the driver (every path opens the record); a whole record anyway.
            self.open_record(now);
            self.rec.take().expect("just opened")
        });
        rec.tt_ms = ms_between(start, now);
        // `%ac`/`%fc` as HAProxy logs them: at the end, this connection still counted.
        rec.actconn = self.actconn.load(Ordering::Relaxed);
        rec.feconn = self.fe.current.load(Ordering::Relaxed);
        if rec.refused {
            rec.backend = self.fe.name.clone();
        } else {
            self.be.outcomes.add(rec.affinity);
        }
        rec
    }

    fn matched(&self) -> MatchOutcome {
        self.rec
            .as_ref()
            .map_or(MatchOutcome::NoKey(self.no_hello), |r| r.matched)
    }

    fn record(&mut self) -> &mut ConnectionRecord {
        self.rec
            .as_mut()
            .expect("record opened when inspection ended")
    }
}

/// Applies a route verdict: the backend it names (and whether that backend reads the server's
/// response), the deciding rule's label, a refusal. True when refused.
fn take_verdict<'a>(
    fe: &'a Frontend,
    v: Verdict,
    be: &mut &'a Backend,
    learning: &mut Learning,
    verdict: &mut RouteVerdict,
) -> bool {
    let Some(router) = fe.router.as_deref() else {
        return false;
    };
    verdict.label = router.label(v);
    match router.resolve(v) {
        Routed::Serve(Some(chosen)) => {
            *be = chosen;
            learning.response_done = !chosen.affinity.reads_response();
        }
        Routed::Serve(None) => {}
        Routed::Refuse => verdict.refused = true,
    }
    verdict.refused
}

/// When a wait of `timeout` begun at `now` ends; a zero timeout is none, as in HAProxy
/// (`timeout connect 0`).
fn deadline(now: Instant, timeout: std::time::Duration) -> Option<Instant> {
    (!timeout.is_zero()).then(|| now + timeout)
}

/// Whole milliseconds from `a` to `b` (0 if `b` is earlier).
fn ms_between(a: Instant, b: Instant) -> u64 {
    u64::try_from(b.saturating_duration_since(a).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
