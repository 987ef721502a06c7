//! The connection state machine driven with bytes and a clock only: no socket, no runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::affinity::keys::hash_key;
use crate::affinity::TableKind;
use crate::config::load_toml;
use crate::engine::forward::PumpEnd;
use crate::engine::runtime::{build, Runtime};
use crate::server::AdminState;
use crate::tls::encode::{
    push_new_session_ticket12, push_record, ClientHelloBuilder, ServerHelloBuilder,
};
use crate::tls::record::HANDSHAKE;
use crate::tls::ProtocolVersion;

mod deadlines;
mod ticket_key;

// ---- wire bytes ---------------------------------------------------------------------------------

/// A TLS 1.2 ClientHello with a session ID, an SNI and, optionally, a session ticket.
fn client_hello(session_id: &[u8], sni: &str, ticket: Option<&[u8]>) -> Vec<u8> {
    let mut b = ClientHelloBuilder::new([0x11; 32]);
    b.session_id(session_id).server_name(sni.as_bytes());
    if let Some(t) = ticket {
        b.session_ticket(t);
    }
    b.records()
}

/// A TLS 1.2 ServerHello naming `session_id`, in a handshake record.
fn server_hello(session_id: &[u8]) -> Vec<u8> {
    let mut b = ServerHelloBuilder::new([0x22; 32]);
    b.session_id(session_id).cipher_suite(0xc02f);
    let mut out = Vec::new();
    push_record(&mut out, HANDSHAKE, ProtocolVersion::TLS1_2, &b.message());
    out
}

/// A TLS 1.2 NewSessionTicket, in a handshake record.
fn new_session_ticket(ticket: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    push_new_session_ticket12(&mut msg, 7200, ticket);
    let mut out = Vec::new();
    push_record(&mut out, HANDSHAKE, ProtocolVersion::TLS1_2, &msg);
    out
}

// ---- a backend and a clock ----------------------------------------------------------------------

const BACKEND: &str = r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"
inspect-delay = "2s"
timeout-client = "30s"

[[backend]]
name = "app"
balance = "roundrobin"
affinity = ["session-id", "ticket"]
RETRIES
CONNECT
timeout-server = "40s"
EXTRA

[[backend.server]]
name = "s1"
address = "127.0.0.1:1001"
S1

[[backend.server]]
name = "s2"
address = "127.0.0.1:1002"
"#;

fn runtime(frontend_extra: &str, backend_extra: &str, s1_extra: &str) -> Runtime {
    let retries = if backend_extra.contains("retries") {
        ""
    } else {
        "retries = 3"
    };
    let connect = if backend_extra.contains("timeout-connect") {
        ""
    } else {
        "timeout-connect = \"3s\""
    };
    let text = BACKEND
        .replace("RETRIES", retries)
        .replace("CONNECT", connect)
        .replace("EXTRA", backend_extra)
        .replace("S1", s1_extra)
        .replace(
            "timeout-client = \"30s\"",
            &format!("timeout-client = \"30s\"\n{frontend_extra}"),
        );
    let config = load_toml("test.toml", &text).expect("test config loads");
    build(&config, None).expect("test config builds")
}

/// One connection under test, with its own clock at `t0`.
struct Rig {
    rt: Runtime,
    actconn: AtomicU64,
    t0: Instant,
}

impl Rig {
    fn new(rt: Runtime) -> Self {
        Rig {
            rt,
            actconn: AtomicU64::new(0),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn fe(&self) -> &Frontend {
        &self.rt.frontends[0]
    }

    fn be(&self) -> &Arc<Backend> {
        &self.rt.frontends[0].backend
    }

    fn connection(&self) -> Connection<'_> {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        Connection::new(
            self.fe(),
            Clock::from_origin(self.t0),
            &self.actconn,
            peer,
            self.t0,
        )
    }

    fn id(&self, name: &str) -> ServerId {
        self.be().server_id(name).unwrap()
    }

