//! `ticket-key` affinity through the state machine: names learned from the server's answers,
//! matched on the next ClientHello, unlearned on a refusal.

use super::*;
use crate::affinity::ticket_keys::{KeyName, NameSpan};

const CHAIN: &str = "affinity = [\"ticket-key\"]";

fn rig() -> Rig {
    let text = BACKEND
        .replace("affinity = [\"session-id\", \"ticket\"]", CHAIN)
        .replace("RETRIES", "retries = 3")
        .replace("CONNECT", "timeout-connect = \"3s\"")
        .replace("EXTRA", "")
        .replace("S1", "");
    let config = load_toml("test.toml", &text).expect("test config loads");
    Rig::new(build(&config, None).expect("test config builds"))
}

/// A ticket under key `name`: the 16-byte name, then "encrypted" bytes.
fn ticket(name: u8, tail: u8) -> Vec<u8> {
    let mut t = vec![name; 16];
    t.extend(std::iter::repeat_n(tail, 100));
    t
}

/// A TLS 1.3 ClientHello resuming with `identity` (or a fresh one).
fn hello13(identity: Option<&[u8]>) -> Vec<u8> {
    let mut b = ClientHelloBuilder::new([0x13; 32]);
    b.session_id(&[0x55; 32])
        .supported_versions(&[ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2]);
    if let Some(id) = identity {
        b.psk_key_exchange_modes(&[1])
            .pre_shared_key(&[(id, 0)], &[&[0u8; 32]]);
    }
    b.records()
}

/// A TLS 1.3 ServerHello, accepting the first PSK identity or not.
fn server_hello13(accepted: bool) -> Vec<u8> {
    let mut b = ServerHelloBuilder::new([0x31; 32]);
    b.session_id(&[0x55; 32])
        .cipher_suite(0x1301)
        .supported_version(ProtocolVersion::TLS1_3);
    if accepted {
        b.pre_shared_key(0);
    }
    let mut out = Vec::new();
    push_record(&mut out, HANDSHAKE, ProtocolVersion::TLS1_2, &b.message());
    out
}

/// Runs one connection: the client's bytes, then the server's; returns where it went and its
/// record.
fn run(rig: &Rig, client: &[u8], server: &[u8], t: u64) -> (ServerId, ConnectionRecord) {
    let mut c = rig.connection();
    feed(&mut c, client);
    let s = connect_to(&mut c, rig.at(t));
    c.on_connect(rig.at(t), Ok(client.len()));
    c.poll(rig.at(t));
    c.on_server_bytes(rig.at(t), server);
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    (s, c.finish(rig.at(t + 1)))
}

fn owner(rig: &Rig, name: u8) -> Option<ServerId> {
    let learner = rig.be().tables.ticket_keys_arc()?.lock().unwrap();
    learner.owner(&KeyName::from_ticket(
        &ticket(name, 0),
        NameSpan::default(),
    )?)
}

#[test]
fn an_accepted_psk_teaches_its_key_name_and_other_tickets_of_that_key_follow() {
    let rig = rig();
    let (s, rec) = run(
        &rig,
        &hello13(Some(&ticket(7, 1))),
        &server_hello13(true),
        1,
    );
    assert_eq!(rec.affinity, AffinityOutcome::Learned);
    assert_eq!((rec.resumed, rec.learned), (Some(true), 1));
    assert_eq!(owner(&rig, 7), Some(s));
    // Another client's single-use ticket under the same key: roundrobin would pick the other
    // server, the key name sends it back.
    for (i, t) in [2u8, 3, 4].iter().enumerate() {
        let (again, rec) = run(
            &rig,
            &hello13(Some(&ticket(7, *t))),
            &server_hello13(true),
            10 + i as u64,
        );
        assert_eq!(again, s);
        assert_eq!(rec.affinity, AffinityOutcome::Hit);
        assert_eq!(rec.key, Some(AffinityKey::TicketKey));
    }
}

#[test]
fn a_refused_resumption_unlearns_the_name() {
    let rig = rig();
    let (s, _) = run(
        &rig,
        &hello13(Some(&ticket(7, 1))),
        &server_hello13(true),
        1,
    );
    // The server restarted: it refuses its old key.
    let (again, rec) = run(
        &rig,
        &hello13(Some(&ticket(7, 2))),
        &server_hello13(false),
        2,
    );
    assert_eq!(again, s);
    assert_eq!(rec.resumed, Some(false));
    assert_eq!(owner(&rig, 7), None);
}

