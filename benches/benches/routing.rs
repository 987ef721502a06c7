//! Route decisions at scale: 10,000 exact server names and 1,000 `*.suffix` names, one rule
//! each, and 100,000 source networks (100 rules reading list files of 1,000 networks): the cost
//! of one decision (name hit, wildcard hit, miss, refused source), and of loading such a config
//! (TOML, list files, validation, runtime build with the compiled matcher). It allocates with
//! mimalloc, as the daemon does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tether_core::config::load_toml;
use tether_core::engine::runtime::build;
use tether_core::route::{Facts, HelloFacts};
use tether_core::tls::encode::ClientHelloBuilder;
use tether_core::tls::ClientHello;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMES: usize = 10_000;
const WILDCARDS: usize = 1_000;
const NET_FILES: usize = 100;
const NETS_PER_FILE: usize = 1_000;
const BACKENDS: usize = 8;

/// A deterministic xorshift stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn net(i: usize) -> String {
    // Distinct /24s (and some /16 and /32) across 11.0.0.0 - 60.255.255.0.
    let n = i as u32 * 97 + 11 * (1 << 16);
    let (a, b, c) = ((n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    match i % 10 {
        0 => format!("{a}.{b}.0.0/16"),
        1 => format!("{a}.{b}.{c}.7"),
        _ => format!("{a}.{b}.{c}.0/24"),
    }
}

/// Writes the list files and returns the config text.
fn config_text(dir: &Path) -> String {
    let mut t = String::from(
        "[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:9443\"]\nbackend = \"b0\"\n",
    );
    for f in 0..NET_FILES {
        let path = dir.join(format!("nets{f}.lst"));
        let body: String = (0..NETS_PER_FILE)
            .map(|i| net(f * NETS_PER_FILE + i) + "\n")
            .collect();
        std::fs::write(&path, body).unwrap();
        let _ = write!(
            t,
            "[[frontend.route]]\nif = {{ source-file = \"{}\" }}\naction = \"reject\"\n",
            path.display()
        );
    }
    for i in 0..NAMES {
        let _ = write!(
            t,
            "[[frontend.route]]\nif = {{ server-name = [\"host{i}.example.com\"] }}\nuse-backend = \"b{}\"\n",
            i % BACKENDS
        );
    }
    for i in 0..WILDCARDS {
        let _ = write!(
            t,
            "[[frontend.route]]\nif = {{ server-name = [\"*.zone{i}.example.net\"] }}\nuse-backend = \"b{}\"\n",
            i % BACKENDS
        );
    }
    for b in 0..BACKENDS {
        let _ = write!(
            t,
            "[[backend]]\nname = \"b{b}\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:{}\"\n",
            8000 + b
        );
    }
    t
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-bench-routing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hello(name: &str) -> Vec<u8> {
    let mut b = ClientHelloBuilder::new([9; 32]);
    b.server_name(name.as_bytes());
    b.message()[4..].to_vec()
}

fn bench_routing(c: &mut Criterion) {
    let dir = scratch();
    let text = config_text(&dir);
    let config = load_toml("bench.toml", &text).expect("bench config loads");
    let rt = build(&config, None).expect("bench config builds");
    let router = rt.frontends[0].router.clone().expect("rules");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut names = Vec::new();
    for k in 0..1024 {
        let i = rng.next() as usize;
        names.push(match k % 4 {
            0 | 1 => format!("HOST{}.example.com", i % NAMES),
            2 => format!("a.b.zone{}.example.net", i % WILDCARDS),
            _ => format!("nobody{i}.example.org"),
        });
    }
    let bodies: Vec<Vec<u8>> = names.iter().map(|n| hello(n)).collect();
    let sources: Vec<std::net::IpAddr> = (0..1024)
        .map(|_| std::net::Ipv4Addr::from(rng.next() as u32 | 0x0100_0000).into())
        .collect();
    let dest = "127.0.0.1:9443".parse().unwrap();
    let facts: Vec<Facts<'_>> = bodies
        .iter()
        .zip(&sources)
        .map(|(b, s)| Facts {
            source: *s,
            destination: dest,
            hello: HelloFacts::Hello(ClientHello::parse(b).unwrap()),
        })
        .collect();
    let mut group = c.benchmark_group("route");
    let mut k = 0usize;
    group.bench_function("decide_10k_names_1k_wildcards_100k_cidrs", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            router.table.decide(black_box(&facts[k]))
        })
    });
    group.bench_function("decide_at_accept_100k_cidrs", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            router.table.decide_at_accept(black_box(sources[k]), dest)
        })
    });
    group.sample_size(10);
    group.bench_function("load_and_build_config", |b| {
        b.iter(|| {
            let config = load_toml("bench.toml", black_box(&text)).unwrap();
            build(&config, None).unwrap()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
