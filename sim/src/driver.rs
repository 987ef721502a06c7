//! Builds the turmoil world for a scenario, steps it, and fires events at their times.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::balancer::{Admin, AdminState, BalancerEnv, BalancerHost, ServerAddr, BALANCER_HOST};
use crate::events::{Action, Schedule};
use crate::fleet::{run_fleet, FleetRun};
use crate::metrics::{Recorder, SharedRecorder};
use crate::report::Report;
use crate::scenario::{Scenario, ServersSpec};
use crate::tls_server::{run_server, ServerContext, ServerModel, TLS_PORT};
use crate::SimError;

/// Time allowed after the last visit starts for connections to finish.
const GRACE: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Host name of server `i`.
pub fn server_name(i: usize) -> String {
    format!("server-{i:02}")
}

/// The one host all fleets run on: turmoil's cost per step grows with the number of hosts, and
/// each simulated client's own address travels in its PROXY header anyway.
const CLIENT_HOST: &str = "clients";

/// The host shared by the servers that no event singles out (no crash, restart, partition or
/// latency change of their own): each keeps its own model and listener, on its own port. With
/// the same link latency and no bandwidth model, sharing a host changes nothing they do, and
/// turmoil's cost per step falls with every host (and host pair) fewer.
const SHARED_SERVER_HOST: &str = "servers";

/// Port of server `i` on [`SHARED_SERVER_HOST`].
fn shared_port(i: usize) -> u16 {
    10_443 + i as u16
}

/// The servers (by index) that need a host of their own: those a host-level event names.
fn own_host_servers(scenario: &Scenario) -> Vec<usize> {
    let mut own: Vec<usize> = scenario
        .events
        .iter()
        .filter_map(|e| match e.action {
            Action::Crash { server }
            | Action::Restart { server }
            | Action::Partition { server }
            | Action::Heal { server }
            | Action::Latency {
                server: Some(server),
                ..
            } => Some(server),
            _ => None,
        })
        .collect();
    own.sort_unstable();
    own.dedup();
    own
}

/// One server's identity and the boots it went through, for its host's software.
#[derive(Clone)]
struct ServerSeed {
    index: usize,
    name: Rc<str>,
    port: u16,
    boots: Rc<Cell<u32>>,
}

impl ServerSeed {
    /// The context of a new boot: empty session cache, new ticket keys unless shared.
    fn boot(&self, spec: &ServersSpec, recorder: &SharedRecorder) -> ServerContext {
        let boot = self.boots.get();
        self.boots.set(boot + 1);
        ServerContext {
            name: self.name.clone(),
            model: Rc::new(RefCell::new(ServerModel::new(
                self.index as u16,
                boot,
                spec,
            ))),
            recorder: recorder.clone(),
            cpu: spec
                .cost
                .as_ref()
                .map(|c| Rc::new(crate::cost::ServerCpu::new(c))),
        }
    }
}

struct World<'a> {
    sim: turmoil::Sim<'a>,
    servers: Vec<ServerAddr>,
    spec: ServersSpec,
    recorder: SharedRecorder,
    balancer: Option<Rc<dyn BalancerHost>>,
    fleet_hosts: Vec<String>,
    server_latency: Duration,
}

