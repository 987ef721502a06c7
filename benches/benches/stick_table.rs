//! Stick-table cost on the data path: a lookup that hits, a learn that refreshes a present key,
//! and a miss followed by a learn that evicts the least recently used entry of a full table, at
//! 1k, 100k and 1M entries with 32-byte keys. Keys are random-looking but deterministic
//! (splitmix64), and the access pattern is random over the population, so large tables pay their
//! cache misses as production would.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether_core::stick::{Learn, Lookup, StickTable, StickTableConfig};
use tether_core::{ServerId, Timestamp};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

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

/// A full table holding keys `0..n`.
fn full_table(n: usize) -> StickTable {
    let mut t = StickTable::new(StickTableConfig::new(32, n, Duration::from_secs(3600)));
    for i in 0..n as u64 {
        t.learn(&key(i), ServerId((i % 4) as u32), Timestamp(0));
    }
    assert_eq!(t.len(), n);
    t
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stick_table");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut table = full_table(n);
        eprintln!(
            "stick_table/{n}: {} bytes reserved = {:.1} bytes/entry",
            table.memory_bytes(),
            table.memory_bytes() as f64 / n as f64
        );

        // Lookup hit: a random key of the population (all live; the clock stands still).
        let mut rng = 0x5eed_u64;
        g.bench_function(BenchmarkId::new("lookup_hit", n), |b| {
            b.iter(|| {
                let k = key(splitmix(&mut rng) % n as u64);
                let r = table.lookup(black_box(&k), Timestamp(1));
                debug_assert!(matches!(r, Lookup::Hit(_)));
                black_box(r)
            })
        });

        // Learn on a key that is present: what the ServerHello of a confirmed resumption does
        // (same server: expiry and recency refreshed).
        let mut rng = 0x1ea2_u64;
        g.bench_function(BenchmarkId::new("learn_refresh", n), |b| {
            b.iter(|| {
                let i = splitmix(&mut rng) % n as u64;
                let k = key(i);
                let r = table.learn(black_box(&k), ServerId((i % 4) as u32), Timestamp(1));
                debug_assert_eq!(r, Learn::Refreshed);
                black_box(r)
            })
        });

        // Miss then learn into the full table: every store evicts the LRU entry. Fresh keys come
        // from a counter above the population, so each one really is new.
        let mut next = n as u64;
        g.bench_function(BenchmarkId::new("miss_learn_evict", n), |b| {
            b.iter(|| {
                let k = key(next);
                next += 1;
                let now = Timestamp(2);
                let m = table.lookup(black_box(&k), now);
                let l = table.learn(black_box(&k), ServerId(1), now);
                debug_assert_eq!(m, Lookup::Miss);
                debug_assert_eq!(l, Learn::Inserted { evicted: true });
                black_box((m, l))
            })
        });

        // Cost of generating a key alone, to subtract from the figures above.
        if n == SIZES[0] {
            let mut rng = 1u64;
            g.bench_function("key_generation_only", |b| {
                b.iter(|| black_box(key(splitmix(&mut rng) % n as u64)))
            });
        }
    }
    // Machine baselines over a 64 MB array (about the size of the 1M table): one random read
    // per iteration (independent, so the CPU overlaps them), and one *dependent* read (a pointer
    // chase through a random cycle: the latency of a single cache + TLB miss). A 1M lookup is a
    // chain of two such misses (index line -> entry), so read it against the dependent figure;
    // below one dependent miss per operation means consecutive operations overlap.
    let len = 8usize << 20;
    let mut words: Vec<u64> = (0..len as u64).collect();
    let mut rng = 7u64;
    // Sattolo's shuffle: a single cycle through all slots.
    for i in (1..len).rev() {
        let j = (splitmix(&mut rng) % i as u64) as usize;
        words.swap(i, j);
    }
    g.bench_function("baseline_random_read_64MB", |b| {
        b.iter(|| black_box(words[(splitmix(&mut rng) % len as u64) as usize]))
    });
    let mut at = 0usize;
    g.bench_function("baseline_dependent_read_64MB", |b| {
        b.iter(|| {
            at = words[at] as usize;
            black_box(at)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
