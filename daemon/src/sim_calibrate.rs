//! `tether sim calibrate HOST:PORT`: measures what a full and a resumed TLS handshake cost a live
//! server, as `openssl s_time -new` / `-reuse` do, with tether's own client (rustls) and several
//! connections in parallel, and prints the `[servers.cost]` block to paste into a scenario.
//!
//! With `--pid` (a server on this machine) the cost is the server process's own CPU
//! (`/proc/PID/schedstat`, else `/proc/PID/stat` utime + stime) over the handshakes done; otherwise it is the wall time the
//! server's `--cores` were kept busy, which assumes enough parallel connections to saturate it
//! (an upper bound when they do not).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};

use tether_core::server::check::verify::identifying_client;

/// Arguments of `tether sim calibrate`.
#[derive(clap::Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// The TLS server, HOST:PORT.
    pub target: String,
    /// TLS version to measure: 1.2 or 1.3.
    #[arg(long, default_value = "1.2")]
    pub tls: String,
    /// Measuring time, split evenly between full and resumed handshakes ("10s", "500ms").
    #[arg(long, default_value = "10s")]
    pub time: String,
    /// Connections in parallel (enough to keep every server core busy).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The server's cores (written in the block; without --pid, the cost is wall time × cores).
    #[arg(long)]
    pub cores: Option<u32>,
    /// The server's process id on this machine: its own CPU time is measured.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Server name to send (SNI).
    #[arg(long, default_value = "localhost")]
    pub sni: String,
    /// Key type of the server's certificate, written in the block.
    #[arg(long, default_value = "rsa-2048")]
    pub key: String,
}

/// What one phase measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phase {
    /// Handshakes completed of the kind asked for.
    pub handshakes: u64,
    /// Resumption was asked for and the server did a full handshake.
    pub not_resumed: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// The server's CPU seconds (with a pid), else None.
    pub server_cpu_seconds: Option<f64>,
}

impl Phase {
    /// Server CPU per handshake in microseconds: the process's own CPU, or `cores` × wall.
    pub fn cost_us(&self, cores: u32) -> f64 {
        let cpu = self
            .server_cpu_seconds
            .unwrap_or(self.seconds * f64::from(cores));
        cpu * 1e6 / self.handshakes.max(1) as f64
    }
}

/// Both phases of a calibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Fresh handshakes (no session offered).
    pub full: Phase,
    /// Resumed handshakes (each connection offers the previous one's session).
    pub resumed: Phase,
}

/// Runs `tether sim calibrate`.
pub fn run(args: CalibrateArgs) -> Result<ExitCode> {
    if args.cores.is_none() && args.pid.is_none() {
        bail!("say how to count the server's CPU: --pid PID (a server on this machine) or --cores N (its cores, assumed saturated)");
    }
    let time = tether_sim::scenario::SimDuration::parse(&args.time)
        .map_err(anyhow::Error::msg)
        .context("--time")?
        .get();
    let c = calibrate(&args, time)?;
    print!("{}", cost_block(&args, &c));
    Ok(ExitCode::SUCCESS)
}

/// Measures full then resumed handshakes for `time / 2` each.
pub fn calibrate(args: &CalibrateArgs, time: Duration) -> Result<Calibration> {
    let tls13 = match args.tls.as_str() {
        "1.2" => false,
        "1.3" => true,
        other => bail!("--tls {other}: write 1.2 or 1.3"),
    };
    let address = args
        .target
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", args.target))?
        .next()
        .with_context(|| format!("{} has no address", args.target))?;
    let name = ServerName::try_from(args.sni.clone()).context("--sni")?;
    let half = time / 2;
    let full = phase(args, address, &name, tls13, false, half)?;
    let resumed = phase(args, address, &name, tls13, true, half)?;
    if resumed.not_resumed * 10 > resumed.handshakes + resumed.not_resumed {
        bail!(
            "the server resumed only {} of {} handshakes: enable its session cache or tickets",
            resumed.handshakes,
            resumed.handshakes + resumed.not_resumed
        );
    }
    if full.handshakes == 0 || resumed.handshakes == 0 {
        bail!("no handshake completed with {}", args.target);
    }
    Ok(Calibration { full, resumed })
}

/// The `[servers.cost]` block, with the command and the raw counts as comments.
pub fn cost_block(args: &CalibrateArgs, c: &Calibration) -> String {
    let cores = args.cores.unwrap_or(1);
    let full = c.full.cost_us(cores).round() as u64;
    let resumed = (c.resumed.cost_us(cores).round() as u64).min(full);
    let how = match args.pid {
        Some(p) => format!("--pid {p}"),
        None => format!("--cores {cores}"),
    };
    let version = if args.tls == "1.3" { "tls13" } else { "tls12" };
    let mut out = format!(
        "# tether sim calibrate {} --tls {} --time {} --connections {} {how}\n\
         # full: {} handshakes in {:.1} s; resumed: {} in {:.1} s; full/resumed = {:.1}\n\
         [servers.cost]\ncores = {cores}\nkey = \"{}\"\n{version} = {{ full_us = {full}, resumed_us = {resumed} }}\n",
        args.target,
        args.tls,
        args.time,
        args.connections,
        c.full.handshakes,
        c.full.seconds,
        c.resumed.handshakes,
        c.resumed.seconds,
        full as f64 / resumed.max(1) as f64,
        args.key,
    );
    if version == "tls13" {
        out.push_str("# a block needs tls12 too: run again with --tls 1.2\n");
    }
    out
}

