use super::*;
use crate::probe::report::{BackendIdentity, ChainReport, Mechanism, MechanismReport};

fn name(prefix: u8) -> KeyName {
    let mut ticket = [prefix; 40];
    ticket[39] = 0xee;
    KeyName::from_ticket(&ticket, Default::default()).unwrap()
}

/// A TLS 1.3 connection on `backend` offering a ticket named `offered` (digest `digest`).
fn conn(index: usize, backend: &str, offered: Option<(u8, &str)>) -> ConnectionReport {
    let mut c = ConnectionReport::failed(index, String::new(), 1.0);
    c.error = None;
    c.backend = Some(BackendIdentity {
        fingerprint: backend.into(),
        name: backend.into(),
        banner: None,
    });
    if let Some((prefix, digest)) = offered {
        c.offered_psk = Some(digest.into());
        c.offered_key_name = Some(name(prefix));
    }
    c
}

/// A connection's backend and the (prefix, digest) of the ticket it offered.
type Step<'a> = (&'a str, Option<(u8, &'a str)>);

/// One chain per plan; each reconnection offers the ticket its predecessor's backend issued.
fn report(chains: &[Vec<Step>]) -> Vec<BackendKeyNames> {
    let chains = chains
        .iter()
        .enumerate()
        .map(|(n, plan)| {
            let conns = plan
                .iter()
                .enumerate()
                .map(|(i, (b, o))| conn(i, b, *o))
                .collect();
            ChainReport::new(n + 1, conns, Identify::Certificate)
        })
        .collect();
    let m = MechanismReport::new(Mechanism::Psk, chains, Identify::Certificate);
    key_names(&[m], Identify::Certificate)
}

#[test]
fn a_server_whose_tickets_share_a_prefix_is_named() {
    let r = report(&[vec![
        ("a", None),
        ("a", Some((1, "t1"))),
        ("a", Some((1, "t2"))),
        ("a", Some((1, "t3"))),
        ("a", Some((1, "t4"))),
    ]]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].naming, Naming::Named, "{r:?}");
    assert_eq!((r[0].tickets, r[0].names.len()), (4, 1));
    assert!(describe(&r[0]).contains("ticket-key affinity learns it"));
}

#[test]
fn a_server_whose_prefixes_never_repeat_is_unnamed() {
    let r = report(&[vec![
        ("u", None),
        ("u", Some((1, "t1"))),
        ("u", Some((2, "t2"))),
        ("u", Some((3, "t3"))),
        ("u", Some((4, "t4"))),
    ]]);
    assert_eq!(r[0].naming, Naming::Unnamed, "{r:?}");
    assert!(describe(&r[0]).contains("no stable key name"));
}

#[test]
fn a_ticket_is_attributed_to_the_backend_that_issued_it_not_the_one_it_reached() {
    // Non-sticky: every ticket of "a" is presented on "b" and the other way round.
    let r = report(&[vec![
        ("a", None),
        ("b", Some((1, "t1"))),
        ("a", Some((2, "t2"))),
        ("b", Some((1, "t3"))),
        ("a", Some((2, "t4"))),
    ]]);
    let by = |b: &str| r.iter().find(|x| x.backend == b).unwrap().clone();
    assert_eq!(by("a").names, vec![name(1).hex()]);
    assert_eq!(by("b").names, vec![name(2).hex()]);
    assert_eq!(by("a").naming, Naming::Named);
}

#[test]
fn the_same_name_from_two_backends_is_shared_and_a_ticket_counts_once() {
    let r = report(&[
        vec![("a", None), ("a", Some((7, "t1"))), ("a", Some((7, "t2")))],
        vec![("b", None), ("b", Some((7, "t3"))), ("b", Some((7, "t3")))],
    ]);
    let b = r.iter().find(|x| x.backend == "b").unwrap();
    assert_eq!(b.tickets, 1, "t3 presented twice is one ticket: {r:?}");
    let a = r.iter().find(|x| x.backend == "a").unwrap();
    assert_eq!(a.naming, Naming::Shared, "{r:?}");
}

#[test]
fn one_ticket_is_too_few() {
    let r = report(&[vec![("a", None), ("a", Some((1, "t1")))]]);
    assert_eq!(r[0].naming, Naming::TooFew);
}

#[test]
fn no_ticket_no_entry() {
    assert!(report(&[vec![("a", None), ("a", None)]]).is_empty());
}
