use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;

fn name(b: u8) -> KeyName {
    let mut t = [b; 64];
    t[20] = 0xee;
    KeyName::from_ticket(&t, NameSpan::default()).unwrap()
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

fn learner() -> TicketKeys {
    TicketKeys::new(Limits {
        probe_every: u64::MAX,
        ..Limits::default()
    })
}

#[test]
fn the_name_is_cut_from_the_configured_span() {
    let ticket: Vec<u8> = (0u8..40).collect();
    let n = KeyName::from_ticket(&ticket, NameSpan::default()).unwrap();
    assert_eq!(n.as_slice(), &ticket[..16]);
    assert_eq!(n.hex(), "000102030405060708090a0b0c0d0e0f");
    let span = NameSpan {
        offset: 2,
        length: 4,
    };
    assert_eq!(
        KeyName::from_ticket(&ticket, span).unwrap().as_slice(),
        &[2, 3, 4, 5]
    );
    // A ticket no longer than its name is no ticket; a hostile span never panics.
    assert_eq!(
        KeyName::from_ticket(&ticket[..16], NameSpan::default()),
        None
    );
    let far = NameSpan {
        offset: u16::MAX,
        length: 255,
    };
    assert_eq!(KeyName::from_ticket(&ticket, far), None);
}

#[test]
fn an_accepted_resumption_teaches_and_the_name_then_routes_there() {
    let mut k = learner();
    k.on_served(ip(1), ServerId(0));
    k.on_served(ip(2), ServerId(1));
    assert_eq!(k.on_accepted(&name(1), ServerId(1)), Change::Learned);
    assert_eq!(
        k.route(&name(1), ip(9), Bootstrap::default()),
        Guess::Owner(ServerId(1))
    );
    assert_eq!(k.on_accepted(&name(1), ServerId(1)), Change::Confirmed);
    assert_eq!(k.snapshot().servers[1].names, vec![name(1).hex()]);
}

#[test]
fn a_rejection_unlearns_a_confirmed_name() {
    let mut k = learner();
    k.on_issued(&name(1), ServerId(0));
    assert_eq!(k.on_rejected(&name(1), ServerId(0)), Change::Unlearned);
    assert_eq!(k.owner(&name(1)), None);
    assert!(k.is_empty());
}

#[test]
fn the_bootstrap_prefers_the_clients_last_server_then_a_nameless_one() {
    let mut k = learner();
    for s in 0..3 {
        k.on_served(ip(s as u8), ServerId(s));
    }
    // The client was last served by server 2: its ticket most likely comes from there.
    assert_eq!(
        k.route(&name(7), ip(2), Bootstrap::default()),
        Guess::Bootstrap(ServerId(2))
    );
    assert_eq!(k.on_rejected(&name(7), ServerId(2)), Change::Refuted);
    // Refuted there: another server without a name, never server 2 again.
    let Guess::Bootstrap(next) = k.route(&name(7), ip(2), Bootstrap::default()) else {
        panic!("expected a bootstrap guess");
    };
    assert_ne!(next, ServerId(2));
    k.on_accepted(&name(8), next);
    // Server `next` has a name now: the last nameless server is the only candidate.
    let last = (0..3)
        .map(ServerId)
        .find(|s| *s != next && *s != ServerId(2));
    assert_eq!(
        k.route(&name(7), ip(2), Bootstrap::default()),
        Guess::Bootstrap(last.unwrap())
    );
}

#[test]
fn a_named_last_server_yields_to_a_nameless_one_until_all_have_names() {
    let mut k = learner();
    k.on_served(None, ServerId(0));
    k.on_served(None, ServerId(1));
    k.on_accepted(&name(1), ServerId(0));
    k.on_served(ip(9), ServerId(0));
    // Server 0's tickets carry name 1: an unknown name is more likely server 1's.
    assert_eq!(
        k.route(&name(2), ip(9), Bootstrap::default()),
        Guess::Bootstrap(ServerId(1))
    );
    k.on_accepted(&name(3), ServerId(1));
    // Everyone has a name: an unknown one is most likely a rotation on the client's server.
    assert_eq!(
        k.route(&name(2), ip(9), Bootstrap::default()),
        Guess::Bootstrap(ServerId(0))
    );
}

#[test]
fn a_name_accepted_on_two_servers_is_shared_and_falls_through() {
    let mut k = learner();
    k.on_accepted(&name(1), ServerId(0));
    assert_eq!(k.on_accepted(&name(1), ServerId(1)), Change::BecameShared);
    assert_eq!(
        k.route(&name(1), ip(1), Bootstrap::default()),
        Guess::Shared
    );
    assert!(k.is_shared(&name(1)));
    assert_eq!(k.snapshot().shared, vec![name(1).hex()]);
    assert!(k.snapshot().servers.iter().all(|s| s.names.is_empty()));
}

#[test]
fn confirmed_names_are_probed_elsewhere_now_and_then() {
    let mut k = TicketKeys::new(Limits {
        probe_every: 4,
        ..Limits::default()
    });
    k.on_served(None, ServerId(1));
    k.on_accepted(&name(1), ServerId(0));
    let routes: Vec<Guess> = (0..8)
        .map(|_| k.route(&name(1), None, Bootstrap::default()))
        .collect();
    let probes = routes.iter().filter(|g| **g == Guess::Probe(ServerId(1)));
    assert_eq!(probes.count(), 2);
    assert_eq!(k.on_accepted(&name(1), ServerId(1)), Change::BecameShared);
}

#[test]
fn a_server_whose_names_never_repeat_becomes_unnamed_once() {
    let mut k = learner();
    k.on_accepted(&name(200), ServerId(1));
    let changes: Vec<Change> = (0..10)
        .map(|i| k.on_accepted(&name(i), ServerId(0)))
        .collect();
    assert_eq!(changes[6], Change::Learned);
    assert_eq!(changes[7], Change::BecameUnnamed);
    assert!(changes[8..].iter().all(|c| *c == Change::Ignored));
    assert!(k.is_unnamed(ServerId(0)));
    assert_eq!(
        k.owner(&name(3)),
        None,
        "nothing kept for an unnamed server"
    );
    // Its clients' unknown names fall through instead of being guessed.
    k.on_served(ip(5), ServerId(0));
    assert_eq!(
        k.route(&name(100), ip(5), Bootstrap::default()),
        Guess::Unnamed
    );
    // Server 1 is named and known: an unknown name from nobody in particular falls through.
    assert_eq!(
        k.route(&name(101), None, Bootstrap::default()),
        Guess::Unnamed
    );
}

#[test]
fn a_named_server_with_many_resumptions_stays_named() {
    let mut k = learner();
    for _ in 0..100 {
        k.on_accepted(&name(1), ServerId(0));
    }
    for i in 2..10 {
        k.on_accepted(&name(i), ServerId(0)); // eight rotations
    }
    assert!(!k.is_unnamed(ServerId(0)));
    assert_eq!(
        k.snapshot().servers[0].names.len(),
        Limits::default().names_per_server
    );
}

#[derive(Clone, Debug)]
enum Op {
    Served(u8, u32),
    Accepted(u8, u32),
    Issued(u8, u32),
    Rejected(u8, u32),
    Route(u8, u8, Bootstrap),
}

fn bootstrap() -> impl Strategy<Value = Bootstrap> {
    prop_oneof![
        Just(Bootstrap::ClientThenNameless),
        Just(Bootstrap::Nameless),
        Just(Bootstrap::Client),
        Just(Bootstrap::None),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), 0u32..6).prop_map(|(c, s)| Op::Served(c, s)),
        (0u8..40, 0u32..6).prop_map(|(n, s)| Op::Accepted(n, s)),
        (0u8..40, 0u32..6).prop_map(|(n, s)| Op::Issued(n, s)),
        (0u8..40, 0u32..6).prop_map(|(n, s)| Op::Rejected(n, s)),
        (0u8..40, any::<u8>(), bootstrap()).prop_map(|(n, c, b)| Op::Route(n, c, b)),
    ]
}