impl World<'_> {
    /// Adds the next server on a host of its own (named after it); returns its address.
    fn add_server(&mut self) -> ServerAddr {
        let index = self.servers.len();
        let addr = ServerAddr::own_host(&server_name(index));
        self.recorder.borrow_mut().server_known(&addr.name);
        let seed = ServerSeed {
            index,
            name: addr.name.as_str().into(),
            port: addr.port,
            boots: Rc::default(),
        };
        let spec = self.spec.clone();
        let recorder = self.recorder.clone();
        self.sim.host(addr.host.as_str(), move || {
            run_server(seed.boot(&spec, &recorder), seed.port)
        });
        self.servers.push(addr.clone());
        addr
    }

    /// Adds `count` servers, in index order; those not in `own` share [`SHARED_SERVER_HOST`]
    /// when there are at least two of them (a balancer in front is needed: in direct mode the
    /// clients talk to server 0 by its own host).
    fn add_initial_servers(&mut self, count: usize, own: &[usize], can_share: bool) {
        let shared: Vec<usize> = (0..count).filter(|i| !own.contains(i)).collect();
        if !can_share || shared.len() < 2 {
            for _ in 0..count {
                self.add_server();
            }
            return;
        }
        let mut seeds = Vec::new();
        for index in 0..count {
            if own.contains(&index) {
                self.add_server();
                continue;
            }
            let name = server_name(index);
            self.recorder.borrow_mut().server_known(&name);
            let addr = ServerAddr {
                name,
                host: SHARED_SERVER_HOST.to_owned(),
                port: shared_port(index),
            };
            seeds.push(ServerSeed {
                index,
                name: addr.name.as_str().into(),
                port: addr.port,
                boots: Rc::default(),
            });
            self.servers.push(addr);
        }
        let spec = self.spec.clone();
        let recorder = self.recorder.clone();
        self.sim.host(SHARED_SERVER_HOST, move || {
            let boots: Vec<(ServerContext, u16)> = seeds
                .iter()
                .map(|s| (s.boot(&spec, &recorder), s.port))
                .collect();
            async move {
                let listeners: Vec<_> = boots
                    .into_iter()
                    .map(|(ctx, port)| tokio::task::spawn_local(run_server(ctx, port)))
                    .collect();
                for l in listeners {
                    l.await??;
                }
                Ok(())
            }
        });
    }

    /// The distinct hosts the servers run on, in first-use order.
    fn server_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for s in &self.servers {
            if !hosts.contains(&s.host) {
                hosts.push(s.host.clone());
            }
        }
        hosts
    }

    /// Hosts on the other side of a server's link: the balancer, or the clients in direct mode.
    fn front(&self) -> Vec<String> {
        if self.balancer.is_some() {
            vec![BALANCER_HOST.to_owned()]
        } else {
            self.fleet_hosts.clone()
        }
    }

    fn server(&self, i: usize) -> Result<&ServerAddr, SimError> {
        self.servers.get(i).ok_or_else(|| {
            SimError::Scenario(format!("event names server {i}, which does not exist"))
        })
    }

    /// The host of server `i`, for a host-level event (such servers have a host of their own).
    fn server_host(&self, i: usize) -> Result<String, SimError> {
        let s = self.server(i)?;
        debug_assert_eq!(s.host, s.name, "host-level event on a shared host");
        Ok(s.host.clone())
    }

    fn set_latency(&self, a: &[String], b: &str, latency: Duration) {
        for h in a {
            self.sim.set_link_latency(h.as_str(), b, latency);
        }
    }

    fn admin(&self, op: Admin) {
        if let Some(b) = &self.balancer {
            b.admin(&op);
        }
    }

    fn apply(&mut self, action: &Action) -> Result<(), SimError> {
        match *action {
            Action::Crash { server } => {
                let s = self.server_host(server)?;
                self.sim.crash(s.as_str());
            }
            Action::Restart { server } => {
                let s = self.server_host(server)?;
                self.sim.bounce(s.as_str());
            }
            Action::Partition { server } => {
                let s = self.server_host(server)?;
                for f in self.front() {
                    self.sim.partition(f.as_str(), s.as_str());
                }
            }
            Action::Heal { server } => {
                let s = self.server_host(server)?;
                for f in self.front() {
                    self.sim.repair(f.as_str(), s.as_str());
                }
            }
            Action::Drain { server } | Action::Maint { server } | Action::Ready { server } => {
                let state = match action {
                    Action::Drain { .. } => AdminState::Drain,
                    Action::Maint { .. } => AdminState::Maint,
                    _ => AdminState::Ready,
                };
                let server = self.server(server)?.name.clone();
                self.admin(Admin::SetState { server, state });
            }
            Action::AddServer => {
                let s = self.add_server();
                let front = self.front();
                self.set_latency(&front, &s.host, self.server_latency);
                self.admin(Admin::AddServer { server: s });
            }
            Action::RemoveServer { server } => {
                let server = self.server(server)?.name.clone();
                self.admin(Admin::RemoveServer { server });
            }
            Action::RestartBalancer => {
                if self.balancer.is_some() {
                    self.sim.bounce(BALANCER_HOST);
                }
            }
            Action::Latency { server, latency } => match server {
                Some(i) => {
                    let s = self.server_host(i)?;
                    self.set_latency(&self.front(), &s, latency.get());
                }
                None => {
                    let target = match self.balancer {
                        Some(_) => BALANCER_HOST.to_owned(),
                        None => self.server_host(0)?,
                    };
                    self.set_latency(&self.fleet_hosts, &target, latency.get());
                }
            },
        }
        Ok(())
    }
}

fn validate(scenario: &Scenario) -> Result<(), SimError> {
    for (i, e) in scenario.expect.iter().enumerate() {
        e.validate(scenario).map_err(|why| {
            SimError::Scenario(format!("[[expect]] #{} ({}): {why}", i + 1, e.describe()))
        })?;
    }
    if let Some(cost) = &scenario.servers.cost {
        cost.validate().map_err(SimError::Scenario)?;
    }
    if scenario.servers.count == 0 {
        return Err(SimError::Scenario(
            "servers.count must be at least 1".into(),
        ));
    }
    if scenario.fleets.is_empty() || scenario.fleets.len() > 15 {
        return Err(SimError::Scenario(
            "write between 1 and 15 [[fleets]]".into(),
        ));
    }
    let mut names: Vec<&str> = scenario.fleets.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(SimError::Scenario("fleet names must be unique".into()));
    }
    Ok(())
}

