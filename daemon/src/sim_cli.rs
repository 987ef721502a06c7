//! `tether sim`: predicts affinity and load for a deployment before it exists, by running
//! tether's engine in the deterministic simulator (tether-sim), and `tether sim sweep`, which
//! turns one knob at a time to show where affinity breaks.
//!
//! Scenarios may name an haproxy.cfg (`[balancer] haproxy = "path"`): it is imported here, with
//! HAProxy's behaviour, and the simulator runs the engine on the imported configuration (server
//! addresses are replaced by the simulated servers).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tether_core::config::Config;
use tether_sim::scenario::{BalancerKind, Scenario};
use tether_sim::{Report, RunOptions};

/// Arguments of `tether sim`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    /// Scenario TOML (see sim/scenarios/); without one, the embedded default deployment runs.
    pub scenario: Option<PathBuf>,
    /// Seed (default: the scenario's `seed`, else 1). Same seed, same report, byte for byte.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for report.json and the plots.
    #[arg(long, default_value = "out/sim")]
    pub out: PathBuf,
    /// No progress indicator.
    #[arg(long)]
    pub quiet: bool,
    /// Run this many seeds (from --seed), each in a fresh process, and report means with 95 %
    /// confidence intervals; every [[expect]] must hold on every seed.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// With --seeds: runs at once (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// With --seeds: run only slice K of N of the seeds (0-based, e.g. a Kubernetes Indexed
    /// Job's `$JOB_COMPLETION_INDEX`) and write `partial-K-of-N.json` for `tether sim merge`.
    #[arg(long, requires = "seeds")]
    pub shard: Option<tether_sim::shard::Shard>,
    /// Internal: print the headline figures as one JSON line (what --seeds children do).
    #[arg(long, hide = true)]
    pub headline: bool,
    /// Run the round-robin relay instead of the scenario's balancer: the no-affinity baseline
    /// (same clients, servers, costs and events).
    #[arg(long, conflicts_with = "seeds")]
    pub no_affinity: bool,
    /// Sweep a parameter instead of running once.
    #[command(subcommand)]
    pub command: Option<SimCommand>,
}

/// Sub-commands of `tether sim`.
#[derive(clap::Subcommand, Debug)]
pub enum SimCommand {
    /// Run the scenario once per value of each parameter; write sweep.csv, sweep.md and plots.
    Sweep(crate::sim_sweep::SweepArgs),
    /// Join the partial results that `--shard K/N` slices wrote into one run's output.
    Merge(crate::sim_merge::MergeArgs),
    /// Swarm testing: generated scenarios with seeded fault mixes, each run twice, invariants
    /// checked on every run.
    Check(crate::sim_check::CheckArgs),
    /// Measure a live TLS server's full and resumed handshake CPU; print `[servers.cost]`.
    Calibrate(crate::sim_calibrate::CalibrateArgs),
    /// Two reports side by side (e.g. `tether sim` vs `tether loadgen`), with differences;
    /// exits 1 when a rate or share differs by more than --tolerance points.
    Compare(crate::sim_compare::CompareArgs),
}

