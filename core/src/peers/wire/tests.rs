//! Codec tests: HAProxy's varint boundaries, round trips, and hostile input.

use super::*;
use proptest::prelude::*;

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v);
    out
}

#[test]
fn varint_matches_haproxy_boundaries() {
    // PEER_ENC_nBYTES_MIN in peers.c: the encoded length grows exactly there.
    let mins: [u64; 9] = [
        0xf0,
        0x8f0,
        0x408f0,
        0x20408f0,
        0x1020408f0,
        0x81020408f0,
        0x4081020408f0,
        0x204081020408f0,
        0x10204081020408f0,
    ];
    for (i, &m) in mins.iter().enumerate() {
        assert_eq!(varint(m - 1).len(), i + 1, "below {m:#x}");
        assert_eq!(varint(m).len(), i + 2, "at {m:#x}");
    }
    assert_eq!(varint(239), [239]);
    assert_eq!(varint(240), [0xf0, 0x00]);
    assert_eq!(varint(2287), [0xff, 0x7f]);
    assert_eq!(varint(2288), [0xf0, 0x80, 0x00]);
    assert_eq!(varint(u64::MAX).len(), 10);
}

#[test]
fn hello_and_status_lines() {
    let (h, n) = decode_hello(b"HAProxyS 2.1\nlb2\nlb1 1234 1\nrest")
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.version, h.remote, h.local, h.pid, n),
        ((2, 1), "lb2", "lb1", 1234, 28)
    );
    let (h, _) = decode_hello(b"HAProxyS 2.1\nlb2\nlb1 x 1\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.pid, 0, "a pid that does not parse is none");
    assert_eq!(decode_hello(b"HAProxyS 2.1\nlb2\n").unwrap(), None);
    assert!(decode_hello(b"GET / HTTP/1.1\r\n").is_err());
    assert!(decode_hello(b"HAProxyS 2.1\nlb2\nlb1\n").is_err());
    assert!(
        decode_hello(&[b'a'; 300]).is_err(),
        "a line without end is bounded"
    );
    assert_eq!(decode_status(b"200\n").unwrap(), Some((200, 4)));
    assert!(decode_status(b"abc\n").is_err());
}

#[test]
fn define_update_ack_round_trip() {
    let mut out = Vec::new();
    put_define(&mut out, 3, "app", 32, 1_800_000);
    put_update(&mut out, 7, None, &[9; 32], 2, "s2", 1);
    put_ack(&mut out, 5, 42);
    put_control(&mut out, control::HEARTBEAT);
    let (m, n) = decode_message(&out).unwrap().unwrap();
    let Message::Define(def) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (def.table_id, def.name, def.key_type, def.key_len),
        (3, &b"app"[..], key_type::BIN, 32)
    );
    assert_eq!(def.data_types, 1 | 1 << 19);
    assert_eq!(def.expire_ms, 1_800_000);
    let layout = RemoteLayout {
        key_type: def.key_type,
        key_len: 32,
        data_types: def.data_types,
        array_len: def.array_len,
    };
    let (m, n2) = decode_message(&out[n..]).unwrap().unwrap();
    let Message::Update { kind, body } = m else {
        panic!("{m:?}")
    };
    let u = decode_update(kind, body, &layout).unwrap();
    assert_eq!(
        (u.id, u.key, u.server_id),
        (Some(7), &[9u8; 32][..], Some(2))
    );
    assert_eq!(
        u.server_key,
        Some(DictRef {
            id: 1,
            value: Some(&b"s2"[..])
        })
    );
    let (m, n3) = decode_message(&out[n + n2..]).unwrap().unwrap();
    assert_eq!(
        m,
        Message::Ack {
            table_id: 5,
            update: 42
        }
    );
    let (m, _) = decode_message(&out[n + n2 + n3..]).unwrap().unwrap();
    assert_eq!(m, Message::Control(control::HEARTBEAT));
}

#[test]
fn lying_lengths_and_reserved_class_are_errors() {
    assert_eq!(
        decode_message(&[10, 0x80, 5, 1, 2]).unwrap(),
        None,
        "waits for the body"
    );
    assert!(matches!(
        decode_message(&[10, 0x80, 0xff, 0xff, 0x7f]),
        Err(WireError::TooLarge(_))
    ));
    assert_eq!(decode_message(&[255, 0]), Err(WireError::ReservedClass));
    // A definition whose name length runs past the body.
    assert!(decode_message(&[10, 0x82, 3, 1, 50, b'a']).is_err());
    // An update shorter than its key.
    let layout = RemoteLayout {
        key_type: key_type::BIN,
        key_len: 32,
        data_types: 1,
        array_len: [0; 25],
    };
    assert!(decode_update(stkt::UPDATE, &[0, 0, 0, 1, 5, 5], &layout).is_err());
}

proptest! {
    #[test]
    fn varint_round_trips(v in any::<u64>()) {
        let b = varint(v);
        let mut r = Reader::new(&b);
        prop_assert_eq!(r.varint().unwrap(), v);
        prop_assert!(r.is_empty());
        // Any strict prefix is truncated, never a wrong value.
        for cut in 0..b.len() {
            prop_assert_eq!(Reader::new(&b[..cut]).varint(), Err(WireError::TruncatedInt));
        }
    }

    /// Any bytes: decoding never panics, never claims more bytes than given, and a decoded
    /// update never reads past its body.
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), dt in any::<u64>(), kt in 0u64..8, kl in 0usize..40) {
        let _ = decode_hello(&bytes);
        let _ = decode_status(&bytes);
        if let Ok(Some((m, n))) = decode_message(&bytes) {
            prop_assert!(n <= bytes.len() && n >= 2);
            if let Message::Update { kind, body } = m {
                let layout = RemoteLayout { key_type: kt, key_len: kl, data_types: dt, array_len: [3; 25] };
                if let Ok(u) = decode_update(kind, body, &layout) {
                    prop_assert!(u.key.len() <= body.len());
                }
            }
        }
    }
}

#[test]
fn an_overlong_length_is_refused_as_soon_as_it_is_too_long() {
    // Found by the peers_session fuzzer: a length of 0xff then nine continuation bytes was
    // "truncated" (an error) with 10 bytes and "too long" with 11; the verdict must not depend on
    // how the stream was split.
    let mut msg = vec![class::STICKTABLE, stkt::DEFINE, 0xff];
    msg.extend_from_slice(&[0xff; 9]);
    for cut in 0..msg.len() {
        assert!(
            matches!(decode_message(&msg[..cut]), Ok(None)),
            "cut at {cut}"
        );
    }
    assert!(matches!(decode_message(&msg), Err(WireError::IntTooLong)));
    msg.push(0x01);
    assert!(matches!(decode_message(&msg), Err(WireError::IntTooLong)));
}