    fn stored(&self, kind: TableKind, key: &[u8]) -> Option<ServerId> {
        let table = self.be().tables.get(kind)?;
        table
            .get(key, Clock::from_origin(self.t0).at(self.t0))
            .map(|e| e.server)
    }

    fn learn(&self, kind: TableKind, key: &[u8], server: &str) {
        let now = Clock::from_origin(self.t0).at(self.t0);
        self.be()
            .tables
            .get(kind)
            .unwrap()
            .learn(key, self.id(server), now);
    }
}

/// Feeds client bytes as the driver does: append, then report the count.
fn feed(c: &mut Connection<'_>, bytes: &[u8]) {
    c.inspect_buffer().extend_from_slice(bytes);
    c.on_client_read(bytes.len());
}

fn forwarded(up_end: PumpEnd, down_end: PumpEnd) -> Forwarded {
    Forwarded {
        up: 10,
        down: 20,
        up_end,
        down_end,
        killed: None,
    }
}

fn connect_to(c: &mut Connection<'_>, now: Instant) -> ServerId {
    match c.poll(now) {
        Action::Connect { server } => server,
        other => panic!("expected a connect, got {other:?}"),
    }
}

// ---- inspection ---------------------------------------------------------------------------------

/// A client trickling its hello a byte at a time is read within the buffer it was given: the
/// read room never asks the buffer to grow while it has spare capacity (it doubled on the first
/// byte before, 8 KiB held per slowloris client instead of 4).
#[test]
fn a_trickled_hello_keeps_its_first_buffer() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    let hello = client_hello(&[7; 32], "a.example", None);
    let first = c.inspect_buffer().capacity();
    for (i, b) in hello[..64].iter().enumerate() {
        let Action::ReadClient { max } = c.poll(rig.at(i as u64)) else {
            panic!("still inspecting");
        };
        let buf = c.inspect_buffer();
        assert!(
            buf.len() + max <= buf.capacity().max(READ_CHUNK),
            "read room {max} past the buffer"
        );
        buf.reserve(max);
        feed(&mut c, std::slice::from_ref(b));
    }
    assert_eq!(
        c.inspect_buffer().capacity(),
        first,
        "the buffer never grew"
    );
}

#[test]
fn inspect_timeout_routes_keyless_at_the_deadline() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    assert_eq!(c.poll(rig.at(0)), Action::ReadClient { max: READ_CHUNK });
    assert_eq!(
        c.poll_timeout(),
        Some(rig.at(2000)),
        "inspect-delay from accept"
    );
    feed(&mut c, &client_hello(&[7; 32], "a.example", None)[..20]);
    assert!(matches!(c.poll(rig.at(500)), Action::ReadClient { .. }));
    assert_eq!(
        c.poll_timeout(),
        Some(rig.at(2000)),
        "the deadline does not slide"
    );
    c.handle_timeout(rig.at(2000));
    connect_to(&mut c, rig.at(2000));
    assert_eq!(c.first_bytes().len(), 20, "what arrived is forwarded");
    c.on_connect(rig.at(2001), Ok(20));
    c.poll(rig.at(2001));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(2002));
    assert_eq!(
        rec.matched,
        MatchOutcome::NoKey(NoKeyReason::InspectTimeout)
    );
    assert_eq!((rec.tw_ms, rec.tc_ms, rec.tt_ms), (2000, 1, 2002));
}

#[test]
fn a_hello_fed_one_byte_at_a_time_is_matched_once_complete() {
    let rig = Rig::new(runtime("", "", ""));
    let sid = [0x5a; 32];
    rig.learn(TableKind::SessionId, &sid, "s2");
    let hello = client_hello(&sid, "b.example", None);
    let mut c = rig.connection();
    for (i, b) in hello.iter().enumerate() {
        assert!(
            matches!(c.poll(rig.at(i as u64)), Action::ReadClient { .. }),
            "still inspecting before byte {i}"
        );
        feed(&mut c, std::slice::from_ref(b));
    }
    assert_eq!(connect_to(&mut c, rig.at(hello.len() as u64)), rig.id("s2"));
    assert_eq!(
        c.first_bytes(),
        &hello[..],
        "the whole hello goes to the server"
    );
}

