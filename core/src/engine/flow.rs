//! The per-connection flow: inspect → choose → connect/retry → forward while learning → log.
//!
//! Written once for every network ([`Net`]); see design.md §3 for the HAProxy behaviours it
//! reproduces and §4 for where it does better.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::affinity::rules::{PendingStore, RequestView};
use crate::affinity::{
    AffinityKey, AffinityOutcome, Decision, HelloKeys, MatchOutcome, NoKeyReason, Route, TableKind,
    Tables,
};
use crate::retry::{Attempts, ConnectFailure, RetryDecision};
use crate::tls::haproxy::Sample;
use crate::tls::{ClientHelloParser, HelloOutcome, ServerEvent, ServerFlight};
use crate::ServerId;

use super::backend::{AffinityMode, Backend, QueueError};
use super::clock::Clock;
use super::forward::{forward, ForwardTimeouts};
use super::frontend::Frontend;
use super::log::{ConnectionRecord, LogSink};
use super::net::Net;
use super::proxy_protocol::{self, ProxyStatus};

/// What every connection shares: the network, the clock, where records go, process counters.
pub struct Context<N: Net> {
    /// The network.
    pub net: N,
    /// The clock.
    pub clock: Clock,
    /// Where finished connections are reported.
    pub sink: Arc<dyn LogSink>,
    /// Connections open in the process (`%ac`).
    pub actconn: AtomicU64,
}

impl<N: Net> Context<N> {
    /// A context on `net`, reporting to `sink`.
    pub fn new(net: N, sink: Arc<dyn LogSink>) -> Self {
        Context {
            net,
            clock: Clock::start(),
            sink,
            actconn: AtomicU64::new(0),
        }
    }
}

/// Most bytes read from the client per inspect read.
const READ_CHUNK: usize = 4096;

/// What inspection found.
struct Inspected {
    buf: Vec<u8>,
    data_start: usize,
    client: SocketAddr,
    hello: Option<HelloKeys>,
    no_hello: NoKeyReason,
    /// The client closed before sending anything.
    empty_close: bool,
    /// A PROXY header was required and broken.
    proxy_error: bool,
}

