//! Cost of one balancing decision: round robin and consistent hashing over 4 and 1000 servers.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use tether_core::balance::{Algorithm, Balancer, PickContext};
use tether_core::server::ServerState;

fn servers(n: usize) -> Vec<ServerState> {
    (0..n)
        .map(|i| ServerState::new(format!("node{i}"), 1 + (i % 4) as u32))
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("balance_pick");
    for n in [4usize, 1000] {
        let s = servers(n);
        let mut rr = Balancer::new(Algorithm::RoundRobin, &s);
        group.bench_with_input(BenchmarkId::new("roundrobin", n), &n, |b, _| {
            b.iter(|| rr.pick(black_box(&s), &PickContext::EMPTY))
        });
        for (label, factor) in [("hash", None), ("hash_bounded_150", Some(150))] {
            let mut h = Balancer::new(
                Algorithm::Hash {
                    balance_factor: factor,
                },
                &s,
            );
            let mut key = 0u32;
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9);
                    let k = key.to_be_bytes();
                    let ctx = PickContext {
                        hash_key: Some(&k),
                        avoid: &[],
                    };
                    h.pick(black_box(&s), &ctx)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
