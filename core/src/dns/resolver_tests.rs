use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::config::resolvers::{Nameserver, Resolvers};
use crate::dns::wire::tests::{respond, Rr};

fn settings(nameservers: usize) -> Resolvers {
    let ns = (0..nameservers)
        .map(|i| Nameserver {
            name: format!("ns{i}"),
            address: format!("127.0.0.1:{}", 5300 + i),
        })
        .collect();
    let mut r = Resolvers::new("dns", ns);
    r.hold.nx = Duration::from_secs(5);
    r
}

fn resolver(nameservers: usize, prefer: Family) -> Resolver {
    let name = Name {
        host: "app.test".into(),
        prefer,
    };
    Resolver::new(settings(nameservers), vec![name], 42)
}

fn at(ms: u64) -> Timestamp {
    Timestamp(ms)
}

fn queries(out: &[Output]) -> Vec<(usize, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Query { nameserver, packet } => Some((*nameserver, packet.clone())),
            _ => None,
        })
        .collect()
}

fn a(last: u8) -> Rr {
    Rr::A(Ipv4Addr::new(127, 0, 0, last))
}

#[test]
fn a_name_resolves_then_resolves_again_after_timeout_resolve() {
    let mut r = resolver(1, Family::Ipv4);
    let q = queries(&r.poll(at(0)));
    assert_eq!(q.len(), 1);
    let out = r.receive(at(5), 0, &respond(&q[0].1, 0, &[("app.test", a(2))]));
    assert_eq!(
        out,
        vec![Output::Resolved {
            name: 0,
            addrs: vec![IpAddr::from([127, 0, 0, 2])]
        }]
    );
    assert_eq!(r.next_deadline(), Some(at(1005)));
    assert!(r.poll(at(1004)).is_empty());
    assert_eq!(queries(&r.poll(at(1005))).len(), 1);
}

#[test]
fn every_nameserver_is_asked_and_the_first_valid_answer_wins() {
    let mut r = resolver(2, Family::Ipv4);
    let q = queries(&r.poll(at(0)));
    assert_eq!(q.iter().map(|q| q.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(r.receive(at(1), 0, &respond(&q[0].1, 2, &[])).is_empty());
    let out = r.receive(at(2), 1, &respond(&q[1].1, 0, &[("app.test", a(3))]));
    assert!(matches!(&out[..], [Output::Resolved { .. }]));
}

#[test]
fn a_mismatched_answer_is_ignored() {
    let mut r = resolver(1, Family::Ipv4);
    let q = queries(&r.poll(at(0)));
    let mut wrong_id = respond(&q[0].1, 0, &[("app.test", a(2))]);
    wrong_id[0] ^= 0xff;
    assert!(r.receive(at(1), 0, &wrong_id).is_empty());
    let other = encode_query(0, "other.test", QType::A, 512).unwrap();
    let mut wrong_name = respond(&other, 0, &[("other.test", a(2))]);
    wrong_name[..2].copy_from_slice(&q[0].1[..2]);
    assert!(r.receive(at(1), 0, &wrong_name).is_empty());
    assert!(r
        .receive(at(1), 7, &respond(&q[0].1, 0, &[("app.test", a(2))]))
        .is_empty());
    assert!(r.receive(at(1), 0, b"garbage").is_empty());
}

#[test]
fn an_empty_answer_falls_back_to_the_other_family_at_once() {
    let mut r = resolver(1, Family::Ipv6);
    let q = queries(&r.poll(at(0)));
    assert_eq!(q[0].1[q[0].1.len() - 3], 28, "AAAA first");
    let again = queries(&r.receive(at(1), 0, &respond(&q[0].1, 0, &[])));
    assert_eq!(again.len(), 1);
    let qt = &again[0].1;
    assert_eq!(qt[qt.len() - 3], 1, "then A");
    let out = r.receive(at(2), 0, &respond(qt, 0, &[("app.test", a(4))]));
    assert!(matches!(&out[..], [Output::Resolved { .. }]));
}

#[test]
fn timeouts_retry_then_fail_with_hold_expired_when_never_valid() {
    let mut r = resolver(1, Family::Ipv4);
    assert_eq!(queries(&r.poll(at(0))).len(), 1);
    assert_eq!(queries(&r.poll(at(1000))).len(), 1);
    assert_eq!(queries(&r.poll(at(2000))).len(), 1);
    let out = r.poll(at(3000));
    assert_eq!(
        out,
        vec![Output::Failed {
            name: 0,
            failure: Failure::Timeout,
            hold_expired: true
        }]
    );
}

/// Runs `r` against a name server that answers NXDOMAIN at once, a poll every second from
/// `t`, until the resolution fails; returns the failure and its time.
fn until_failure(r: &mut Resolver, mut t: u64) -> (Output, u64) {
    for _ in 0..100 {
        let mut pending = r.poll(at(t));
        while let Some(o) = pending.pop() {
            match o {
                Output::Query { packet, .. } => {
                    pending.extend(r.receive(at(t), 0, &respond(&packet, 3, &[])))
                }
                f @ Output::Failed { .. } => return (f, t),
                Output::Resolved { .. } => panic!("resolved"),
            }
        }
        t += 1000;
    }
    panic!("never failed");
}

#[test]
fn nxdomain_within_hold_nx_of_a_valid_answer_keeps_the_server() {
    let mut r = resolver(1, Family::Ipv4);
    let q = queries(&r.poll(at(0)));
    r.receive(at(0), 0, &respond(&q[0].1, 0, &[("app.test", a(2))]));
    // A, AAAA fallback, then twice more after `timeout retry`: NX after the third try.
    let (failed, t) = until_failure(&mut r, 1000);
    assert_eq!(t, 3000);
    assert_eq!(
        failed,
        Output::Failed {
            name: 0,
            failure: Failure::NxDomain,
            hold_expired: false
        },
        "within hold nx (5s) of the valid answer at 0"
    );
    let (failed, t) = until_failure(&mut r, t + 1000);
    assert_eq!(t, 6000);
    assert!(matches!(
        failed,
        Output::Failed {
            hold_expired: true,
            ..
        }
    ));
}

#[test]
fn pick_keeps_the_current_address_while_it_is_answered() {
    let (x, y) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
    assert_eq!(pick_address(Some(y), &[x, y]), Some(y));
    assert_eq!(pick_address(Some(y), &[x]), Some(x));
    assert_eq!(pick_address(None, &[x, y]), Some(x));
    assert_eq!(pick_address(None, &[]), None);
}
