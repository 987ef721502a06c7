//! `tether loadgen`: the scenario's client fleets as real TLS clients against a real balancer,
//! reported in the same `report.json` (and plots) as `tether sim`, so a prediction can be
//! checked (`tether sim compare`).
//!
//! `--testbed` starts the scenario's servers (rustls, in-process) and tether (a child process
//! of this binary) on loopback, gives the links the scenario's latencies ([`delay`]) and
//! performs the scenario's events on them; `--target ADDR` runs only the clients against any
//! balancer, over the real network. `--time-scale X` runs the scenario's clock X times faster:
//! visit gaps, holds, timeouts, session timeouts, link latencies and the balancer's intervals
//! and expiry are all divided by X.

pub mod balancer;
pub mod clients;
pub mod delay;
pub mod servers;
pub mod silence;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tether_sim::events::Action;
use tether_sim::metrics::{Recorder, SharedRecorder};
use tether_sim::scenario::{BalancerKind, Scenario};
use tether_sim::Report;
use tokio::sync::watch;

use balancer::TetherChild;
use clients::{FleetRun, ScaledClock, ServerNames};
use servers::ServerFleet;

/// Arguments of `tether loadgen`.
#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// Scenario TOML; without one, the embedded default deployment (as `tether sim`).
    pub scenario: Option<PathBuf>,
    /// Start the scenario's servers and tether on loopback and perform the scenario's events.
    #[arg(long, required_unless_present = "target")]
    pub testbed: bool,
    /// Run only the clients, against this balancer (any: tether, HAProxy, ...).
    #[arg(long, conflicts_with = "testbed")]
    pub target: Option<SocketAddr>,
    /// With --target: tether's JSON connection log of the run, for the affinity outcomes.
    #[arg(long, requires = "target")]
    pub balancer_log: Option<PathBuf>,
    /// Run the scenario's clock this many times faster than the wall clock.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Seed of the clients' visit pattern (default: the scenario's, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for report.json, the plots, and the testbed's files.
    #[arg(long, default_value = "out/loadgen")]
    pub out: PathBuf,
}

/// Runs `tether loadgen`.
pub fn run(args: LoadgenArgs) -> Result<ExitCode> {
    if !(args.time_scale > 0.0 && args.time_scale <= 1000.0) {
        bail!("--time-scale must be in (0, 1000], got {}", args.time_scale);
    }
    let (scenario, _) = crate::sim_cli::load(args.scenario.as_deref())?;
    let seed = args.seed.or(scenario.seed).unwrap_or(1);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, run_scenario(&args, &scenario, seed))?;
    print!("{}", report.summary_table());
    crate::sim_cli::write_report(&report, &args.out)?;
    Ok(ExitCode::SUCCESS)
}

/// The servers and the balancer of a `--testbed` run, and the clients↔balancer link.
struct Testbed {
    servers: ServerFleet,
    tether: TetherChild,
    plan: Plan,
    /// One-way latency of the clients↔balancer link (wall time).
    client_link: watch::Sender<Duration>,
}

/// What the balancer's configuration is made of.
struct Plan {
    listen: SocketAddr,
    dir: PathBuf,
    admin: PathBuf,
    /// The scenario's `[balancer.config]`.
    balancer: Option<toml::Value>,
    /// Servers (by index) in the balancer's pool.
    pool: Vec<usize>,
    scale: f64,
}

impl Plan {
    /// The daemon's configuration for the current pool.
    fn config(&self, servers: &ServerFleet) -> Result<String> {
        let list: Vec<(String, SocketAddr)> = self
            .pool
            .iter()
            .map(|&i| {
                let s = &servers.servers[i];
                (s.identity.name.clone(), s.addr)
            })
            .collect();
        balancer::config_text(
            self.balancer.as_ref(),
            self.listen,
            &list,
            self.scale,
            &self.admin,
        )
    }
}

impl Testbed {
    fn server(&self, i: usize) -> Result<String> {
        match self.servers.servers.get(i) {
            Some(s) => Ok(s.identity.name.clone()),
            None => bail!("event names server {i}, which does not exist"),
        }
    }

