//! Session tests: two sessions talking through byte buffers, and hostile input.

use super::*;
use proptest::prelude::*;

fn config(name: &str, key_len: usize) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        local_name: name.to_owned(),
        tables: vec![LocalTable {
            name: "app".to_owned(),
            key_len,
            expire_ms: 60_000,
        }],
    })
}

fn t(ms: u64) -> Timestamp {
    Timestamp(ms)
}

/// Moves bytes both ways until neither side has anything to send.
fn pump(a: &mut Session, b: &mut Session, now: Timestamp) {
    loop {
        let mut buf = Vec::new();
        let mut moved = false;
        if a.poll_transmit(&mut buf, now) {
            let _ = b.handle_input(&buf, now);
            moved = true;
        }
        buf.clear();
        if b.poll_transmit(&mut buf, now) {
            let _ = a.handle_input(&buf, now);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn pair() -> (Session, Session) {
    let mut a = Session::connect(config("lb1", 32), "lb2", t(0));
    let mut b = Session::accept(config("lb2", 32), vec!["lb1".into()], t(0));
    pump(&mut a, &mut b, t(1));
    assert_eq!(events(&mut a), [Event::Open { peer: "lb2".into() }]);
    assert_eq!(events(&mut b), [Event::Open { peer: "lb1".into() }]);
    (a, b)
}

fn update<'a>(id: u32, key: &'a [u8], server: &'a str) -> OutgoingUpdate<'a> {
    OutgoingUpdate {
        id,
        key,
        server_id: 2,
        server_name: server,
        expire_ms: None,
    }
}

#[test]
fn update_travels_and_is_acknowledged() {
    let (mut a, mut b) = pair();
    a.send_update(0, &update(7, &[1; 32], "s2"));
    a.send_update(0, &update(8, &[2; 32], "s3"));
    pump(&mut a, &mut b, t(2));
    let got = events(&mut b);
    assert_eq!(got.len(), 2);
    let Event::Update(u) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (u.table, &u.key[..], u.server_id),
        (0, &[2u8; 32][..], Some(2))
    );
    assert_eq!(u.server_name.as_deref(), Some("s3"));
    assert_eq!(
        events(&mut a),
        [Event::Acked {
            table: 0,
            update: 8
        }]
    );
    assert_eq!(b.stats().updates_received, 2);
}

#[test]
fn hello_to_the_wrong_name_or_from_a_stranger_is_refused() {
    for (to, from, status) in [("other", "lb1", 503), ("lb2", "stranger", 504)] {
        let mut a = Session::connect(config(from, 32), to, t(0));
        let mut b = Session::accept(config("lb2", 32), vec!["lb1".into()], t(0));
        pump(&mut a, &mut b, t(1));
        assert!(
            matches!(events(&mut b)[..], [Event::Closed(SessionError::RefusedHello { status: s, .. })] if s == status)
        );
        assert_eq!(
            events(&mut a),
            [Event::Closed(SessionError::Refused(status))]
        );
    }
}

#[test]
fn a_table_with_another_key_length_is_declined_not_applied() {
    let mut a = Session::connect(config("lb1", 16), "lb2", t(0));
    let mut b = Session::accept(config("lb2", 32), vec!["lb1".into()], t(0));
    pump(&mut a, &mut b, t(1));
    events(&mut b);
    a.send_update(0, &update(1, &[1; 16], "s1"));
    pump(&mut a, &mut b, t(2));
    assert_eq!(
        events(&mut b),
        [Event::Declined {
            name: "app".into(),
            why: "key length differs"
        }]
    );
    assert!(b.is_open());
    assert_eq!(b.stats().updates_skipped, 1);
}

#[test]
fn resync_request_finished_confirm() {
    let (mut a, mut b) = pair();
    a.send_resync_request();
    pump(&mut a, &mut b, t(2));
    assert_eq!(events(&mut b), [Event::ResyncRequested]);
    b.send_update(
        0,
        &OutgoingUpdate {
            expire_ms: Some(500),
            ..update(3, &[4; 32], "s1")
        },
    );
    b.send_resync_finished(false);
    pump(&mut a, &mut b, t(3));
    let got = events(&mut a);
    assert!(matches!(&got[0], Event::Update(u) if u.expire_ms == Some(500)));
    assert_eq!(got[1], Event::ResyncFinished { partial: false });
    assert_eq!(
        events(&mut b),
        [
            Event::ResyncConfirmed,
            Event::Acked {
                table: 0,
                update: 3
            }
        ]
    );
}

#[test]
fn heartbeat_when_quiet_and_timeout_when_silent() {
    let (mut a, mut b) = pair();
    assert_eq!(a.poll_timeout(), Some(t(1 + HEARTBEAT_MS)));
    a.handle_timeout(t(1 + HEARTBEAT_MS));
    pump(&mut a, &mut b, t(1 + HEARTBEAT_MS));
    assert_eq!(events(&mut b), [Event::Heartbeat]);
    b.handle_timeout(t(1 + HEARTBEAT_MS + IDLE_TIMEOUT_MS));
    assert_eq!(events(&mut b), [Event::Closed(SessionError::Timeout)]);
    assert!(b.poll_timeout().is_none());
}

#[test]
fn garbage_after_hello_closes_with_an_error() {
    let (_a, mut b) = pair();
    assert!(b.handle_input(&[255, 1, 2, 3], t(5)).is_err());
    assert_eq!(
        events(&mut b),
        [Event::Closed(SessionError::Wire(WireError::ReservedClass))]
    );
    assert!(
        b.handle_input(b"more", t(6)).is_ok(),
        "input after close is ignored"
    );
}

#[test]
fn an_update_naming_an_unfilled_dictionary_slot_is_an_error() {
    let (_a, mut b) = pair();
    let mut bytes = Vec::new();
    wire::put_define(&mut bytes, 1, "app", 32, 1000);
    let mut body = 1u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[1, 1, 9]); // server_id 1, dict: length 1, id 9 (never sent)
    wire::put_table_message(&mut bytes, wire::stkt::UPDATE, &body);
    assert_eq!(
        b.handle_input(&bytes, t(2)),
        Err(SessionError::Dictionary(9))
    );
}

proptest! {
    /// Whatever arrives, split however, a session never panics, never reports an update that
    /// was not whole, and closes on what it cannot decode.
    #[test]
    fn hostile_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..12), valid_prefix in any::<bool>()) {
        let mut b = Session::accept(config("lb2", 32), vec!["lb1".into()], t(0));
        if valid_prefix {
            let _ = b.handle_input(b"HAProxyS 2.1\nlb2\nlb1 1 1\n", t(0));
            let mut def = Vec::new();
            wire::put_define(&mut def, 1, "app", 32, 1000);
            let _ = b.handle_input(&def, t(0));
        }
        for (i, c) in chunks.iter().enumerate() {
            let _ = b.handle_input(c, t(i as u64));
        }
        for e in events(&mut b) {
            if let Event::Update(u) = e {
                prop_assert_eq!(u.key.len(), 32);
            }
        }
        prop_assert!(b.rx.len() <= wire::MAX_MESSAGE + 16 + 64);
    }

    /// Updates sent in any order of tables and sizes arrive in order and intact.
    #[test]
    fn updates_round_trip(keys in proptest::collection::vec((any::<[u8; 32]>(), 0u8..4), 1..40)) {
        let (mut a, mut b) = pair();
        let names = ["s0", "s1", "s2", "a-much-longer-server-name"];
        for (i, (k, s)) in keys.iter().enumerate() {
            a.send_update(0, &update(i as u32 + 1, k, names[*s as usize]));
        }
        pump(&mut a, &mut b, t(2));
        let got: Vec<_> = events(&mut b).into_iter().filter_map(|e| match e { Event::Update(u) => Some(u), _ => None }).collect();
        prop_assert_eq!(got.len(), keys.len());
        for (u, (k, s)) in got.iter().zip(&keys) {
            prop_assert_eq!(&u.key[..], &k[..]);
            prop_assert_eq!(u.server_name.as_deref(), Some(names[*s as usize]));
        }
    }
}
