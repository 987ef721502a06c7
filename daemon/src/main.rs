//! The `tether` binary: the production daemon and its CLI.
//!
//! `tether run` serves traffic; `check` and `convert` explain and translate configurations;
//! `probe` verifies affinity from outside; `sim` predicts it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{CommandFactory as _, Parser, Subcommand};
use tether::config_source::{ConfigSource, QuickForm};
use tether::logsink::DaemonSink;
use tether::upgrade::incoming::Incoming;
use tether::upgrade::notify::Notifier;
use tether::upgrade::successor::{self, Successor};
use tether::upgrade::{inherited, over_peers, Launch};
use tether_core::config::Config;

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
    /// Run the balancer in the foreground until SIGTERM/SIGINT (SIGHUP reloads, SIGUSR2
    /// upgrades in place to the binary on disk).
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
    /// Run a scenario's client fleets as real TLS clients against a real balancer (--testbed:
    /// servers and tether on loopback too) and write the same report as `tether sim`.
    Loadgen(tether::loadgen::LoadgenArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(tether::manuals::CompletionsArgs),
    /// Write the man pages into a directory (a packaging step).
    #[command(hide = true)]
    Man(tether::manuals::ManArgs),
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
    /// Quick form: hand each connection over only once its first bytes are there (HAProxy's
    /// `bind ... defer-accept`; for clients that speak first, as TLS clients do).
    #[arg(long)]
    defer_accept: bool,
    /// Threads serving connections (HAProxy's `nbthread`), each accepting on a listener of its
    /// own per address (`SO_REUSEPORT`); default: the config's `[global] threads` (an imported
    /// `nbthread`), else one per CPU.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Pipes for splicing bulk transfers kernel-side (HAProxy's `maxpipes`); 0 never splices.
    /// Default: the config's `[global] max-pipes`, else a quarter of `maxconn`.
    #[arg(long)]
    max_pipes: Option<u32>,
    /// Capacity of each splicing pipe, e.g. 256k (HAProxy's `tune.pipesize`); default: the
    /// config's `[global] pipe-size`, else the system's (64k).
    #[arg(long, value_parser = parse_pipe_size)]
    pipe_size: Option<u64>,
    /// This process's name in the peers section (HAProxy's `-L`; overrides `localpeer`).
    #[arg(short = 'L', long = "local-peer")]
    local_peer: Option<String>,
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
        Command::Loadgen(args) => tether::loadgen::run(args),
        Command::Completions(args) => completions(&args.shell),
        Command::Man(args) => man(&args.dir),
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

fn completions(shell: &str) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    tether::manuals::write_completions(shell, &mut Cli::command(), &mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn man(dir: &std::path::Path) -> Result<ExitCode> {
    let pages = tether::manuals::write_man_pages(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    for p in pages {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
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
                defer_accept: args.defer_accept,
            }
            .to_config()?,
        )),
        _ => anyhow::bail!("say what to run: -c tether.toml, --haproxy haproxy.cfg, or --listen ADDR --server ADDR..."),
    };
    let mut config = source.load()?;
    if let Some(n) = args.max_pipes {
        config.global.max_pipes = Some(n);
    }
    if let Some(n) = args.pipe_size {
        config.global.pipe_size = Some(n);
    }
    if let (Some(name), Some(peers)) = (args.local_peer.as_ref(), config.peers.as_mut()) {
        peers.local = name.clone();
    }
    // Before any socket is bound: a process started by an upgrade takes its predecessor's.
    let launch = Launch::current();
    let incoming = Incoming::receive()?;
    let threads = (args.threads.or(config.global.threads))
        .map_or_else(tether::threads::default_count, usize::from);
    let rt = tether::threads::runtime().context("starting the tokio runtime")?;
    let workers =
        tether::threads::start_workers(threads - 1).context("starting the worker threads")?;
    rt.block_on(serve(source, config, launch, incoming, workers))
}

/// `--pipe-size`: a size as the configuration writes it, within what Linux grants a pipe.
fn parse_pipe_size(text: &str) -> Result<u64, String> {
    let n = tether_core::config::parse_size(text).map_err(|e| e.to_string())?;
    match tether_core::config::Global::pipe_size_problem(n) {
        None => Ok(n),
        Some(p) => Err(format!("{p}: write e.g. 256k")),
    }
}