/// Runs `tether sim` (or `tether sim sweep`).
pub fn run(args: SimArgs) -> Result<ExitCode> {
    match args.command {
        Some(SimCommand::Sweep(s)) => return crate::sim_sweep::run(s),
        Some(SimCommand::Merge(m)) => return crate::sim_merge::run(m),
        Some(SimCommand::Check(c)) => return crate::sim_check::run(c),
        Some(SimCommand::Calibrate(c)) => return crate::sim_calibrate::run(c),
        Some(SimCommand::Compare(c)) => return crate::sim_compare::run(c),
        None => {}
    }
    let (mut scenario, mut config) = load(args.scenario.as_deref())?;
    if args.no_affinity {
        scenario.balancer.kind = BalancerKind::Relay;
        scenario.balancer.haproxy = None;
        config = None;
    }
    let seed = args.seed.or(scenario.seed).unwrap_or(1);
    if let Some(n) = args.seeds {
        let jobs = args.jobs.unwrap_or_else(crate::children::cores);
        let path = args.scenario.as_deref();
        let seeds = crate::sim_seeds::Seeds {
            first: seed,
            count: n,
            shard: args.shard,
        };
        return crate::sim_seeds::run(path, &scenario, seeds, jobs, &args.out);
    }
    let wall = WallClock::start();
    let report = simulate(&scenario, seed, config, !args.quiet)?;
    let wall_s = wall.seconds();
    print!("{}", report.summary_table());
    if !args.quiet {
        // How fast the simulator ran, for planning bigger runs; stderr, so the summary and the
        // report stay identical from run to run.
        eprintln!(
            "\nsimulated {} connections ({:.0} simulated s) in {wall_s:.2} wall s: {:.0} connections per wall second",
            report.overall.connections,
            report.simulated_seconds,
            report.overall.connections as f64 / wall_s.max(1e-9)
        );
    }
    write_report(&report, &args.out)?;
    let checked = tether_sim::expect::check(&scenario, &report);
    if !checked.is_empty() {
        println!("\nexpectations:");
        for c in &checked {
            println!("  {}", c.line());
        }
    }
    if args.headline {
        let h = tether_sim::headline::Headline::of(&report, &checked);
        println!(
            "{}{}",
            crate::sim_seeds::HEADLINE_PREFIX,
            serde_json::to_string(&h)?
        );
    }
    // A --seeds child reports; the parent judges every seed.
    Ok(if args.headline || checked.iter().all(|c| c.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes `report.json` and the plots into `out` (created if missing) and says where, for
/// `tether sim` and `tether loadgen` alike, so a simulated and a real run compare file by file.
pub fn write_report(report: &Report, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("report.json");
    std::fs::write(&json, report.to_json())
        .with_context(|| format!("writing {}", json.display()))?;
    let plots = tether_sim::plot::write_plots(report, out)?;
    println!(
        "\nwrote {} and {} plots in {}",
        json.display(),
        plots.len(),
        out.display()
    );
    Ok(())
}

/// The scenario (file or embedded default) and the engine configuration it asks for: imported
/// from `haproxy = "path"` (relative to the scenario file), or its native `[balancer.config]`.
pub fn load(path: Option<&Path>) -> Result<(Scenario, Option<Config>)> {
    let scenario = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Scenario::from_toml(&text).with_context(|| format!("scenario {}", p.display()))?
        }
        None => Scenario::default_scenario(),
    };
    let config = match (&scenario.balancer.haproxy, scenario.balancer.kind) {
        (Some(cfg), _) => {
            let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
            let cfg_path = base.join(cfg);
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("reading {}", cfg_path.display()))?;
            let (config, findings) =
                crate::haproxy::convert_haproxy(&cfg_path.display().to_string(), &text)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("importing {}", cfg_path.display()))?;
            for f in findings {
                tracing::debug!("{f}");
            }
            Some(config)
        }
        (None, BalancerKind::Engine) => {
            Some(tether_sim::engine_host::EngineHost::config_from_scenario(
                scenario.balancer.config.as_ref(),
            )?)
        }
        (None, _) => None,
    };
    Ok((scenario, config))
}

/// One run, with a progress indicator on stderr when it is a terminal (or forced) and the run
/// takes more than a couple of wall seconds.
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    config: Option<Config>,
    progress: bool,
) -> Result<Report> {
    let show = progress && std::io::stderr().is_terminal();
    let label = scenario.name.clone();
    let meter = show.then(|| Progress::new(label));
    let options = RunOptions {
        config,
        trace: false,
        progress: meter.map(|mut m| {
            Box::new(move |now: u64, total: u64| m.update(now, total)) as Box<dyn FnMut(u64, u64)>
        }),
    };
    // The engine's own logs (health transitions of simulated servers) would drown the summary;
    // TETHER_LOG turns them back on.
    let run = if std::env::var_os("TETHER_LOG").is_some() {
        tether_sim::run_with_options(scenario, seed, options)?
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            tether_sim::run_with_options(scenario, seed, options)
        })?
    };
    if show {
        eprint!("\r\x1b[2K");
    }
    Ok(run.report)
}

/// Wall-clock time of a run, for the throughput line and the progress bar; it never reaches
/// the simulation.
pub(crate) struct WallClock(std::time::Instant);

impl WallClock {
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn start() -> Self {
        WallClock(std::time::Instant::now())
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A one-line progress bar that appears only once a run has taken a couple of wall seconds.
struct Progress {
    label: String,
    // Wall-clock time only decides whether to draw the bar; it never reaches the simulation.
    started: WallClock,
}

impl Progress {
    fn new(label: String) -> Self {
        Progress {
            label,
            started: WallClock::start(),
        }
    }

    fn update(&mut self, now_ms: u64, total_ms: u64) {
        if self.started.seconds() < 2.0 {
            return;
        }
        let frac = (now_ms as f64 / total_ms.max(1) as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{}{}] {:>3.0}% ({} of {} simulated s)",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            now_ms / 1000,
            total_ms / 1000
        );
        let _ = err.flush();
    }
}