#[test]
fn an_oversize_hello_is_forwarded_keyless_at_the_cap() {
    let rig = Rig::new(runtime("inspect-cap = 256", "", ""));
    let long_name = "x".repeat(400);
    let hello = client_hello(&[1; 32], &long_name, None);
    let mut c = rig.connection();
    let max = match c.poll(rig.at(0)) {
        Action::ReadClient { max } => max,
        other => panic!("{other:?}"),
    };
    assert!(
        max <= 256 + PROXY_HEADER_ROOM,
        "reads never run past the cap"
    );
    feed(&mut c, &hello[..256]);
    connect_to(&mut c, rig.at(1));
    c.on_connect(rig.at(2), Ok(256));
    assert!(matches!(c.poll(rig.at(2)), Action::Forward { .. }));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(3));
    assert_eq!(rec.matched, MatchOutcome::NoKey(NoKeyReason::TooLarge));
    assert_eq!(rec.affinity, AffinityOutcome::NoKey(NoKeyReason::TooLarge));
}

#[test]
fn proxy_v1_and_v2_headers_name_the_client_and_are_not_forwarded() {
    let rig = Rig::new(runtime("accept-proxy = true", "", ""));
    let hello = client_hello(&[2; 32], "c.example", None);
    let v1 = b"PROXY TCP4 198.51.100.9 203.0.113.1 5555 443\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 203, 0, 113, 1, 0x15, 0xb3, 1, 187,
    ]);
    for header in [v1, v2] {
        let mut c = rig.connection();
        let mut bytes = header.clone();
        bytes.extend_from_slice(&hello);
        // Split inside the header: the machine waits for the rest.
        feed(&mut c, &bytes[..5]);
        assert!(matches!(c.poll(rig.at(0)), Action::ReadClient { .. }));
        feed(&mut c, &bytes[5..]);
        connect_to(&mut c, rig.at(1));
        assert_eq!(c.first_bytes(), &hello[..], "the header stays here");
        c.on_connect(rig.at(1), Ok(hello.len()));
        c.poll(rig.at(1));
        c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
        let rec = c.finish(rig.at(2));
        assert_eq!(rec.client, "198.51.100.9:5555".parse().unwrap());
        assert_eq!(rec.bytes_up, hello.len() as u64 + 10);
    }
}

#[test]
fn a_broken_proxy_header_closes_with_pr_and_no_server() {
    let rig = Rig::new(runtime("accept-proxy = true", "", ""));
    let mut c = rig.connection();
    feed(&mut c, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.poll(rig.at(0)), Action::Close { shutdown: false });
    let rec = c.finish(rig.at(0));
    assert_eq!(rec.termination, Termination::BAD_PROXY_HEADER);
    assert_eq!(
        rec.affinity.label(),
        "no-key:bad-proxy-header",
        "not an inspect timeout (issue 17 §0.8)"
    );
    assert_eq!(rec.server, None);
    assert_eq!(
        rig.be().servers[0].counters.current.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn a_client_that_closes_before_sending_anything_is_cr() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    c.on_client_read(0);
    assert_eq!(c.poll(rig.at(3)), Action::Close { shutdown: false });
    let rec = c.finish(rig.at(3));
    assert_eq!(rec.termination, Termination::CLIENT_CLOSED_EARLY);
    assert_eq!(rec.affinity.label(), "no-key:client-closed");
}

// ---- choosing and connecting --------------------------------------------------------------------

#[test]
fn no_usable_server_closes_at_once_as_nosrv_sc() {
    let rig = Rig::new(runtime("", "", ""));
    for s in ["s1", "s2"] {
        rig.be().set_admin(rig.id(s), Some(AdminState::Maint), None);
    }
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[3; 32], "d.example", None));
    assert_eq!(c.poll(rig.at(1)), Action::Close { shutdown: true });
    let rec = c.finish(rig.at(1));
    assert_eq!(
        (rec.server.clone(), rec.termination),
        (None, Termination::NO_SERVER)
    );
    assert_eq!(rig.be().nosrv.load(Ordering::Relaxed), 1);
    assert!(rec.tcplog("-").contains("app/<NOSRV>"));
}