/// The connection-log sink; its `log` targets are opened here, at start (a reload keeps them).
fn sink_for(config: &Config) -> Result<Arc<DaemonSink>> {
    let origin = tether::syslog::Origin {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into()),
        tag: "tether".into(),
        pid: std::process::id(),
    };
    let hostname = origin.hostname.clone();
    let syslog = tether::syslog::SyslogSender::start(&config.logs, origin)
        .context("opening the log targets")?;
    Ok(Arc::new(DaemonSink {
        format: config.global.log_format.clone(),
        hostname,
        syslog,
    }))
}

/// What the signal loop ended with: a stop, or a successor that took over.
enum Ending {
    Stop,
    Upgraded(Successor),
}

async fn serve(
    source: ConfigSource,
    config: Config,
    launch: Launch,
    mut incoming: Option<Incoming>,
    workers: Vec<tokio::runtime::Handle>,
) -> Result<ExitCode> {
    // A per-process secret keys the stick tables' index hash (clients choose session IDs).
    let table_seed = {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    };
    tether::fdlimit::prepare(&config);
    let built = tether::ca_files::build(&config, None, table_seed)?;
    if let Some(incoming) = incoming.as_mut() {
        incoming.restore_into(&built);
    }
    let grace = built.grace;
    let daemon = tether::run::start_threaded(built, sink_for(&config)?, workers).await?;
    // Freed memory goes back to the system once connections fall (on every worker as it parks).
    tokio::spawn(tether::memory::release_on_low_load(
        daemon.context().clone(),
    ));
    for (name, addr) in daemon.local_addrs() {
        tracing::info!(frontend = %name, %addr, "ready");
    }
    // Stick-table replication (HAProxy's peers protocol) follows reloads through the view.
    let peers = match config.peers.clone() {
        Some(section) => Some(tether::run::start_peers(section, &daemon, table_seed).await?),
        None => None,
    };
    if let (Some(_), Some(service)) = (&incoming, &peers) {
        // The process we took over from pushes its shared tables under our own peer name.
        service.expect_predecessor(std::os::unix::process::parent_id());
    }
    // The stats listener follows reloads through the view; its own settings are read once.
    let stats = match config.stats.clone() {
        Some(stats) => Some(tether::stats::serve_stats(stats, daemon.view()).await?),
        None => None,
    };
    // The runtime API socket follows reloads the same way.
    let runtime_api = match config.admin.clone() {
        Some(admin) => Some(tether::runtime_api::serve_runtime_api(admin, daemon.view()).await?),
        None => None,
    };
    for name in inherited::close_rest() {
        tracing::info!(socket = %name, "upgrade: handed-over socket closed: the configuration no longer has it");
    }
    // Handlers first: a signal sent the moment we say ready must not kill us (USR2's default).
    let signals = Signals::install()?;
    let notifier = Notifier::from_env();
    match incoming {
        // The old process tells systemd, once it has stopped accepting: MAINPID is ours then.
        Some(incoming) => incoming.ready(daemon.view())?,
        None => tell(notifier.ready()),
    }
    let mut serving = Serving {
        source,
        config,
        launch,
        table_seed,
        daemon,
        peers,
        stats,
        runtime_api,
        notifier,
    };
    let ending = serving.until_stopped(signals).await?;
    Ok(serving.stop(ending, grace).await)
}

