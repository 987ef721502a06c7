//! HAProxy peers protocol codec cost (`tether_core::peers`): one update message (32-byte key,
//! server id and name) encoded and decoded by the wire layer, and a full resync of 10,000
//! entries through two real sans-IO sessions — the teacher queuing every timed update plus
//! "resync finished" and taking the bytes, the learner reading those bytes and producing its
//! events (one update each, the finish, its acks). Keys are deterministic (splitmix64).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tether_core::peers::wire::{self, data_type, key_type, Message, RemoteLayout};
use tether_core::peers::{Event, LocalTable, OutgoingUpdate, Session, SessionConfig};
use tether_core::Timestamp;

const RESYNC: usize = 10_000;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key number `i`: 32 bytes that look like a TLS session ID.
fn key(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = i.wrapping_mul(4);
    for chunk in k.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut x).to_le_bytes());
    }
    k
}

fn config(name: &str) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        local_name: name.to_owned(),
        tables: vec![LocalTable {
            name: "app".to_owned(),
            key_len: 32,
            expire_ms: 1_800_000,
        }],
    })
}

/// Two sessions past the hello: (`lb1` connected, `lb2` accepted).
fn open_pair() -> (Session, Session) {
    let now = Timestamp(0);
    let mut a = Session::connect(config("lb1"), "lb2", now);
    let mut b = Session::accept(config("lb2"), vec!["lb1".into()], now);
    let mut buf = Vec::new();
    a.poll_transmit(&mut buf, now);
    b.handle_input(&buf, now).unwrap();
    buf.clear();
    b.poll_transmit(&mut buf, now);
    a.handle_input(&buf, now).unwrap();
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    assert!(a.is_open() && b.is_open());
    (a, b)
}

/// The teacher's side of a resync: every entry as a timed update, then "finished".
fn teach(a: &mut Session, out: &mut Vec<u8>) {
    for i in 0..RESYNC as u64 {
        let k = key(i);
        a.send_update(
            0,
            &OutgoingUpdate {
                id: i as u32 + 1,
                key: &k,
                server_id: (i % 4) as u32 + 1,
                server_name: ["s1", "s2", "s3", "s4"][(i % 4) as usize],
                expire_ms: Some(600_000),
            },
        );
    }
    a.send_resync_finished(false);
    a.poll_transmit(out, Timestamp(1));
}

fn update_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers_update");
    g.throughput(Throughput::Elements(1));
    let k = key(7);
    let mut out = Vec::with_capacity(128);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            wire::put_update(&mut out, black_box(42), None, &k, 3, "server-03", 5);
            black_box(out.len())
        })
    });
    let mut msg = Vec::new();
    wire::put_update(&mut msg, 42, None, &k, 3, "server-03", 5);
    let layout = RemoteLayout {
        key_type: key_type::BIN,
        key_len: 32,
        data_types: 1 << data_type::SERVER_ID | 1 << data_type::SERVER_KEY,
        array_len: [0; data_type::COUNT as usize],
    };
    g.bench_function("decode", |b| {
        b.iter(|| {
            let Some((Message::Update { kind, body }, _)) =
                wire::decode_message(black_box(&msg)).unwrap()
            else {
                panic!("not an update")
            };
            let u = wire::decode_update(kind, body, &layout).unwrap();
            black_box((u.key.len(), u.server_id))
        })
    });
    g.finish();
}

fn resync(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers_resync_10k");
    g.throughput(Throughput::Elements(RESYNC as u64));
    g.sample_size(20);
    g.bench_function("teach", |b| {
        b.iter_batched(
            || (open_pair().0, Vec::with_capacity(1 << 20)),
            |(mut a, mut out)| {
                teach(&mut a, &mut out);
                black_box(out.len())
            },
            BatchSize::LargeInput,
        )
    });
    let (mut a, _) = open_pair();
    let mut bytes = Vec::new();
    teach(&mut a, &mut bytes);
    eprintln!(
        "peers_resync_10k: {} bytes on the wire = {:.1} bytes/entry",
        bytes.len(),
        bytes.len() as f64 / RESYNC as f64
    );
    g.bench_function("learn", |b| {
        b.iter_batched(
            || open_pair().1,
            |mut learner| {
                learner.handle_input(&bytes, Timestamp(2)).unwrap();
                let mut updates = 0;
                while let Some(ev) = learner.poll_event() {
                    updates += usize::from(matches!(ev, Event::Update(_)));
                }
                assert_eq!(updates, RESYNC);
                updates
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, update_message, resync);
criterion_main!(benches);
