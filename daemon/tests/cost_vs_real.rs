//! The simulator's server cost model against the real thing: one `openssl s_server` (RSA-2048,
//! TLS 1.2, session IDs) pinned to one core with `taskset`, calibrated with `tether sim
//! calibrate`'s code in turns with the same small workload — K clients, each M connections in a
//! row resuming its session — on real sockets (single-threaded client, the server's CPU read from
//! /proc) and in the simulator with the calibrated `[servers.cost]`. The CPU must agree within
//! 10 %. The machine is shared with builders, so only CPU time (not wall time) is compared.
//!
//! And an overload step: the offered load rises in steps past the server's capacity, on real
//! sockets and in the simulator; the p99 must jump at the same step (± one).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::HandshakeKind;
use tether::sim_calibrate::{
    calibrate, client_config, cost_block, handshake, process_cpu_seconds, CalibrateArgs,
    Calibration, Phase,
};

const CLIENTS: u64 = 150;

/// The tests pin their servers to the same core: one at a time, or they measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PER_CLIENT: u64 = 12;

/// `openssl s_server` pinned to CPU 1; killed on drop.
struct PinnedServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for PinnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{program} is needed: apt-get install -y {package}");
}

fn start_server(dir: &Path, bits: u32) -> PinnedServer {
    require("openssl", "openssl");
    require("taskset", "util-linux");
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(made.success(), "openssl req failed");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cpu = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "1"
    } else {
        "0"
    };
    let child = Command::new("taskset")
        .args([
            "-c",
            cpu,
            "openssl",
            "s_server",
            "-quiet",
            "-tls1_2",
            "-no_ticket",
        ])
        .args(["-naccept", "1000000", "-accept"])
        .arg(addr.to_string())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset openssl s_server");
    let server = PinnedServer { child, addr };
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("openssl s_server did not listen on {addr}");
}

/// The workload on real sockets for `clients` of its clients: (full, resumed) handshakes and
/// the server's CPU seconds.
fn real_run(server: &PinnedServer, clients: u64) -> (u64, u64, f64) {
    let pid = server.child.id();
    let name = ServerName::try_from("localhost").unwrap();
    let before = process_cpu_seconds(pid).unwrap();
    let (mut full, mut resumed) = (0, 0);
    for _ in 0..clients {
        let config = Arc::new(client_config(false, true));
        for _ in 0..PER_CLIENT {
            match handshake(&config, server.addr, &name).unwrap() {
                Some(HandshakeKind::Resumed) => resumed += 1,
                _ => full += 1,
            }
        }
    }
    // s_server finishes its side of the last close after the client: let it.
    std::thread::sleep(Duration::from_millis(200));
    (full, resumed, process_cpu_seconds(pid).unwrap() - before)
}

/// Slices of the workload, each between two short calibrations: the machine's speed drifts
/// with the other builders' load (a 4 s calibration on a busy CI machine measured a full
/// handshake at 663 µs, the next at 952 µs), so calibration and workload take turns often
/// enough to see the same drift.
const ROUNDS: u64 = 5;

/// Calibrates between slices of the real workload (pooled), runs the workload for real and in
/// the simulator: the relative CPU error.
fn one_comparison(server: &PinnedServer, args: &CalibrateArgs) -> f64 {
    let slice = Duration::from_millis(1600);
    let mut calibration = calibrate(args, slice).expect("calibration");
    let (mut full, mut resumed, mut real_cpu) = (0, 0, 0.0);
    for _ in 0..ROUNDS {
        let (f, r, cpu) = real_run(server, CLIENTS / ROUNDS);
        (full, resumed, real_cpu) = (full + f, resumed + r, real_cpu + cpu);
        let next = calibrate(args, slice).expect("calibration");
        calibration = pooled(&calibration, &next);
    }
    let block = cost_block(args, &calibration);
    assert_eq!(full, CLIENTS, "one full handshake per client");
    assert_eq!(resumed, CLIENTS * (PER_CLIENT - 1), "the rest resume");
    let report = simulated(&block);
    let s = &report.servers["server-00"];
    assert_eq!(
        (s.full_handshakes, s.resumed_handshakes),
        (full, resumed),
        "same handshakes in both"
    );
    let sim_cpu = report.cost.as_ref().unwrap().servers["server-00"].cpu_seconds;
    let error = (sim_cpu - real_cpu).abs() / real_cpu;
    eprintln!(
        "{block}real CPU {real_cpu:.3} s, simulated {sim_cpu:.3} s, error {:.1} %",
        error * 100.0
    );
    error
}