/// One phase: `connections` threads handshaking in a loop until `time` is up.
fn phase(
    args: &CalibrateArgs,
    address: SocketAddr,
    name: &ServerName<'static>,
    tls13: bool,
    resume: bool,
    time: Duration,
) -> Result<Phase> {
    let cpu_before = args.pid.map(process_cpu_seconds).transpose()?;
    let wall = crate::sim_cli::WallClock::start();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let config = Arc::new(client_config(tls13, resume));
            let (stop, name) = (stop.clone(), name.clone());
            std::thread::spawn(move || worker(&config, address, &name, resume, &stop))
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    let mut p = Phase::default();
    for w in workers {
        let (done, missed) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a calibration thread panicked"))??;
        p.handshakes += done;
        p.not_resumed += missed;
    }
    p.seconds = wall.seconds();
    if let (Some(pid), Some(before)) = (args.pid, cpu_before) {
        p.server_cpu_seconds = Some(process_cpu_seconds(pid)? - before);
    }
    Ok(p)
}

/// Handshakes until told to stop: (handshakes of the kind asked for, resumptions refused).
fn worker(
    config: &Arc<ClientConfig>,
    address: SocketAddr,
    name: &ServerName<'static>,
    resume: bool,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    let (mut done, mut missed, mut first) = (0, 0, true);
    while !stop.load(Ordering::Relaxed) {
        let kind = handshake(config, address, name)?;
        let resumed = kind == Some(HandshakeKind::Resumed);
        if !first || !resume {
            if resumed == resume {
                done += 1;
            } else {
                missed += 1;
            }
        }
        first = false;
    }
    Ok((done, missed))
}

/// One connection: handshake, close_notify, then read to the end so TLS 1.3 tickets are kept.
pub fn handshake(
    config: &Arc<ClientConfig>,
    address: SocketAddr,
    name: &ServerName<'static>,
) -> Result<Option<HandshakeKind>> {
    let mut tcp = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connecting to {address}"))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = ClientConnection::new(config.clone(), name.clone())?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .with_context(|| format!("handshake with {address}"))?;
    }
    let kind = tls.handshake_kind();
    tls.send_close_notify();
    let _ = tls.complete_io(&mut tcp);
    let mut sink = [0u8; 1024];
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.flush();
    Ok(kind)
}

/// A client that accepts any certificate (calibration measures, it does not authenticate),
/// offering sessions only when `resume`.
pub fn client_config(tls13: bool, resume: bool) -> ClientConfig {
    let mut config =
        identifying_client(tls13).unwrap_or_else(|e| panic!("ring supports TLS 1.2 and 1.3: {e}"));
    config.resumption = if resume {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    config
}

/// A process's CPU time in seconds: `/proc/PID/schedstat` (nanoseconds on a CPU) where the
/// kernel keeps it, else utime + stime from `/proc/PID/stat` (10 ms ticks).
pub fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let sched = format!("/proc/{pid}/schedstat");
    if let Some(ns) = std::fs::read_to_string(&sched)
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Ok(ns as f64 / 1e9);
    }
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("{path}: no utime/stime"))
}

/// Clock ticks per second in `/proc/PID/stat` (the kernel's USER_HZ, 100 on every Linux
/// architecture tether builds for, whatever the kernel's own HZ).
const USER_HZ: f64 = 100.0;

/// utime + stime (fields 14 and 15, after the parenthesised command name) in seconds.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the name start at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_reads_utime_and_stime_past_a_name_with_spaces() {
        let stat =
            "1234 (openssl s) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        let secs = parse_stat_cpu(stat).unwrap();
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
        assert!(parse_stat_cpu("garbage").is_none());
    }

    #[test]
    fn the_block_parses_as_a_cost_model() {
        let args = CalibrateArgs {
            target: "127.0.0.1:4433".into(),
            tls: "1.2".into(),
            time: "10s".into(),
            connections: 4,
            cores: Some(2),
            pid: None,
            sni: "localhost".into(),
            key: "rsa-2048".into(),
        };
        let phase = |n, s| Phase {
            handshakes: n,
            seconds: s,
            ..Phase::default()
        };
        let c = Calibration {
            full: phase(4_454, 5.0),
            resumed: phase(30_398, 5.0),
        };
        let block = cost_block(&args, &c);
        let cost: tether_sim::cost::CostSpec = toml::from_str::<toml::Table>(&block).unwrap()
            ["servers"]["cost"]
            .clone()
            .try_into()
            .unwrap();
        // 2 cores × 5 s over 4,454 handshakes; over 30,398.
        assert_eq!(cost.tls12.full_us, 2_245);
        assert_eq!(cost.tls12.resumed_us, 329);
        assert_eq!(cost.cores, 2);
        assert!(block.contains("# tether sim calibrate 127.0.0.1:4433"));
    }
}