#[test]
fn failed_connects_retry_then_redispatch_and_repoint_the_entry() {
    // retries 3, redispatch -1 (the last retry): s1, s1, s1 then s2. (A refused connect would
    // redispatch at once: tether's `redispatch-on-refused`.)
    let rig = Rig::new(runtime("", "", ""));
    let sid = [0x42; 32];
    rig.learn(TableKind::SessionId, &sid, "s1");
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&sid, "e.example", None));
    let mut tried = Vec::new();
    let mut pauses = Vec::new();
    let mut t = 0;
    let server = loop {
        match c.poll(rig.at(t)) {
            Action::Connect { server } if server == rig.id("s2") => break server,
            Action::Connect { server } => {
                tried.push(server);
                c.on_connect(rig.at(t), Err(ConnectFailure::Other));
            }
            Action::Sleep => {
                let until = c.poll_timeout().unwrap();
                pauses.push(until - rig.at(t));
                t = (until - rig.t0).as_millis() as u64;
                c.handle_timeout(until);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        tried,
        vec![rig.id("s1"); 3],
        "sticky: same server until the last retry"
    );
    let second = Duration::from_secs(1);
    assert_eq!(
        pauses,
        [second, second, Duration::ZERO],
        "turnaround, none to redispatch"
    );
    c.on_connect(rig.at(t + 1), Ok(0));
    c.poll(rig.at(t + 1));
    // As the driver does: the retry bookkeeping goes with the first bytes, its outcome stays.
    c.first_bytes_delivered();
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(t + 2));
    assert_eq!(rec.server.as_deref(), Some("s2"));
    assert_eq!((rec.retries, rec.redispatched), (3, true));
    assert_eq!(rec.affinity, AffinityOutcome::Redispatched);
    assert_eq!(
        rig.stored(TableKind::SessionId, &sid),
        Some(server),
        "entry re-pointed"
    );
    let s1 = &rig.be().servers[0].counters;
    assert_eq!(s1.connect_errors.load(Ordering::Relaxed), 3);
    assert_eq!(s1.redispatches.load(Ordering::Relaxed), 1);
    assert_eq!(
        s1.current.load(Ordering::Relaxed),
        0,
        "every attempt released"
    );
}

#[test]
fn a_local_resource_failure_ends_rc_and_never_blames_the_server() {
    // EMFILE on our own socket: the server was never reached. Many of them in a row (far past
    // the passive-health error limit) must leave s1 UP, uncharged, and nobody redispatched.
    let rig = Rig::new(runtime("", "", ""));
    let sid = [0x51; 32];
    rig.learn(TableKind::SessionId, &sid, "s1");
    for _ in 0..50 {
        let mut c = rig.connection();
        feed(&mut c, &client_hello(&sid, "g.example", None));
        assert_eq!(connect_to(&mut c, rig.at(1)), rig.id("s1"));
        c.on_connect(rig.at(1), Err(ConnectFailure::Local));
        assert_eq!(c.poll(rig.at(1)), Action::Close { shutdown: true });
        let rec = c.finish(rig.at(1));
        assert_eq!(rec.termination, Termination::LOCAL_RESOURCE);
        assert_eq!(rec.server.as_deref(), Some("s1"));
        assert_eq!((rec.retries, rec.redispatched), (0, false));
    }
    let s1 = &rig.be().servers[0].counters;
    assert_eq!(s1.connect_errors.load(Ordering::Relaxed), 0);
    assert_eq!(s1.retries.load(Ordering::Relaxed), 0);
    assert_eq!(s1.redispatches.load(Ordering::Relaxed), 0);
    assert_eq!(s1.current.load(Ordering::Relaxed), 0, "slot released");
    assert!(
        rig.be().server_states()[0].usable_for_balance(),
        "passive health marked s1 down for our own exhaustion"
    );
    assert_eq!(rig.be().nosrv.load(Ordering::Relaxed), 0);
}