/// What happened, connection by connection, for checking invariants (trace mode).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Every client connection.
    pub connections: Vec<ClientTrace>,
    /// Every connection the engine logged (empty for other balancers).
    pub routes: Vec<crate::engine_host::RouteTrace>,
    /// The engine's counters and table once the run has settled (tether's engine only).
    pub engine_end: Option<crate::engine_host::EngineEnd>,
    /// Servers going DOWN or UP in the balancer's view, as observed after each step.
    pub health: Vec<HealthChange>,
    /// Events as applied (simulated ms, action).
    pub events: Vec<(u64, Action)>,
    /// Configured stick-table size (summed over tables), when the balancer has tables.
    pub table_capacity: Option<u64>,
    /// Largest occupancy observed after any step.
    pub peak_table_entries: u64,
    /// The simulation step (ms): observations are this coarse.
    pub tick_ms: u64,
}

/// One client connection with its start and end.
#[derive(Clone, Debug)]
pub struct ClientTrace {
    /// Fleet name.
    pub fleet: String,
    /// What the client saw.
    pub record: crate::metrics::ConnectionRecord,
    /// When the client gave up on or finished the connection (simulated ms).
    pub end_ms: u64,
}

/// A change in the balancer's view of a server's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChange {
    /// Observed at (simulated ms, end of the step in which it happened).
    pub at_ms: u64,
    /// Server host name.
    pub server: String,
    /// Now DOWN (`true`) or UP again.
    pub down: bool,
}

/// Simulated time between progress callbacks.
const PROGRESS_EVERY_MS: u64 = 5_000;

/// Steps a little past the clients' end so the balancer logs the last connections it relayed.
fn settle(sim: &mut turmoil::Sim<'_>, tick: Duration) -> Result<(), SimError> {
    let steps = (SETTLE.as_millis() / tick.as_millis().max(1)) as usize;
    for _ in 0..steps {
        sim.step().map_err(|e| SimError::Turmoil(e.to_string()))?;
    }
    Ok(())
}

/// How long the balancer gets after the last client finished.
const SETTLE: Duration = Duration::from_secs(1);

/// The turmoil simulation for `seed`: fixed epoch, 1 ms messages, the scenario's tick.
fn turmoil_sim(seed: u64, duration: Duration, tick: Duration) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(seed)
        .simulation_duration(duration + GRACE)
        .tick_duration(tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .tcp_capacity(1 << 16)
        .build()
}

/// Starts the balancer host (if any) and returns the host clients connect to.
fn start_balancer(world: &mut World<'_>, balancer: Option<&Rc<dyn BalancerHost>>) -> String {
    let Some(b) = balancer else {
        return world.servers[0].host.clone();
    };
    let env = BalancerEnv {
        listen_port: TLS_PORT,
        servers: world.servers.clone(),
        recorder: world.recorder.clone(),
    };
    let b = b.clone();
    world
        .sim
        .host(BALANCER_HOST, move || b.software(env.clone()));
    BALANCER_HOST.to_owned()
}

/// Client↔target and balancer↔server link latencies from the scenario.
fn link_latencies(world: &mut World<'_>, scenario: &Scenario, target: &str, balancer: bool) {
    let client_latency = scenario.network.client_latency.get();
    world.set_latency(&world.fleet_hosts.clone(), target, client_latency);
    if balancer {
        for host in world.server_hosts() {
            world
                .sim
                .set_link_latency(BALANCER_HOST, host.as_str(), world.server_latency);
        }
    }
}

