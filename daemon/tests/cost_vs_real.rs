//! The simulator's server cost model against the real thing: one `openssl s_server` (RSA-2048,
//! TLS 1.2, session IDs) pinned to one core with `taskset`, calibrated with `tether sim
//! calibrate`'s code, then the same small workload — K clients, each M connections in a row
//! resuming its session — on real sockets (single-threaded client, the server's CPU read from
//! /proc) and in the simulator with the calibrated `[servers.cost]`. The CPU must agree within
//! 10 %. The machine is shared with builders, so only CPU time (not wall time) is compared.

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

fn start_server(dir: &Path) -> PinnedServer {
    require("openssl", "openssl");
    require("taskset", "util-linux");
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
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

/// The workload on real sockets: (full, resumed) handshakes and the server's CPU seconds.
fn real_run(server: &PinnedServer) -> (u64, u64, f64) {
    let pid = server.child.id();
    let name = ServerName::try_from("localhost").unwrap();
    let before = process_cpu_seconds(pid).unwrap();
    let (mut full, mut resumed) = (0, 0);
    for _ in 0..CLIENTS {
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

/// Calibrates (before and after the real run, pooled, so both see the same drift in the other
/// builders' load), runs the workload for real and in the simulator: the relative CPU error.
fn one_comparison(server: &PinnedServer, args: &CalibrateArgs) -> f64 {
    let before = calibrate(args, Duration::from_secs(4)).expect("calibration");
    let (full, resumed, real_cpu) = real_run(server);
    let after = calibrate(args, Duration::from_secs(4)).expect("calibration");
    let block = cost_block(args, &pooled(&before, &after));
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
    let server = start_server(&dir);
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
        "simulated vs real CPU off by {errors:?} (fractions) on every attempt"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_calibrate_command_prints_a_block_a_scenario_accepts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("tether-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_server(&dir);
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