#[test]
fn a_connect_timeout_counts_as_a_failure_at_the_deadline_without_turnaround() {
    let rig = Rig::new(runtime("", "retries = 1\nredispatch = false", ""));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[4; 32], "f.example", None));
    let first = connect_to(&mut c, rig.at(10));
    assert_eq!(c.poll_timeout(), Some(rig.at(3010)), "timeout-connect");
    c.handle_timeout(rig.at(3010));
    assert_eq!(c.poll(rig.at(3010)), Action::Sleep);
    assert_eq!(
        c.poll_timeout(),
        Some(rig.at(3010)),
        "no wait after a timeout"
    );
    c.handle_timeout(rig.at(3010));
    assert_eq!(connect_to(&mut c, rig.at(3010)), first, "redispatch never");
    c.handle_timeout(rig.at(6010));
    assert_eq!(c.poll(rig.at(6010)), Action::Close { shutdown: true });
    let rec = c.finish(rig.at(6010));
    assert_eq!((rec.termination, rec.retries), (Termination::NO_SERVER, 1));
    assert_eq!(
        rec.server.as_deref(),
        Some("s1"),
        "the server tried is named"
    );
}

#[test]
fn a_queue_timeout_closes_with_sq_and_releases_the_server() {
    let rig = Rig::new(runtime("", "timeout-queue = \"700ms\"", "maxconn = 1"));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[5; 32], "g.example", None));
    assert_eq!(
        c.poll(rig.at(1)),
        Action::TakeSlot {
            server: rig.id("s1")
        }
    );
    assert_eq!(c.poll_timeout(), Some(rig.at(701)));
    c.handle_timeout(rig.at(701));
    assert_eq!(c.poll(rig.at(701)), Action::Close { shutdown: true });
    let rec = c.finish(rig.at(701));
    assert_eq!(rec.termination, Termination::QUEUE_TIMEOUT);
    assert_eq!(rec.server.as_deref(), Some("s1"));
    assert_eq!(
        rig.be().servers[0].counters.current.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn queue_time_is_part_of_tw_and_a_full_queue_is_sq() {
    let rig = Rig::new(runtime("", "", "maxconn = 1"));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[6; 32], "h.example", None));
    c.poll(rig.at(5));
    c.on_slot(rig.at(305), Ok(()));
    connect_to(&mut c, rig.at(305));
    c.on_connect(rig.at(306), Ok(0));
    c.poll(rig.at(306));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(400));
    assert_eq!((rec.tw_ms, rec.tc_ms, rec.tt_ms), (305, 1, 400));

    rig.be()
        .set_admin(rig.id("s2"), Some(AdminState::Maint), None);
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[6; 32], "h.example", None));
    assert_eq!(
        c.poll(rig.at(5)),
        Action::TakeSlot {
            server: rig.id("s1")
        }
    );
    c.on_slot(rig.at(5), Err(QueueError::Full));
    assert_eq!(c.poll(rig.at(5)), Action::Close { shutdown: true });
    assert_eq!(c.finish(rig.at(5)).termination, Termination::QUEUE_FULL);
}