/// Runs one client connection to completion and reports it to the sink.
pub async fn handle<N: Net>(ctx: &Context<N>, fe: &Frontend, client: N::Stream, peer: SocketAddr) {
    let start = Instant::now();
    ctx.actconn.fetch_add(1, Ordering::Relaxed);
    fe.current.fetch_add(1, Ordering::Relaxed);
    let be: &Backend = &fe.backend;
    let (mut cr, mut cw) = N::split(client);

    let ins = inspect(fe, be, &mut cr, peer).await;
    let mut rec = ConnectionRecord {
        client: ins.client,
        frontend: fe.name.clone(),
        backend: be.name.clone(),
        server: None,
        tw_ms: ms_since(start),
        tc_ms: -1,
        tt_ms: 0,
        bytes_down: 0,
        bytes_up: 0,
        termination: ['-', '-'],
        actconn: ctx.actconn.load(Ordering::Relaxed),
        feconn: fe.current.load(Ordering::Relaxed),
        beconn: 0,
        srvconn: 0,
        retries: 0,
        redispatched: false,
        matched: MatchOutcome::NoKey(ins.no_hello),
        affinity: AffinityOutcome::NoKey(ins.no_hello),
        key: None,
        learned: 0,
        resumed: None,
        tls_version: None,
        sni: ins
            .hello
            .as_ref()
            .and_then(|h| h.sni.as_deref())
            .map(|s| String::from_utf8_lossy(s).into_owned()),
    };
    if ins.proxy_error || ins.empty_close {
        rec.termination = if ins.proxy_error {
            ['P', 'R']
        } else {
            ['C', 'R']
        };
        finish(ctx, fe, start, rec);
        return;
    }

    let now = ctx.clock.now();
    let data = &ins.buf[ins.data_start..];
    let (decision, pending): (Decision, Option<PendingStore>) = match &be.affinity {
        AffinityMode::Chain(chain) => (
            chain.decide(
                ins.hello.as_ref(),
                ins.no_hello,
                Some(ins.client.ip()),
                &be.tables,
                now,
            ),
            None,
        ),
        AffinityMode::Rules(rules) => rules.on_request(
            RequestView {
                buf: data,
                hello: ins.hello.as_ref(),
                client: Some(ins.client.ip()),
            },
            &be.tables,
            now,
        ),
    };
    rec.matched = decision.matched;
    if let MatchOutcome::Hit(k) = decision.matched {
        rec.key = Some(k);
    }

    // Choose and connect, with retries and redispatch.
    let balance_key: Option<Vec<u8>> = match be.balance_hash {
        Some(AffinityKey::Sni) => ins
            .hello
            .as_ref()
            .and_then(|h| h.sni.as_deref())
            .map(<[u8]>::to_vec),
        Some(_) => Some(crate::affinity::chain::ip_bytes(ins.client.ip())),
        None => None,
    };
    let mut choice = be.choose(&decision.route, &[], balance_key.as_deref());
    let sticky_unusable = choice.sticky_unusable;
    let mut attempts: Option<Attempts> = None;
    let mut redispatched_sticky = false;
    let mut slot_permit = None;
    let mut queue_failed: Option<QueueError> = None;
    let connected = loop {
        let Some(server) = choice.server else {
            break None;
        };
        // A server with `maxconn` makes the connection queue for a slot (`timeout queue`).
        let tq = Instant::now();
        match be.servers[server.index()]
            .take_slot(be.timeouts.queue)
            .await
        {
            Ok(p) => slot_permit = p,
            Err(e) => {
                be.release(server);
                queue_failed = Some(e);
                break None;
            }
        }
        rec.tw_ms += ms_since(tq);
        let t0 = Instant::now();
        let addr = &be.servers[server.index()].address;
        let result = timeout(be.timeouts.connect, ctx.net.connect_sending(addr, data)).await;
        let failure = match result {
            Ok(Ok((stream, sent))) => {
                if be.passive_health {
                    be.passive_result(server, true);
                }
                rec.tc_ms = ms_since(t0) as i64;
                break Some((server, stream, sent));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                ConnectFailure::Refused
            }
            Ok(Err(_)) => ConnectFailure::Other,
            Err(_) => ConnectFailure::Timeout,
        };
        tracing::debug!(backend = %be.name, server = %be.servers[server.index()].name, ?failure, "connect failed");
        slot_permit = None;
        let counters = &be.servers[server.index()].counters;
        counters.connect_errors.fetch_add(1, Ordering::Relaxed);
        be.release(server);
        if be.passive_health {
            if let Some(t) = be.passive_result(server, false) {
                tracing::warn!(backend = %be.name, server = %be.servers[server.index()].name, transition = ?t, "passive health: server marked down after failed connects");
            }
        }
        let a = attempts.get_or_insert_with(|| {
            Attempts::new(&be.retry, server, choice.sticky).with_algorithm(&be.algorithm)
        });
        match a.on_failure_in(failure, ctx.clock.now(), be.retry_context(server)) {
            RetryDecision::RetrySame { not_before } => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                sleep_until(ctx.clock.instant(not_before)).await;
                be.acquire(server);
                choice.server = Some(server);
            }
            RetryDecision::Redispatch { not_before } => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                counters.redispatches.fetch_add(1, Ordering::Relaxed);
                sleep_until(ctx.clock.instant(not_before)).await;
                redispatched_sticky |= choice.sticky;
                choice = be.choose(&Route::Balance, a.avoid(), balance_key.as_deref());
                if let Some(s) = choice.server {
                    a.set_server(s);
                }
            }
            RetryDecision::GiveUp => break None,
        }
    };
    if let Some(a) = &attempts {
        rec.retries = a.retries();
        rec.redispatched = a.redispatched();
    }
    let Some((server, stream, sent)) = connected else {
        // No usable server, or every attempt failed: close at once (HAProxy `SC`, `<NOSRV>` when
        // nothing was ever chosen). Nothing is stored.
        let tried = attempts.is_some() || queue_failed.is_some();
        match choice.server {
            Some(s) if tried => rec.server = Some(be.servers[s.index()].name.clone()),
            _ => {
                be.nosrv.fetch_add(1, Ordering::Relaxed);
            }
        }
        rec.termination = match queue_failed {
            Some(QueueError::Timeout) => ['s', 'Q'],
            Some(QueueError::Full) => ['S', 'Q'],
            None => ['S', 'C'],
        };
        rec.affinity = AffinityOutcome::resolve(decision.matched, sticky_unusable, false, false);
        let _ = cw.shutdown().await;
        finish(ctx, fe, start, rec);
        return;
    };
    let slot = &be.servers[server.index()];
    slot.counters.total.fetch_add(1, Ordering::Relaxed);
    rec.server = Some(slot.name.clone());
    rec.srvconn = slot.counters.current.load(Ordering::Relaxed);
    rec.beconn = be
        .servers
        .iter()
        .map(|s| s.counters.current.load(Ordering::Relaxed))
        .sum();

    // Request-side stores commit now that the server connection exists.
    let mut learned = 0u32;
    if let Some(p) = &pending {
        if be
            .tables
            .learn(TableKind::Rule, &p.key, server, ctx.clock.now())
            .is_some()
        {
            learned += 1;
        }
    }

    // A sticky key whose server could not be used now names the server that was.
    if let (AffinityMode::Chain(chain), Route::Sticky { server: stuck, key }) =
        (&be.affinity, &decision.route)
    {
        if *stuck != server
            && chain.repoint(
                ins.hello.as_ref(),
                *key,
                server,
                &be.tables,
                ctx.clock.now(),
            )
        {
            learned += 1;
        }
    }

    let (mut sr, mut sw) = N::split(stream);
    // What `connect_sending` did not send yet of the client's buffered bytes.
    let mut up_prefix = sent as u64;
    let mut failed_prefix = false;
    let rest = &data[sent.min(data.len())..];
    if !rest.is_empty() {
        if sw.write_all(rest).await.is_err() {
            failed_prefix = true;
        } else {
            up_prefix += rest.len() as u64;
        }
    }

    let mut learner = Learner {
        be,
        clock: ctx.clock,
        server,
        hello: ins.hello.as_ref(),
        flight: ServerFlight::new(fe.inspect_cap),
        response: Vec::new(),
        response_done: false,
        learned: 0,
        resumed: None,
        version: None,
    };
    let fwd = if failed_prefix {
        None
    } else {
        Some(
            forward(
                ctx.clock,
                &mut cr,
                &mut cw,
                &mut sr,
                &mut sw,
                ForwardTimeouts {
                    client: fe.timeout_client,
                    server: be.timeouts.server,
                },
                N::poll_write_last,
                |chunk| learner.on_server_bytes(chunk),
            )
            .await,
        )
    };
    // Both directions are done: their explicit shutdowns were sent where needed, so let the
    // sockets close on drop without a second shutdown each. Close them now, before the
    // bookkeeping and the log line: `forward` leaves the FINs it skipped to this close.
    N::finish_write(cw);
    N::finish_write(sw);
    drop(cr);
    drop(sr);
    learned += learner.learned;
    rec.learned = learned;
    rec.resumed = learner.resumed;
    rec.tls_version = learner.version;
    match fwd {
        Some(f) => {
            rec.bytes_up = up_prefix + f.up;
            rec.bytes_down = f.down;
            rec.termination = f.termination();
        }
        None => rec.termination = ['S', 'D'],
    }
    slot.counters
        .bytes_in
        .fetch_add(rec.bytes_up, Ordering::Relaxed);
    slot.counters
        .bytes_out
        .fetch_add(rec.bytes_down, Ordering::Relaxed);
    be.release(server);
    drop(slot_permit);
    rec.affinity = AffinityOutcome::resolve(
        decision.matched,
        sticky_unusable,
        redispatched_sticky,
        learned > 0,
    );
    finish(ctx, fe, start, rec);
}