    async fn reload(&mut self) -> Result<()> {
        let config = self.plan.config(&self.servers)?;
        self.tether.reload(&self.plan.dir, &config).await
    }

    /// Performs one event on the real processes and sockets.
    async fn apply(&mut self, action: &Action) -> Result<()> {
        match *action {
            Action::Crash { server } => {
                self.server(server)?;
                self.servers.crash(server).await;
            }
            Action::Restart { server } => {
                self.server(server)?;
                self.servers.crash(server).await;
                self.servers.start(server).await?;
            }
            Action::HostDown { server } => {
                self.server(server)?;
                self.servers.host_down(server).await?;
            }
            Action::Partition { server } => {
                self.server(server)?;
                self.servers.partition(server).await?;
            }
            Action::Heal { server } => {
                self.server(server)?;
                self.servers.heal(server).await?;
            }
            Action::Drain { server } | Action::Maint { server } | Action::Ready { server } => {
                let state = match action {
                    Action::Drain { .. } => "drain",
                    Action::Maint { .. } => "maint",
                    _ => "ready",
                };
                let cmd = format!("set server app/{} state {state}", self.server(server)?);
                balancer::admin(&self.plan.admin, &cmd).await?;
            }
            Action::AddServer => {
                let i = self.servers.add(&self.plan.dir)?;
                self.servers.start(i).await?;
                self.plan.pool.push(i);
                self.reload().await?;
            }
            Action::RemoveServer { server } => {
                self.server(server)?;
                self.plan.pool.retain(|&i| i != server);
                self.reload().await?;
            }
            Action::Latency { server, latency } => {
                let wall = latency.get().div_f64(self.plan.scale);
                match server {
                    Some(i) => {
                        self.server(i)?;
                        self.servers.servers[i].link.send_replace(wall);
                    }
                    None => {
                        self.client_link.send_replace(wall);
                    }
                }
            }
            Action::RestartBalancer => {
                self.tether.stop().await;
                let config = self.plan.config(&self.servers)?;
                self.tether = TetherChild::start(&self.plan.dir, &config, self.plan.listen).await?;
            }
            _ => unreachable!("refused before the run"),
        }
        Ok(())
    }
}