/// HAProxy's `pendconn_redistribute`: a connection queued on a server that goes DOWN (or into
/// maintenance) meanwhile is balanced anew, onto another server, and not refused.
#[test]
fn a_connection_queued_on_a_server_gone_down_is_balanced_anew() {
    let rig = Rig::new(runtime("", "", "maxconn = 1"));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[7; 32], "j.example", None));
    let Action::TakeSlot { server: first } = c.poll(rig.at(5)) else {
        panic!("queued for a slot");
    };
    rig.be().set_admin(first, Some(AdminState::Maint), None);
    c.on_slot(rig.at(50), Err(QueueError::ServerDown));
    // s2 has no maxconn: straight to its connect.
    let second = connect_to(&mut c, rig.at(50));
    assert_ne!(second, first);
    c.on_connect(rig.at(61), Ok(0));
    c.poll(rig.at(61));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(70));
    assert_eq!(rec.termination, Termination::NORMAL);
    assert_eq!(rec.tw_ms, 50, "the time in the first queue counts");
    let names = |id: ServerId| rig.be().servers[id.index()].name.clone();
    assert_eq!(rec.server, Some(names(second)));
    let current = |id: ServerId| {
        rig.be().servers[id.index()]
            .counters
            .current
            .load(Ordering::Relaxed)
    };
    assert_eq!((current(first), current(second)), (0, 0), "both released");
}

// ---- forwarding and learning --------------------------------------------------------------------

#[test]
fn the_server_hello_teaches_the_session_id() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[], "i.example", None));
    let server = connect_to(&mut c, rig.at(1));
    c.on_connect(rig.at(2), Ok(10));
    let Action::Forward { timeouts, .. } = c.poll(rig.at(2)) else {
        panic!("forwarding");
    };
    assert_eq!(
        (timeouts.client, timeouts.server),
        (Duration::from_secs(30), Duration::from_secs(40)),
        "idle timeouts from timeout-client / timeout-server"
    );
    let issued = [0x99; 32];
    let sh = server_hello(&issued);
    // Split across reads; learning happens when the message is whole.
    assert!(c.on_server_bytes(rig.at(3), &sh[..7]));
    assert_eq!(rig.stored(TableKind::SessionId, &issued), None);
    c.on_server_bytes(rig.at(4), &sh[7..]);
    assert_eq!(rig.stored(TableKind::SessionId, &issued), Some(server));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(5));
    assert_eq!(rec.affinity, AffinityOutcome::Learned);
    assert_eq!(
        (rec.learned, rec.resumed, rec.tls_version),
        (1, Some(false), Some(0x0303))
    );
}

/// A forwarded connection may stay idle for hours: it keeps neither what inspection and
/// routing needed once its first bytes are delivered, nor the hello's keys and the learner's
/// event list once the server's flight is over (issue 14, memory per connection).
#[test]
fn a_forwarded_connection_keeps_no_inspect_routing_or_learning_state() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    let hello = client_hello(&[], "k.example", None);
    feed(&mut c, &hello);
    connect_to(&mut c, rig.at(1));
    c.on_connect(rig.at(1), Ok(0));
    c.poll(rig.at(1));
    assert!(c.early.is_some(), "the first bytes are not delivered yet");
    assert!(!c.unsent().is_empty());
    c.first_bytes_delivered();
    assert!(c.early.is_none(), "inspection and routing state dropped");
    assert!(c.unsent().is_empty() && c.client_sent_data());
    assert!(c.hello.is_some(), "the hello is kept for learning");
    let mut flight = server_hello(&[0x42; 32]);
    assert!(c.on_server_bytes(rig.at(2), &flight), "the flight goes on");
    let reader = c.learning.reader.as_ref().expect("reading the flight");
    assert!(reader.events.capacity() > 0, "events were collected");
    // ChangeCipherSpec: what follows is encrypted, the flight is over.
    flight = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
    assert!(
        !c.on_server_bytes(rig.at(3), &flight),
        "nothing more to learn"
    );
    // Held for the connection's life otherwise (an idle connection: hours).
    assert!(c.learning.reader.is_none(), "the flight reader dropped");
    assert!(
        c.hello.is_none(),
        "the hello's keys dropped once learned from"
    );
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    let rec = c.finish(rig.at(4));
    assert_eq!(
        rec.sni.as_deref(),
        Some("k.example"),
        "taken into the record before"
    );
    assert_eq!(
        rec.bytes_up,
        hello.len() as u64 + 10,
        "the first bytes are counted"
    );
}