#[test]
fn an_unknown_name_goes_to_the_server_that_last_served_this_client() {
    let rig = rig();
    // A full handshake: roundrobin picks the first server.
    let (first, rec) = run(&rig, &hello13(None), &server_hello13(false), 1);
    assert_eq!(rec.affinity, AffinityOutcome::NoKey(NoKeyReason::NoPsk));
    // Its ticket (unknown name) goes back there, where roundrobin would have sent it on.
    let (s, rec) = run(
        &rig,
        &hello13(Some(&ticket(9, 1))),
        &server_hello13(true),
        2,
    );
    assert_eq!(s, first);
    assert_eq!(rec.affinity, AffinityOutcome::Learned);
    assert_eq!(owner(&rig, 9), Some(first));
}

#[test]
fn a_tls12_new_session_ticket_teaches_the_name_directly() {
    let rig = rig();
    let mut flight = server_hello(&[]);
    flight.extend_from_slice(&new_session_ticket(&ticket(5, 1)));
    let (s, rec) = run(&rig, &client_hello(&[], "k.example", Some(&[])), &flight, 1);
    assert_eq!(rec.affinity, AffinityOutcome::Learned);
    assert_eq!(owner(&rig, 5), Some(s));
    // A different ticket of the same key, TLS 1.2: sticks; the echo confirms it.
    let id = [0x42; 32];
    let (again, rec) = run(
        &rig,
        &client_hello(&id, "k.example", Some(&ticket(5, 2))),
        &server_hello(&id),
        2,
    );
    assert_eq!((again, rec.affinity), (s, AffinityOutcome::Hit));
}

#[test]
fn a_name_two_servers_accept_is_shared_and_falls_through_to_balancing() {
    let rig = rig();
    let (a, _) = run(&rig, &hello13(None), &server_hello13(false), 1);
    let (b, _) = run(&rig, &hello13(None), &server_hello13(false), 2);
    assert_ne!(a, b);
    // Both servers issue TLS 1.2 tickets under one key: it is shared.
    for (t, tail) in [(3, 1u8), (4, 2u8)] {
        let mut flight = server_hello(&[]);
        flight.extend_from_slice(&new_session_ticket(&ticket(6, tail)));
        run(&rig, &client_hello(&[], "s.example", Some(&[])), &flight, t);
    }
    let learner = rig
        .be()
        .tables
        .ticket_keys_arc()
        .unwrap()
        .lock()
        .unwrap()
        .snapshot();
    assert_eq!(learner.shared, vec!["06".repeat(16)]);
    let (_, rec) = run(
        &rig,
        &hello13(Some(&ticket(6, 3))),
        &server_hello13(true),
        5,
    );
    assert_eq!(
        rec.affinity,
        AffinityOutcome::NoKey(NoKeyReason::TicketKeyShared)
    );
}

#[test]
fn a_reload_keeps_the_learned_names_under_the_servers_new_ids() {
    let rig = rig();
    let (s, _) = run(
        &rig,
        &hello13(Some(&ticket(7, 1))),
        &server_hello13(true),
        1,
    );
    let name = rig.be().servers[s.index()].name.clone();
    // The same servers, declared in the other order.
    let text = BACKEND
        .replace("affinity = [\"session-id\", \"ticket\"]", CHAIN)
        .replace("RETRIES", "retries = 3")
        .replace("CONNECT", "timeout-connect = \"3s\"")
        .replace("EXTRA", "")
        .replace("S1", "")
        .replace(
            "name = \"s1\"\naddress = \"127.0.0.1:1001\"",
            "name = \"tmp\"\naddress = \"127.0.0.1:1001\"",
        )
        .replace(
            "name = \"s2\"\naddress = \"127.0.0.1:1002\"",
            "name = \"s1\"\naddress = \"127.0.0.1:1001\"",
        )
        .replace(
            "name = \"tmp\"\naddress = \"127.0.0.1:1001\"",
            "name = \"s2\"\naddress = \"127.0.0.1:1002\"",
        );
    let config = load_toml("test.toml", &text).expect("reordered config loads");
    let reloaded = Rig::new(build(&config, Some(&rig.rt)).expect("reload builds"));
    let moved = reloaded.be().server_id(&name).unwrap();
    assert_ne!(moved, s, "the server changed index");
    assert_eq!(owner(&reloaded, 7), Some(moved));
    let (again, rec) = run(
        &reloaded,
        &hello13(Some(&ticket(7, 2))),
        &server_hello13(true),
        2,
    );
    assert_eq!((again, rec.affinity), (moved, AffinityOutcome::Hit));
}