fn finish<N: Net>(ctx: &Context<N>, fe: &Frontend, start: Instant, mut rec: ConnectionRecord) {
    rec.tt_ms = ms_since(start);
    fe.backend.outcomes.add(rec.affinity);
    ctx.sink.record(&rec);
    fe.current.fetch_sub(1, Ordering::Relaxed);
    ctx.actconn.fetch_sub(1, Ordering::Relaxed);
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Reads the optional PROXY header and the client's first bytes until affinity can be decided:
/// a complete ClientHello, a non-TLS first byte, the cap, client EOF, or the inspect deadline
/// (set once, at the first wait).
async fn inspect<R: AsyncRead + Unpin>(
    fe: &Frontend,
    be: &Backend,
    cr: &mut R,
    peer: SocketAddr,
) -> Inspected {
    let deadline = Instant::now() + fe.inspect_delay;
    let (want_ticket, want_psk, rules) = match &be.affinity {
        AffinityMode::Chain(c) => (c.wants_ticket(), c.wants_psk(), None),
        AffinityMode::Rules(r) => (false, false, Some(r)),
    };
    let mut out = Inspected {
        // One read's worth: a ClientHello (even a post-quantum one) fits without regrowing.
        buf: Vec::with_capacity(READ_CHUNK),
        data_start: 0,
        client: peer,
        hello: None,
        no_hello: NoKeyReason::InspectTimeout,
        empty_close: false,
        proxy_error: false,
    };
    let mut parser = ClientHelloParser::new(fe.inspect_cap);
    let mut proxy_pending = fe.accept_proxy;
    let mut eof = false;
    let mut timed_out = false;
    loop {
        if proxy_pending {
            match proxy_protocol::parse(&out.buf) {
                Ok(ProxyStatus::Partial) if !(eof || timed_out) => {}
                Ok(ProxyStatus::Complete {
                    header_len, source, ..
                }) => {
                    out.data_start = header_len;
                    if let Some(src) = source {
                        out.client = src;
                    }
                    proxy_pending = false;
                }
                _ => {
                    out.proxy_error = true;
                    return out;
                }
            }
        }
        if !proxy_pending {
            let data = &out.buf[out.data_start..];
            let full = data.len() >= fe.inspect_cap;
            let final_ = eof || timed_out || full;
            if data.is_empty() && eof {
                out.empty_close = true;
                return out;
            }
            let parsed = match parser.parse(data) {
                HelloOutcome::NeedMore if !final_ => None,
                HelloOutcome::NeedMore => Some(if full {
                    NoKeyReason::TooLarge
                } else if timed_out {
                    NoKeyReason::InspectTimeout
                } else {
                    NoKeyReason::ClientClosed
                }),
                HelloOutcome::Complete(hello) => {
                    out.hello = Some(HelloKeys::extract(&hello, want_ticket, want_psk));
                    Some(NoKeyReason::NoSample)
                }
                HelloOutcome::NotTls => Some(NoKeyReason::NotTls),
                HelloOutcome::SslV2 => Some(NoKeyReason::Sslv2),
                HelloOutcome::TooLarge => Some(NoKeyReason::TooLarge),
                HelloOutcome::Malformed(_) => Some(NoKeyReason::Malformed),
            };
            let ready = match rules {
                // HAProxy: inspection ends when the content rule's condition is decided.
                Some(r) => r.request_ready(data, final_),
                None => parsed.is_some(),
            };
            if ready {
                out.no_hello = parsed.unwrap_or(if timed_out {
                    NoKeyReason::InspectTimeout
                } else {
                    NoKeyReason::NoSample
                });
                return out;
            }
        }
        if out.buf.len() - out.data_start >= fe.inspect_cap {
            // Cap reached while waiting on a PROXY header or rules: evaluate as final.
            timed_out = true;
            continue;
        }
        // Read straight into the inspect buffer's spare capacity (no chunk on the task's stack,
        // no zeroing), never past the cap plus a PROXY header.
        let room = (fe.inspect_cap + out.data_start + 108 - out.buf.len()).min(READ_CHUNK);
        out.buf.reserve(room);
        let mut limited = (&mut *cr).take(room as u64);
        tokio::select! {
            biased;
            r = limited.read_buf(&mut out.buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    eof = true;
                }
            }
            _ = sleep_until(deadline) => timed_out = true,
        }
    }
}