/// Two calibrations as one: handshakes, seconds and CPU added up.
fn pooled(a: &Calibration, b: &Calibration) -> Calibration {
    let add = |x: &Phase, y: &Phase| Phase {
        handshakes: x.handshakes + y.handshakes,
        not_resumed: x.not_resumed + y.not_resumed,
        seconds: x.seconds + y.seconds,
        server_cpu_seconds: x
            .server_cpu_seconds
            .zip(y.server_cpu_seconds)
            .map(|(p, q)| p + q),
    };
    Calibration {
        full: add(&a.full, &b.full),
        resumed: add(&a.resumed, &b.resumed),
    }
}

/// The same workload in the simulator, with the calibrated cost block.
fn simulated(block: &str) -> tether_sim::Report {
    let text = format!(
        r#"
name = "cost-vs-real"
duration = "120s"
[servers]
count = 1
ticket_keys = "none"
{block}
[balancer]
kind = "direct"
[[fleets]]
name = "ids"
kind = "tls12-session-id"
clients = {CLIENTS}
first_visit = {{ dist = "uniform", min = "0s", max = "60s" }}
revisit_gap = {{ dist = "fixed", value = "1d" }}
connections_per_visit = {PER_CLIENT}
connection_gap = {{ dist = "fixed", value = "10ms" }}
"#
    );
    let scenario = tether_sim::Scenario::from_toml(&text).expect("scenario");
    tether_sim::run(&scenario, 1).expect("simulation")
}

#[test]
fn simulated_cpu_per_server_matches_a_pinned_s_server_within_10_percent() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tether-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_server(&dir, 2048);
    let args = CalibrateArgs {
        target: server.addr.to_string(),
        tls: "1.2".into(),
        time: "6s".into(),
        // One connection at a time, as the workload: s_server's cost per handshake depends on
        // how many it has in flight (batched reads and wakeups).
        connections: 1,
        cores: Some(1),
        pid: Some(server.child.id()),
        sni: "localhost".into(),
        key: "rsa-2048".into(),
    };
    // The machine's other builders make one measurement noisy (server CPU per handshake
    // swings by ±15 % under load average 9 on 2 cores): up to three attempts, the best must be
    // within 10 %. A model that prices handshakes wrongly misses on every attempt.
    let mut errors = Vec::new();
    for _ in 0..3 {
        let error = one_comparison(&server, &args);
        errors.push(error);
        if error < 0.10 {
            break;
        }
    }
    let best = errors.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        best < 0.10,
        "simulated vs real CPU off by {errors:?} (fractions) on every attempt; {}",
        tether_testbed::machine_load()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_calibrate_command_prints_a_block_a_scenario_accepts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tether-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_server(&dir, 2048);
    let tether = env!("CARGO_BIN_EXE_tether");
    let out = Command::new(tether)
        .args(["sim", "calibrate", &server.addr.to_string(), "--tls", "1.2"])
        .args([
            "--time",
            "2s",
            "--connections",
            "1",
            "--cores",
            "1",
            "--pid",
        ])
        .arg(server.child.id().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let block = String::from_utf8(out.stdout).unwrap();
    assert!(
        block.starts_with("# tether sim calibrate 127.0.0.1:"),
        "{block}"
    );
    let table: toml::Table = toml::from_str(&block).expect("the block is TOML");
    let cost: tether_sim::cost::CostSpec = table["servers"]["cost"].clone().try_into().unwrap();
    cost.validate().unwrap();
    assert!(
        cost.tls12.full_us > 2 * cost.tls12.resumed_us,
        "a full RSA handshake costs more than a resumed one: {block}"
    );
    let refused = Command::new(tether)
        .args(["sim", "calibrate", &server.addr.to_string()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--pid PID"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Steps of offered load, as fractions of the server's measured capacity.
const STEPS: [f64; 5] = [0.4, 0.7, 1.0, 1.3, 1.6];
/// Each step's length.
const STEP: Duration = Duration::from_secs(3);

/// The step where the p99 first rises by a tenth of a step's length over the first step's: a
/// queue that keeps growing for the step. None when it never does.
fn knee(p99_ms: &[u64]) -> Option<usize> {
    let rise = STEP.as_millis() as u64 / 10;
    p99_ms.iter().position(|&p| p > p99_ms[0] + rise)
}

/// Arrival times (ms from the start) of each step: `n` uniform in the step's window, sorted —
/// what the simulated fleet's `first_visit = uniform` draws.
fn arrivals(counts: &[u64], seed: u64) -> Vec<(usize, u64)> {
    let mut rng = tether_sim::rng::Rng::new(seed);
    let step_ms = STEP.as_millis() as u64;
    let mut all = Vec::new();
    for (k, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            all.push((k, k as u64 * step_ms + rng.below(step_ms)));
        }
    }
    all.sort_by_key(|a| a.1);
    all
}

/// Open-loop load on real sockets: each arrival's full handshake on its own thread (so a slow
/// server does not slow the offered load); p99 of each step's handshake latency.
fn real_steps(server: &PinnedServer, counts: &[u64]) -> Vec<u64> {
    let name = ServerName::try_from("localhost").unwrap();
    let config = Arc::new(client_config(false, false));
    let latencies = Arc::new(std::sync::Mutex::new(vec![Vec::new(); counts.len()]));
    let start = tokio::time::Instant::now();
    let mut threads = Vec::new();
    for (k, at_ms) in arrivals(counts, 7) {
        let due = Duration::from_millis(at_ms);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let (config, name, latencies, addr) =
            (config.clone(), name.clone(), latencies.clone(), server.addr);
        let t = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let began = tokio::time::Instant::now();
                let ok = handshake(&config, addr, &name).is_ok();
                let ms = began.elapsed().as_millis() as u64;
                // A failed handshake counts as the longest wait there is: the client gave up.
                let ms = if ok { ms } else { 5_000 };
                latencies.lock().unwrap()[k].push(ms);
            });
        threads.push(t.expect("spawn a client thread"));
    }
    for t in threads {
        let _ = t.join();
    }
    let mut per_step = latencies.lock().unwrap().clone();
    per_step.iter_mut().map(|l| p99(l)).collect()
}