/// Runs the scenario to completion and builds the report (and the trace when asked).
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    balancer: Option<Rc<dyn BalancerHost>>,
    trace: bool,
    mut progress: Option<Box<dyn FnMut(u64, u64)>>,
) -> Result<(Report, Option<Trace>), SimError> {
    validate(scenario)?;
    let duration = scenario.duration.get();
    let tick = scenario.network.tick.get().max(Duration::from_millis(1));
    let sim = turmoil_sim(seed, duration, tick);
    let recorder = Recorder::shared();
    if trace {
        recorder.borrow_mut().enable_trace();
    }
    let mut tr = trace.then(|| Trace {
        tick_ms: tick.as_millis() as u64,
        ..Trace::default()
    });
    let mut down: Vec<String> = Vec::new();
    let mut next_progress = PROGRESS_EVERY_MS;
    let total_ms = duration.as_millis() as u64;
    let mut world = World {
        sim,
        servers: Vec::new(),
        spec: scenario.servers.clone(),
        recorder: recorder.clone(),
        balancer: balancer.clone(),
        fleet_hosts: vec![CLIENT_HOST.to_owned()],
        server_latency: scenario.network.server_latency.get(),
    };
    world.add_initial_servers(
        scenario.servers.count,
        &own_host_servers(scenario),
        balancer.is_some(),
    );
    let target = start_balancer(&mut world, balancer.as_ref());
    start_fleets(&mut world, scenario, seed, &target);
    link_latencies(&mut world, scenario, &target, balancer.is_some());

    let mut schedule = Schedule::new(&scenario.events);
    let mut next_sample = 0u64;
    loop {
        let now = world.sim.elapsed().as_millis() as u64;
        for event in schedule.due(now) {
            world.apply(&event.action)?;
            recorder.borrow_mut().event(now, event.action.describe());
            if let Some(t) = tr.as_mut() {
                t.events.push((now, event.action.clone()));
            }
        }
        if let (Some(t), Some(b)) = (tr.as_mut(), balancer.as_ref()) {
            trace_health(t, &**b, &mut down, now);
        }
        if now >= next_progress {
            if let Some(p) = progress.as_mut() {
                p(now, total_ms);
            }
            next_progress += PROGRESS_EVERY_MS;
        }
        if now >= next_sample {
            if let Some(totals) = balancer.as_ref().and_then(|b| b.table_totals()) {
                recorder.borrow_mut().table_sample(now, totals);
            }
            next_sample += 60_000;
        }
        match world.sim.step() {
            Ok(true) => {
                settle(&mut world.sim, tick)?;
                break;
            }
            Ok(false) => {}
            Err(e) => return Err(SimError::Turmoil(e.to_string())),
        }
    }
    let elapsed = world.sim.elapsed();
    if let Some(b) = &balancer {
        record_final(&recorder, &**b, elapsed.as_millis() as u64);
    }
    if let (Some(t), Some(b)) = (tr.as_mut(), balancer.as_ref()) {
        t.table_capacity = b.table_totals().map(|x| x.capacity);
    }
    let balancer_name = balancer.map_or_else(|| "direct".to_owned(), |b| b.name());
    drop(world);
    let report = Report::build(scenario, seed, &balancer_name, elapsed, &recorder.borrow());
    if let Some(t) = tr.as_mut() {
        t.connections = recorder.borrow_mut().take_trace();
    }
    Ok((report, tr))
}

/// Records which servers the balancer's health checks turned DOWN or UP since the last step.
fn trace_health(t: &mut Trace, b: &dyn BalancerHost, down: &mut Vec<String>, now: u64) {
    let mut now_down = b.down_servers();
    now_down.sort();
    for s in now_down.iter().filter(|s| !down.contains(s)) {
        t.health.push(HealthChange {
            at_ms: now,
            server: s.clone(),
            down: true,
        });
    }
    for s in down.iter().filter(|s| !now_down.contains(s)) {
        t.health.push(HealthChange {
            at_ms: now,
            server: s.clone(),
            down: false,
        });
    }
    *down = now_down;
    if let Some(entries) = b.table_occupancy() {
        t.peak_table_entries = t.peak_table_entries.max(entries);
    }
}

/// Starts every fleet of the scenario on the client host, aimed at `target`.
fn start_fleets(world: &mut World, scenario: &Scenario, seed: u64, target: &str) {
    let duration = scenario.duration.get();
    let mut runs = Vec::new();
    for (i, spec) in scenario.fleets.iter().enumerate() {
        runs.push(Rc::new(FleetRun {
            index: i,
            spec: spec.clone(),
            seed,
            target: target.to_owned(),
            end_ms: spec
                .until
                .map_or(duration, |u| u.get().min(duration))
                .as_millis() as u64,
            connect_timeout: CONNECT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
            recorder: world.recorder.clone(),
        }));
    }
    world.sim.client(CLIENT_HOST, async move {
        let fleets: Vec<_> = runs
            .into_iter()
            .map(|run| tokio::task::spawn_local(run_fleet(run)))
            .collect();
        for f in fleets {
            f.await??;
        }
        Ok(())
    });
}

/// The balancer's table totals and affinity counts at the end of the run.
fn record_final(recorder: &Rc<RefCell<Recorder>>, b: &dyn BalancerHost, end: u64) {
    if let Some(totals) = b.table_totals() {
        recorder.borrow_mut().table_sample(end, totals);
    }
    if let Some(counts) = b.affinity_counts() {
        recorder.borrow_mut().set_affinity(counts);
    }
}