fn apply(k: &mut TicketKeys, op: &Op) {
    match *op {
        Op::Served(c, s) => k.on_served(ip(c), ServerId(s)),
        Op::Accepted(n, s) => drop(k.on_accepted(&name(n), ServerId(s))),
        Op::Issued(n, s) => drop(k.on_issued(&name(n), ServerId(s))),
        Op::Rejected(n, s) => drop(k.on_rejected(&name(n), ServerId(s))),
        Op::Route(n, c, b) => drop(k.route(&name(n), ip(c), b)),
    }
}

proptest! {
    /// Whatever happens, the learner stays within its bounds.
    #[test]
    fn the_learner_is_bounded(ops in proptest::collection::vec(op(), 0..400)) {
        let limits = Limits { names_per_server: 2, servers: 4, shared: 3, refuted: 5,
            clients: 7, unnamed_after: 8, probe_every: 64 };
        let mut k = TicketKeys::new(limits);
        for o in &ops {
            apply(&mut k, o);
            let snap = k.snapshot();
            prop_assert!(snap.servers.len() <= 4);
            prop_assert!(snap.servers.iter().all(|s| s.names.len() <= 2));
            prop_assert!(snap.shared.len() <= 3);
            prop_assert!(k.len() <= 4 * 2 + 3);
            prop_assert!(k.footprint() <= 4 * 2 + 3 + 5 * 4 + 7 + 4);
        }
    }

    /// After any history, a name just accepted by a named server routes to it (or, if it was
    /// owned elsewhere, is shared), and a name just rejected by its owner is gone.
    #[test]
    fn confirmed_routes_and_rejected_unlearns(
        ops in proptest::collection::vec(op(), 0..200),
        n in 0u8..40, s in 0u32..6,
    ) {
        let mut k = TicketKeys::new(Limits { probe_every: u64::MAX, ..Limits::default() });
        for o in &ops {
            apply(&mut k, o);
        }
        let before = k.owner(&name(n));
        match k.on_accepted(&name(n), ServerId(s)) {
            Change::Learned | Change::Confirmed if !k.is_shared(&name(n)) => {
                prop_assert_eq!(k.route(&name(n), None, Bootstrap::default()), Guess::Owner(ServerId(s)));
            }
            Change::BecameShared => {
                prop_assert!(before.is_some() && before != Some(ServerId(s)));
                prop_assert_eq!(k.route(&name(n), None, Bootstrap::default()), Guess::Shared);
            }
            Change::BecameUnnamed | Change::Ignored => prop_assert!(k.is_unnamed(ServerId(s))),
            _ => {}
        }
        if k.owner(&name(n)) == Some(ServerId(s)) {
            prop_assert_eq!(k.on_rejected(&name(n), ServerId(s)), Change::Unlearned);
            prop_assert_eq!(k.owner(&name(n)), None);
            prop_assert!(k.route(&name(n), None, Bootstrap::default()) != Guess::Owner(ServerId(s)));
        }
    }

    /// Whatever the bootstrap, a guess never names a server that refused this name or one found
    /// unnamed, and `none` never guesses.
    #[test]
    fn guesses_avoid_refusals_and_unnamed_servers(
        ops in proptest::collection::vec(op(), 0..200), n in 0u8..40, c in any::<u8>(),
        how in bootstrap(),
    ) {
        let mut k = TicketKeys::new(Limits { probe_every: u64::MAX, ..Limits::default() });
        for o in &ops {
            apply(&mut k, o);
        }
        let guess = k.route(&name(n), ip(c), how);
        if how == Bootstrap::None && k.owner(&name(n)).is_none() && !k.is_shared(&name(n)) {
            prop_assert_eq!(guess, Guess::Unknown);
        }
        if let Guess::Bootstrap(g) = guess {
            prop_assert!(!k.is_unnamed(g));
            prop_assert!(k.refuted.get(&name(n)).is_none_or(|r| !r.contains(&g)));
        }
    }
}

#[test]
fn the_bootstraps_differ_on_a_client_whose_last_server_is_named() {
    let mut k = TicketKeys::new(Limits::default());
    for s in 0..3 {
        k.on_served(ip(200), ServerId(s));
    }
    // Server 0 has a name; 1 and 2 have none; the client was last served by 0.
    k.on_issued(&name(1), ServerId(0));
    k.on_served(ip(9), ServerId(0));
    let unknown = name(30);
    let client = k.route(&unknown, ip(9), Bootstrap::Client);
    assert_eq!(client, Guess::Bootstrap(ServerId(0)));
    for how in [Bootstrap::ClientThenNameless, Bootstrap::Nameless] {
        let Guess::Bootstrap(g) = k.route(&unknown, ip(9), how) else {
            panic!("{how:?} guesses")
        };
        assert_ne!(g, ServerId(0), "{how:?} prefers a server with no name yet");
    }
    assert_eq!(k.route(&unknown, ip(9), Bootstrap::None), Guess::Unknown);
}
