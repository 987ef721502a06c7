//! The `tether` binary: the production daemon and its CLI.
//!
//! `tether run` serves traffic; `check` and `convert` explain and translate configurations;
//! `probe` verifies affinity from outside; `sim` predicts it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use tether::config_source::{ConfigSource, QuickForm};
use tether::logsink::{DaemonSink, LogFormat};
use tether_core::config::Config;
use tether_core::engine::runtime;

/// mimalloc instead of glibc's malloc: every connection allocates and frees its tokio task,
/// two socket registrations (128-byte aligned) and two 32 KiB relay buffers, and glibc spends
/// a quarter of the daemon's user time on those (bin searches, consolidation, `memalign`);
/// mimalloc serves them from thread-local free lists. Built without transparent huge pages
/// (see the workspace manifest), it keeps the peak RSS at glibc's level.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A TLS-aware TCP load balancer with session affinity"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the balancer in the foreground until SIGTERM/SIGINT (SIGHUP reloads).
    Run(RunArgs),
    /// Check a tether.toml or haproxy.cfg: every finding in one pass, with file:line and a fix.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the native TOML equivalent of an haproxy.cfg.
    Convert {
        /// The haproxy.cfg to convert.
        file: PathBuf,
    },
    /// Verify affinity end to end through any TCP balancer: chained TLS resumptions per
    /// mechanism, reporting which backend answered each one.
    Probe(tether::probe::ProbeArgs),
    /// Show or edit the stick tables of a running daemon through its stats listener.
    Table(tether::table_cli::TableArgs),
    /// Simulate a deployment (tether's engine, client fleets, failures): affinity and load.
    Sim(tether::sim_cli::SimArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Native TOML configuration.
    #[arg(short = 'c', long = "config", conflicts_with_all = ["haproxy", "listen"])]
    config: Option<PathBuf>,
    /// An haproxy.cfg to import (behaves as HAProxy 2.6 does).
    #[arg(long, conflicts_with = "listen")]
    haproxy: Option<PathBuf>,
    /// Quick form: listening address, e.g. 127.0.0.1:9443.
    #[arg(long, requires = "server")]
    listen: Option<String>,
    /// Quick form: a server address (repeat for each server).
    #[arg(long)]
    server: Vec<String>,
    /// Quick form: the affinity chain, e.g. session-id,ticket,psk,source.
    #[arg(long)]
    affinity: Option<String>,
    /// Quick form: roundrobin, leastconn, first or hash.
    #[arg(long)]
    balance: Option<String>,
    /// Quick form: expect a PROXY protocol header on each connection.
    #[arg(long)]
    accept_proxy: bool,
    /// Worker threads serving connections (HAProxy's `nbthread`); default: one per CPU.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check { file } => check(&file),
        Command::Convert { file } => convert(&file),
        Command::Probe(args) => probe(args),
        Command::Table(args) => table(args),
        Command::Sim(args) => tether::sim_cli::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn probe(args: tether::probe::ProbeArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(tether::probe::run(args))
}

fn table(args: tether::table_cli::TableArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(tether::table_cli::run(args))
}

fn check(file: &std::path::Path) -> Result<ExitCode> {
    let report = tether::check::check_file(file);
    println!("{report}");
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn convert(file: &std::path::Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match tether::haproxy::convert_haproxy(&file.display().to_string(), &text) {
        Ok((config, findings)) => {
            for f in findings {
                eprintln!("{f}");
            }
            print!("{}", tether::haproxy::to_toml(&config));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let source = match (args.config, args.haproxy, args.listen) {
        (Some(c), _, _) => ConfigSource::Toml(c),
        (_, Some(h), _) => ConfigSource::Haproxy(h),
        (_, _, Some(listen)) => ConfigSource::Inline(Box::new(
            QuickForm {
                listen,
                servers: args.server,
                affinity: args.affinity,
                balance: args.balance,
                accept_proxy: args.accept_proxy,
            }
            .to_config()?,
        )),
        _ => anyhow::bail!("say what to run: -c tether.toml, --haproxy haproxy.cfg, or --listen ADDR --server ADDR..."),
    };
    let config = source.load()?;
    // One thread: tokio's single-threaded scheduler runs the same tasks without the
    // work-stealing machinery (no cross-thread queues or wake-ups), as HAProxy's nbthread 1.
    let mut builder = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = builder
        .enable_all()
        .on_thread_park(tether::memory::on_thread_park)
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(source, config))
}

fn sink_for(config: &Config) -> Arc<DaemonSink> {
    Arc::new(DaemonSink {
        format: match config.global.log_format {
            tether_core::config::LogFormat::Tcplog => LogFormat::Tcplog,
            tether_core::config::LogFormat::Json => LogFormat::Json,
        },
    })
}

async fn serve(source: ConfigSource, config: Config) -> Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    // A per-process secret keys the stick tables' index hash (clients choose session IDs).
    let table_seed = {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    };
    tether::fdlimit::prepare(&config);
    let built = runtime::build_seeded(&config, None, table_seed)?;
    let grace = built.grace;
    let mut daemon = tether::run::start(built, sink_for(&config)).await?;
    tokio::spawn(tether::memory::release_on_low_load(
        daemon.context().clone(),
    ));
    for (name, addr) in daemon.local_addrs() {
        tracing::info!(frontend = %name, %addr, "ready");
    }
    // The stats listener follows reloads through the view; its own settings are read once.
    let _stats = match config.stats.clone() {
        Some(stats) => Some(tether::stats::serve_stats(stats, daemon.view()).await?),
        None => None,
    };
    // The runtime API socket follows reloads the same way.
    let _runtime_api = match config.admin.clone() {
        Some(admin) => Some(tether::runtime_api::serve_runtime_api(admin, daemon.view()).await?),
        None => None,
    };
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match source.load().and_then(|c| {
                    runtime::build_seeded(&c, Some(daemon.runtime()), table_seed)
                        .map_err(anyhow::Error::from)
                }) {
                    Ok(new) => match daemon.reload(new).await.map_err(anyhow::Error::from) {
                        Ok(()) => tracing::info!("configuration reloaded; stick tables kept"),
                        Err(e) => tracing::error!("reload refused, old configuration still running: {e:#}"),
                    },
                    Err(e) => tracing::error!("reload refused, old configuration still running:\n{e:#}"),
                }
            }
        }
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "stopping: no new connections, waiting for established ones"
    );
    let left = daemon.shutdown(grace).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "grace period over; closing remaining connections"
        );
    }
    Ok(ExitCode::SUCCESS)
}