/// The signals the daemon acts on.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// A notification systemd may miss is logged, never fatal.
fn tell(sent: std::io::Result<()>) {
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// The running daemon and what its signals act on.
struct Serving {
    source: ConfigSource,
    config: Config,
    launch: Launch,
    table_seed: u64,
    daemon: tether::run::Daemon,
    peers: Option<tether_core::engine::peers::PeersService>,
    stats: Option<tether::stats::StatsListener>,
    runtime_api: Option<tether::runtime_api::RuntimeApiListener>,
    notifier: Notifier,
}

impl Serving {
    /// Serves until SIGTERM/SIGINT, or until a SIGUSR2 upgrade has a successor serving;
    /// SIGHUP reloads.
    async fn until_stopped(&mut self, mut signals: Signals) -> Result<Ending> {
        loop {
            tokio::select! {
                biased;
                _ = signals.term.recv() => return Ok(Ending::Stop),
                _ = signals.int.recv() => return Ok(Ending::Stop),
                _ = signals.hup.recv() => self.reload().await,
                _ = signals.usr2.recv() => {
                    tell(self.notifier.reloading());
                    match self.upgrade().await {
                        Ok(successor) => return Ok(Ending::Upgraded(successor)),
                        Err(e) => {
                            tracing::error!("upgrade abandoned, this process keeps serving: {e:#}");
                            tell(self.notifier.ready());
                        }
                    }
                }
            }
        }
    }

    async fn reload(&mut self) {
        tell(self.notifier.reloading());
        match self
            .source
            .load()
            .and_then(|c| tether::ca_files::build(&c, Some(self.daemon.runtime()), self.table_seed))
        {
            Ok(new) => match self.daemon.reload(new).await.map_err(anyhow::Error::from) {
                Ok(()) => tracing::info!("configuration reloaded; stick tables kept"),
                Err(e) => tracing::error!("reload refused, old configuration still running: {e:#}"),
            },
            Err(e) => tracing::error!("reload refused, old configuration still running:\n{e:#}"),
        }
        tell(self.notifier.ready());
    }

    /// Starts the successor and hands it the sockets and tables; returns once it serves.
    async fn upgrade(&mut self) -> Result<Successor> {
        tracing::info!(exe = %self.launch.exe.display(), "upgrade: starting the new process");
        let stats = self
            .stats
            .as_ref()
            .zip(self.config.stats.as_ref())
            .map(|(listener, cfg)| (cfg.bind.as_str(), listener));
        // Tables a peers section shares go over the peers protocol when it has an address.
        let over_peers = (self.config.peers.as_ref())
            .filter(|s| s.bind.is_some() && self.peers.is_some())
            .map(|s| s.name.clone());
        let (sockets, entries) = successor::state_of(&self.daemon, stats, over_peers.as_deref())?;
        // A unix socket path cannot be shared: the new process binds the runtime API anew,
        // and its peers address likewise.
        let had_api = self.runtime_api.take().is_some();
        let peers = self.peers.take().zip(self.config.peers.clone());
        let had_peers = match peers {
            Some((service, section)) => {
                over_peers::release(service, &section).await;
                Some(section)
            }
            None => None,
        };
        match Successor::start(self.launch.clone(), sockets, entries, over_peers).await {
            Ok(successor) => Ok(successor),
            Err(e) => {
                if let Some(section) = had_peers {
                    self.peers = Some(
                        tether::run::start_peers(section, &self.daemon, self.table_seed).await?,
                    );
                }
                if let (true, Some(admin)) = (had_api, self.config.admin.clone()) {
                    let view = self.daemon.view();
                    self.runtime_api =
                        Some(tether::runtime_api::serve_runtime_api(admin, view).await?);
                }
                Err(e.into())
            }
        }
    }

    /// Stops accepting and lets connections finish within `grace`; after an upgrade, tells
    /// systemd the successor is the main process and sends it what was learned meanwhile.
    async fn stop(self, ending: Ending, grace: std::time::Duration) -> ExitCode {
        let runtime = self.daemon.runtime().clone();
        let clock = self.daemon.context().clock;
        let mut successor = match ending {
            Ending::Upgraded(s) => Some(s),
            Ending::Stop => None,
        };
        match &mut successor {
            Some(s) => {
                tell(self.notifier.handed_over(s.pid()));
                over_peers::carry(s, self.config.peers.as_ref(), &runtime, clock).await;
                let sent = s.send_changes(&runtime, clock.now()).await;
                tracing::info!(
                    pid = s.pid(),
                    entries = sent,
                    "upgrade: the new process serves; draining here"
                );
            }
            None => tell(self.notifier.stopping()),
        }
        drop(self.stats);
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "stopping: no new connections, waiting for established ones"
        );
        let left = self.daemon.shutdown(grace).await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "grace period over; closing remaining connections"
            );
        }
        if let Some(s) = successor {
            let sent = s.finish(&runtime, clock.now()).await;
            tracing::info!(
                entries = sent,
                "upgrade: drained; last stick-table changes sent"
            );
        }
        ExitCode::SUCCESS
    }
}
