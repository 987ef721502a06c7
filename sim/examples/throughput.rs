//! Measures simulated connections per wall-clock second on the embedded default scenario
//! (tether's engine): `cargo run --release -p tether-sim --example throughput [--relay] [--tick 25ms]`.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of this example

use tether_sim::scenario::BalancerKind;

/// The allocator of the `tether` binary, so this figure is the one `tether sim` reaches.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut scenario = tether_sim::Scenario::default_scenario();
    if std::env::args().any(|a| a == "--relay") {
        scenario.balancer.kind = BalancerKind::Relay;
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--tick") {
        let t = args.get(i + 1).expect("--tick VALUE");
        scenario.network.tick = tether_sim::scenario::SimDuration::parse(t).expect("tick");
    }
    let started = std::time::Instant::now();
    let report = tether_sim::run(&scenario, 1).expect("simulation");
    let wall = started.elapsed().as_secs_f64();
    let conns = report.overall.connections;
    print!("{}", report.summary_table());
    println!(
        "{conns} connections, {:.0} simulated s in {wall:.2} wall s: {:.0} connections/wall-s",
        report.simulated_seconds,
        conns as f64 / wall
    );
}