async fn start_testbed(args: &LoadgenArgs, scenario: &Scenario) -> Result<Testbed> {
    if scenario.balancer.kind != BalancerKind::Engine || scenario.balancer.haproxy.is_some() {
        bail!("--testbed runs tether with the scenario's [balancer.config]; for another balancer use --target");
    }
    let dir = args.out.join("testbed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let wall = |d: Duration| d.div_f64(args.time_scale);
    let server_latency = wall(scenario.network.server_latency.get());
    let mut servers = ServerFleet::new(&scenario.servers, args.time_scale, server_latency, &dir)?;
    for i in 0..servers.servers.len() {
        servers.start(i).await?;
    }
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let plan = Plan {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        admin: dir.join("admin.sock"),
        dir,
        balancer: scenario.balancer.config.clone(),
        pool: (0..servers.servers.len()).collect(),
        scale: args.time_scale,
    };
    let tether = TetherChild::start(&plan.dir, &plan.config(&servers)?, plan.listen).await?;
    Ok(Testbed {
        servers,
        tether,
        plan,
        client_link: watch::channel(wall(scenario.network.client_latency.get())).0,
    })
}

/// Samples the balancer's stick tables every scenario minute (until aborted).
async fn sample_tables(admin: PathBuf, clock: ScaledClock, recorder: SharedRecorder) {
    let mut next = 0u64;
    loop {
        if let Ok(text) = balancer::admin(&admin, "show table").await {
            if let Some(t) = balancer::table_totals(&text) {
                recorder.borrow_mut().table_sample(next, t);
            }
        }
        next += 60_000;
        let now = clock.now_ms();
        clock
            .sleep(Duration::from_millis(next.saturating_sub(now)))
            .await;
    }
}

async fn run_scenario(args: &LoadgenArgs, scenario: &Scenario, seed: u64) -> Result<Report> {
    let mut testbed = match args.target {
        Some(_) => None,
        None => Some(start_testbed(args, scenario).await?),
    };
    let target = match (&testbed, args.target) {
        (Some(t), _) => t.plan.listen,
        (None, Some(a)) => a,
        (None, None) => bail!("give --testbed or --target ADDR"),
    };
    let recorder = Recorder::shared();
    let mut names = ServerNames::default();
    if let Some(t) = &testbed {
        for s in &t.servers.servers {
            names.insert(&s.identity.cert, &s.identity.name);
            recorder.borrow_mut().server_known(&s.identity.name);
        }
    }
    let start_of_day = wall_ms_of_day();
    let clock = ScaledClock::start(args.time_scale);
    let fleets = start_fleets(
        scenario,
        seed,
        target,
        clock,
        Rc::new(names),
        &recorder,
        testbed.as_ref().map(|t| t.client_link.subscribe()),
    );
    let sampler = testbed.as_ref().map(|t| {
        tokio::task::spawn_local(sample_tables(t.plan.admin.clone(), clock, recorder.clone()))
    });
    perform_events(scenario, testbed.as_mut(), clock, &recorder).await?;
    for f in fleets {
        let _ = f.await;
    }
    let elapsed = Duration::from_millis(clock.now_ms());
    if let (Some(s), Some(t)) = (sampler, &testbed) {
        s.abort();
        if let Ok(text) = balancer::admin(&t.plan.admin, "show table").await {
            if let Some(totals) = balancer::table_totals(&text) {
                recorder
                    .borrow_mut()
                    .table_sample(elapsed.as_millis() as u64, totals);
            }
        }
    }

    let log = match (&mut testbed, &args.balancer_log) {
        (Some(t), _) => {
            t.tether.stop().await;
            Some(t.tether.log.clone())
        }
        (None, path) => path.clone(),
    };
    if let Some(path) = log {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let counts = balancer::affinity_from_log(&text, start_of_day, args.time_scale);
        recorder.borrow_mut().set_affinity(counts);
    }
    let name = match args.target {
        Some(a) => format!("loadgen target {a}"),
        None => "tether daemon (loadgen testbed)".to_owned(),
    };
    let report = Report::build(scenario, seed, &name, elapsed, &recorder.borrow());
    Ok(report)
}

fn start_fleets(
    scenario: &Scenario,
    seed: u64,
    target: SocketAddr,
    clock: ScaledClock,
    names: Rc<ServerNames>,
    recorder: &SharedRecorder,
    testbed_link: Option<delay::Link>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let end_ms = scenario.duration.get().as_millis() as u64;
    scenario
        .fleets
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let run = Rc::new(FleetRun {
                index,
                spec: spec.clone(),
                seed,
                target,
                end_ms,
                clock,
                names: names.clone(),
                recorder: recorder.clone(),
                testbed_link: testbed_link.clone(),
            });
            tokio::task::spawn_local(clients::run_fleet(run))
        })
        .collect()
}

/// Sleeps until each event's (scaled) time and performs it on the testbed.
async fn perform_events(
    scenario: &Scenario,
    mut testbed: Option<&mut Testbed>,
    clock: ScaledClock,
    recorder: &SharedRecorder,
) -> Result<()> {
    let mut events = scenario.events.clone();
    events.sort_by_key(|e| e.at);
    for e in events {
        let at = e.at.get().as_millis() as u64;
        let now = clock.now_ms();
        if at > now {
            clock.sleep(Duration::from_millis(at - now)).await;
        }
        let Some(t) = testbed.as_deref_mut() else {
            continue; // --target: the operator performs events on their own system.
        };
        t.apply(&e.action).await?;
        recorder
            .borrow_mut()
            .event(clock.now_ms(), e.action.describe());
    }
    Ok(())
}

/// Milliseconds since midnight UTC now, to place the daemon's log dates on the run's clock.
fn wall_ms_of_day() -> u64 {
    // The CLI is the edge: reading the wall clock to match the daemon's log dates is its job.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    ms % 86_400_000
}