/// Learns affinity keys from the server's cleartext handshake as it is forwarded.
struct Learner<'a> {
    be: &'a Backend,
    clock: Clock,
    server: ServerId,
    hello: Option<&'a HelloKeys>,
    flight: ServerFlight,
    response: Vec<u8>,
    response_done: bool,
    learned: u32,
    resumed: Option<bool>,
    version: Option<u16>,
}

impl Learner<'_> {
    /// Returns whether more server bytes are wanted.
    fn on_server_bytes(&mut self, chunk: &[u8]) -> bool {
        let now = self.clock.now();
        let be = self.be;
        if !self.flight.is_done() {
            for ev in self.flight.feed(chunk) {
                match (&be.affinity, ev) {
                    (mode, ServerEvent::ServerHello(info)) => {
                        self.version = Some(info.negotiated.0);
                        match mode {
                            AffinityMode::Chain(chain) => {
                                let l = chain.learn_server_hello(
                                    self.hello,
                                    &info,
                                    self.server,
                                    &be.tables,
                                    now,
                                );
                                self.resumed = l.resumed;
                                self.learned += u32::from(l.stored);
                            }
                            AffinityMode::Rules(_) => {
                                let id = info.session_id.as_slice();
                                self.resumed = Some(
                                    !id.is_empty()
                                        && self
                                            .hello
                                            .is_some_and(|h| h.session_id.as_slice() == id),
                                );
                            }
                        }
                    }
                    (AffinityMode::Chain(chain), ServerEvent::NewSessionTicket { ticket, .. })
                        if chain.learn_ticket(&ticket, self.server, &be.tables, now) =>
                    {
                        self.learned += 1;
                    }
                    _ => {}
                }
            }
        }
        if let AffinityMode::Rules(rules) = &be.affinity {
            if !self.response_done {
                let room = crate::tls::DEFAULT_HELLO_CAP.saturating_sub(self.response.len());
                self.response
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                let final_ = room <= chunk.len();
                match rules.on_response(&self.response, final_) {
                    Sample::Wait => {}
                    Sample::Found(key) => {
                        if let Some(k) = key {
                            if be
                                .tables
                                .learn(TableKind::Rule, &k, self.server, now)
                                .is_some()
                            {
                                self.learned += 1;
                            }
                        }
                        self.response_done = true;
                        self.response = Vec::new();
                    }
                    Sample::NotFound => self.response_done = true,
                }
            }
        }
        let rules_waiting = matches!(be.affinity, AffinityMode::Rules(_)) && !self.response_done;
        !self.flight.is_done() || rules_waiting
    }
}