#[test]
fn a_new_session_ticket_teaches_the_ticket_and_the_next_hello_hits() {
    let rig = Rig::new(runtime("", "", ""));
    let ticket = vec![0xab; 160];
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[], "j.example", Some(&[])));
    let server = connect_to(&mut c, rig.at(1));
    c.on_connect(rig.at(1), Ok(0));
    c.poll(rig.at(1));
    let mut flight = server_hello(&[]);
    flight.extend_from_slice(&new_session_ticket(&ticket));
    c.on_server_bytes(rig.at(2), &flight);
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    c.finish(rig.at(3));
    assert_eq!(
        rig.stored(TableKind::Ticket, &hash_key(&ticket)),
        Some(server)
    );

    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[], "j.example", Some(&ticket)));
    // roundrobin would pick the other server now; the ticket sends it back.
    assert_eq!(connect_to(&mut c, rig.at(10)), server);
}

#[test]
fn an_idle_forward_ends_cd_or_sd_and_counts_bytes() {
    let rig = Rig::new(runtime("", "", ""));
    for (ends, want) in [
        ((PumpEnd::Idle, PumpEnd::Aborted), Termination::CLIENT_IDLE),
        ((PumpEnd::Aborted, PumpEnd::Idle), Termination::SERVER_IDLE),
        ((PumpEnd::Eof, PumpEnd::Eof), Termination::NORMAL),
    ] {
        let mut c = rig.connection();
        feed(&mut c, b"\x00not tls");
        connect_to(&mut c, rig.at(1));
        c.on_connect(rig.at(1), Ok(3));
        c.poll(rig.at(1));
        assert_eq!(c.unsent(), b"t tls", "what the connect did not send");
        c.on_forwarded(Some(forwarded(ends.0, ends.1)));
        let rec = c.finish(rig.at(2));
        assert_eq!(rec.termination, want);
        assert_eq!((rec.bytes_up, rec.bytes_down), (8 + 10, 20));
        assert_eq!(rec.matched, MatchOutcome::NoKey(NoKeyReason::NotTls));
    }
    let s = &rig.be().servers;
    let bytes_out: u64 = s
        .iter()
        .map(|s| s.counters.bytes_out.load(Ordering::Relaxed))
        .sum();
    assert_eq!(bytes_out, 60);
}

#[test]
fn a_failed_first_write_is_sd() {
    let rig = Rig::new(runtime("", "", ""));
    let mut c = rig.connection();
    feed(&mut c, b"\x00plain");
    connect_to(&mut c, rig.at(1));
    c.on_connect(rig.at(1), Ok(0));
    c.poll(rig.at(1));
    c.on_forwarded(None);
    let rec = c.finish(rig.at(1));
    assert_eq!(rec.termination, Termination::SERVER_ABORT);
    assert_eq!(
        rig.be().servers[0].counters.current.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn zero_connect_and_queue_timeouts_mean_no_deadline() {
    // HAProxy reads `timeout connect 0` / `timeout queue 0` as "no timeout".
    let rig = Rig::new(runtime(
        "",
        "timeout-queue = \"0s\"\ntimeout-connect = \"0s\"",
        "maxconn = 1",
    ));
    let mut c = rig.connection();
    feed(&mut c, &client_hello(&[9; 32], "k.example", None));
    assert!(matches!(c.poll(rig.at(1)), Action::TakeSlot { .. }));
    assert_eq!(c.poll_timeout(), None, "no queue deadline");
    c.on_slot(rig.at(90_000), Ok(()));
    connect_to(&mut c, rig.at(90_000));
    assert_eq!(c.poll_timeout(), None, "no connect deadline");
}

mod routing;