fn p99(l: &mut [u64]) -> u64 {
    l.sort_unstable();
    l.get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// The same steps in the simulator: one fleet per step, the server costed as measured.
fn simulated_steps(full_us: u64, counts: &[u64]) -> Vec<u64> {
    let step_s = STEP.as_secs();
    let mut text = format!(
        r#"
name = "overload-step"
duration = "{}s"
[servers]
count = 1
ticket_keys = "none"
[servers.cost]
cores = 1
tls12 = {{ full_us = {full_us}, resumed_us = {full_us} }}
backlog = 4096
[balancer]
kind = "direct"
[network]
client_latency = "0ms"
server_latency = "0ms"
"#,
        step_s * counts.len() as u64 + 30
    );
    for (k, n) in counts.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[fleets]]
name = "step-{k}"
kind = "tls12-session-id"
clients = {n}
first_visit = {{ dist = "uniform", min = "{}s", max = "{}s" }}
revisit_gap = {{ dist = "fixed", value = "1d" }}
connections_per_visit = 1
"#,
            k as u64 * step_s,
            (k as u64 + 1) * step_s
        ));
    }
    let scenario = tether_sim::Scenario::from_toml(&text).expect("scenario");
    let report = tether_sim::run(&scenario, 1).expect("simulation");
    (0..counts.len())
        .map(|k| report.fleets[&format!("step-{k}")].connect_latency_p99_ms)
        .collect()
}

/// Measures the server's capacity in wall time (four connections keeping it busy: what it can
/// do now, on this shared machine), offers the steps for real and in the simulator.
fn one_overload_comparison(server: &PinnedServer) -> (Option<usize>, Option<usize>) {
    let args = CalibrateArgs {
        target: server.addr.to_string(),
        tls: "1.2".into(),
        time: "4s".into(),
        connections: 4,
        cores: Some(1),
        pid: None,
        sni: "localhost".into(),
        key: "rsa-4096".into(),
    };
    let c = calibrate(&args, Duration::from_secs(4)).expect("calibration");
    let full_us = c.full.cost_us(1).round() as u64;
    let per_second = 1e6 / full_us as f64;
    let counts: Vec<u64> = STEPS
        .iter()
        .map(|r| (r * per_second * STEP.as_secs_f64()).round() as u64)
        .collect();
    let real = real_steps(server, &counts);
    let sim = simulated_steps(full_us, &counts);
    eprintln!(
        "capacity {per_second:.0} handshakes/s ({full_us} us each); offered {counts:?} per {}s step at {STEPS:?} of it",
        STEP.as_secs()
    );
    eprintln!(
        "p99 ms real {real:?} (knee {:?}), simulated {sim:?} (knee {:?})",
        knee(&real),
        knee(&sim)
    );
    (knee(&real), knee(&sim))
}

#[test]
fn an_overload_step_raises_the_p99_at_the_same_load_for_real_and_simulated() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tether-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // RSA-4096: a full handshake costs the server ~5 ms, so its capacity (~200/s on one core)
    // is within what one client process offers with room to spare.
    let server = start_server(&dir, 4096);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (real, sim) = one_overload_comparison(&server);
        let sim_knee = sim.expect("the simulated server saturates within the steps");
        assert!(
            sim_knee > 0,
            "the first step is under capacity in the simulator"
        );
        seen.push((real, sim_knee));
        if real.is_some_and(|r| r.abs_diff(sim_knee) <= 1) {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }
    panic!("the p99 rose at different steps (real, simulated) on every attempt: {seen:?}");
}
