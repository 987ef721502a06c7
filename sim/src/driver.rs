//! Builds the turmoil world for a scenario, steps it, and fires events at their times.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::balancer::{Admin, AdminState, BalancerEnv, ServerAddr};
use crate::events::{Action, Schedule};
use crate::fleet::{run_fleet, FleetRun, FleetSpec};
use crate::frontdoor::{FrontDoor, SharedFrontDoor, Spread};
use crate::instance_metrics::InstanceMetrics;
use crate::instances::{InstanceState, Instances};
use crate::metrics::{Recorder, SharedRecorder};
use crate::report::Report;
use crate::scenario::{Scenario, ServersSpec};
use crate::server_process::{supervise, ProcessSwitch, ServerSeed};
use crate::tls_server::{run_server, TLS_PORT};
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

/// The host shared by the servers that no host-level event singles out (no host loss,
/// partition or latency change of their own): each keeps its own model, listener and process
/// (crashed and restarted in place, see [`crate::server_process`]), on its own port. With
/// the same link latency and no bandwidth model, sharing a host changes nothing they do, and
/// turmoil's cost per step falls with every host (and host pair) fewer.
const SHARED_SERVER_HOST: &str = "servers";

/// Port of server `i` on [`SHARED_SERVER_HOST`].
fn shared_port(i: usize) -> u16 {
    10_443 + i as u16
}

/// The servers (by index) that need a host of their own: those a host-level event names (a
/// process crash or restart is not one: see [`crate::server_process`]).
fn own_host_servers(scenario: &Scenario) -> Vec<usize> {
    let mut own: Vec<usize> = scenario
        .events
        .iter()
        .filter_map(|e| match e.action {
            Action::HostDown { server }
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

struct World<'a> {
    sim: turmoil::Sim<'a>,
    servers: Vec<ServerAddr>,
    /// Servers removed from the pool (a new balancer instance starts without them).
    removed: Vec<String>,
    spec: ServersSpec,
    recorder: SharedRecorder,
    balancer: Option<Instances>,
    /// Where clients' connections go.
    door: SharedFrontDoor,
    fleet_hosts: Vec<String>,
    server_latency: Duration,
    client_latency: Duration,
    /// One-way latency between balancer instances.
    peer_latency: Duration,
    /// Actions an event scheduled for later (an upgrade's restart), by simulated ms.
    later: Vec<(u64, Action)>,
    /// Per server: the switch that crashes and restarts its process.
    processes: Vec<Rc<ProcessSwitch>>,
}

impl World<'_> {
    /// Adds the next server on a host of its own (named after it); returns its address.
    fn add_server(&mut self) -> ServerAddr {
        let index = self.servers.len();
        let addr = ServerAddr::own_host(&server_name(index));
        self.recorder.borrow_mut().server_known(&addr.name);
        let seed = ServerSeed::new(index, &addr.name, addr.port);
        self.processes.push(seed.switch.clone());
        let spec = self.spec.clone();
        let recorder = self.recorder.clone();
        self.sim.host(addr.host.as_str(), move || {
            // A crashed process leaves its host up with nothing bound: SYNs are refused.
            let boot = seed.switch.is_up().then(|| seed.boot(&spec, &recorder));
            let port = seed.port;
            async move {
                match boot {
                    Some(ctx) => run_server(ctx, port).await,
                    None => std::future::pending().await,
                }
            }
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
            let seed = ServerSeed::new(index, &addr.name, addr.port);
            self.processes.push(seed.switch.clone());
            seeds.push(seed);
            self.servers.push(addr);
        }
        let spec = self.spec.clone();
        let recorder = self.recorder.clone();
        self.sim.host(SHARED_SERVER_HOST, move || {
            let processes: Vec<_> = seeds
                .iter()
                .map(|s| supervise(s.clone(), spec.clone(), recorder.clone()))
                .collect();
            async move {
                let processes: Vec<_> = processes
                    .into_iter()
                    .map(tokio::task::spawn_local)
                    .collect();
                for p in processes {
                    p.await??;
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

    /// Hosts on the other side of a server's link: the balancer instances, or the clients in
    /// direct mode.
    fn front(&self) -> Vec<String> {
        match &self.balancer {
            Some(b) => b.hosts(),
            None => self.fleet_hosts.clone(),
        }
    }

    /// What a balancer instance gets at (re)start: the current server list.
    fn balancer_env(&self) -> BalancerEnv {
        BalancerEnv {
            listen_port: TLS_PORT,
            servers: self
                .servers
                .iter()
                .filter(|s| !self.removed.contains(&s.name))
                .cloned()
                .collect(),
            recorder: self.recorder.clone(),
        }
    }

    /// Starts balancer instance `i` on its host.
    fn start_instance(&mut self, i: usize) {
        let Some(b) = &self.balancer else { return };
        let Some(x) = b.all().get(i) else { return };
        let (host, software) = (x.host.clone(), x.balancer.clone());
        let env = self.balancer_env();
        self.sim
            .host(host.as_str(), move || software.software(env.clone()));
    }

    /// Latencies of instance `host`'s links to clients, servers and the other instances.
    fn instance_links(&mut self, host: &str) {
        self.set_latency(&self.fleet_hosts, host, self.client_latency);
        for s in self.server_hosts() {
            crate::net::set_link_latency(&self.sim, host, s.as_str(), self.server_latency);
        }
        let peers = self
            .balancer
            .as_ref()
            .map(|b| b.hosts())
            .unwrap_or_default();
        for p in peers.iter().filter(|p| p.as_str() != host) {
            crate::net::set_link_latency(&self.sim, host, p.as_str(), self.peer_latency);
        }
    }

    /// The instances (index, host) of the run, or an error naming the event.
    fn instance(&self, i: usize) -> Result<String, SimError> {
        match &self.balancer {
            Some(b) => Ok(b.get(i)?.host.clone()),
            None => Err(SimError::Scenario(
                "balancer instance events need a balancer (kind engine or relay)".into(),
            )),
        }
    }

    fn set_instance_state(&mut self, i: usize, state: InstanceState) {
        if let Some(b) = self.balancer.as_mut() {
            b.set_state(i, state);
        }
    }

    /// Cuts (or restores) instance `i`'s links to every other instance.
    fn peer_links(&mut self, i: usize, cut: bool) -> Result<(), SimError> {
        let host = self.instance(i)?;
        let peers = self
            .balancer
            .as_ref()
            .map(|b| b.hosts())
            .unwrap_or_default();
        for p in peers.iter().filter(|p| **p != host) {
            if cut {
                self.sim.partition(host.as_str(), p.as_str());
            } else {
                self.sim.repair(host.as_str(), p.as_str());
            }
        }
        Ok(())
    }

    /// Applies an event on a balancer instance (crash, restart, add, remove, upgrade, peers).
    fn apply_instance(&mut self, action: &Action, now: u64) -> Result<(), SimError> {
        match *action {
            Action::CrashInstance { instance } => {
                let h = self.instance(instance)?;
                self.door.borrow_mut().set_routed(instance, false);
                self.set_instance_state(instance, InstanceState::Crashed);
                self.sim.crash(h.as_str());
            }
            Action::RestartInstance { instance } => {
                let h = self.instance(instance)?;
                self.sim.bounce(h.as_str());
                self.set_instance_state(instance, InstanceState::Up);
                self.door.borrow_mut().set_routed(instance, true);
            }
            Action::AddInstance => {
                let b = self.balancer.as_mut().ok_or_else(|| {
                    SimError::Scenario(
                        "add-instance needs a balancer (kind engine or relay)".into(),
                    )
                })?;
                let i = b.add()?;
                let host = b.all()[i].host.clone();
                self.start_instance(i);
                self.instance_links(&host);
                self.door.borrow_mut().add(host);
            }
            Action::RemoveInstance { instance } => {
                self.instance(instance)?;
                self.door.borrow_mut().remove(instance);
                self.set_instance_state(instance, InstanceState::Removed);
            }
            Action::UpgradeInstance { instance, drain } => {
                self.instance(instance)?;
                self.door.borrow_mut().set_routed(instance, false);
                let at = now + drain.get().as_millis() as u64;
                self.later.push((at, Action::RestartInstance { instance }));
            }
            Action::PartitionPeers { instance } => self.peer_links(instance, true)?,
            Action::HealPeers { instance } => self.peer_links(instance, false)?,
            _ => {}
        }
        Ok(())
    }

    /// The actions scheduled for `now` or earlier by earlier events, in order.
    fn due_later(&mut self, now: u64) -> Vec<Action> {
        let (due, keep): (Vec<_>, Vec<_>) = self.later.drain(..).partition(|(at, _)| *at <= now);
        self.later = keep;
        due.into_iter().map(|(_, a)| a).collect()
    }

    fn server(&self, i: usize) -> Result<&ServerAddr, SimError> {
        self.servers.get(i).ok_or_else(|| {
            SimError::Scenario(format!("event names server {i}, which does not exist"))
        })
    }

    /// Crashes or restarts server `i`'s process: in place on the shared host, by restarting the
    /// software of a host of its own (which then binds nothing while the process is down).
    fn set_process(&mut self, i: usize, up: bool) -> Result<(), SimError> {
        let host = self.server(i)?.host.clone();
        self.processes[i].set(up);
        if host != SHARED_SERVER_HOST {
            self.sim.bounce(host.as_str());
        }
        Ok(())
    }

    /// The host of server `i`, for a host-level event (such servers have a host of their own).
    fn server_host(&self, i: usize) -> Result<String, SimError> {
        let s = self.server(i)?;
        debug_assert_eq!(s.host, s.name, "host-level event on a shared host");
        Ok(s.host.clone())
    }

    fn set_latency(&self, a: &[String], b: &str, latency: Duration) {
        for h in a {
            crate::net::set_link_latency(&self.sim, h.as_str(), b, latency);
        }
    }

    fn admin(&self, op: Admin) {
        if let Some(b) = &self.balancer {
            b.admin(&op);
        }
    }

    fn apply(&mut self, action: &Action, now: u64) -> Result<(), SimError> {
        match *action {
            // The process dies, its host stays: sockets close, the port refuses.
            Action::Crash { server } => self.set_process(server, false)?,
            Action::HostDown { server } => {
                let s = self.server_host(server)?;
                self.sim.crash(s.as_str());
            }
            Action::Restart { server } => self.set_process(server, true)?,
            // Held, not dropped: turmoil drops a partitioned link's messages, and a dropped SYN
            // makes the connect fail at once (as a refusing port), where a real partition is
            // silent: connects wait for their timeout and open connections hang; what was sent
            // arrives after the heal, as TCP's retransmissions deliver it (checked against a
            // real run: daemon/tests/sim_fidelity.rs).
            Action::Partition { server } => {
                let s = self.server_host(server)?;
                for f in self.front() {
                    self.sim.hold(f.as_str(), s.as_str());
                }
            }
            Action::Heal { server } => {
                let s = self.server_host(server)?;
                for f in self.front() {
                    self.sim.release(f.as_str(), s.as_str());
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
                self.removed.push(server.clone());
                self.admin(Admin::RemoveServer { server });
            }
            Action::RestartBalancer => {
                for h in self
                    .balancer
                    .as_ref()
                    .map(|b| b.hosts())
                    .unwrap_or_default()
                {
                    self.sim.bounce(h.as_str());
                }
            }
            Action::Latency { server, latency } => match server {
                Some(i) => {
                    let s = self.server_host(i)?;
                    self.set_latency(&self.front(), &s, latency.get());
                }
                None => {
                    let targets = match &self.balancer {
                        Some(b) => b.hosts(),
                        None => vec![self.server_host(0)?],
                    };
                    for t in targets {
                        self.set_latency(&self.fleet_hosts, &t, latency.get());
                    }
                }
            },
            _ => self.apply_instance(action, now)?,
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
    validate_instances(scenario)?;
    crate::backends::BackendPlan::of_scenario(scenario)?;
    for f in &scenario.fleets {
        f.validate().map_err(SimError::Scenario)?;
    }
    let mut names: Vec<&str> = scenario.fleets.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(SimError::Scenario("fleet names must be unique".into()));
    }
    Ok(())
}

/// Most balancer instances a scenario may ask for (each is a turmoil host).
pub const MAX_INSTANCES: usize = 16;

fn validate_instances(scenario: &Scenario) -> Result<(), SimError> {
    let b = &scenario.balancer;
    if b.instances == 0 || b.instances > MAX_INSTANCES {
        return Err(SimError::Scenario(format!(
            "balancer.instances must be between 1 and {MAX_INSTANCES}, not {}",
            b.instances
        )));
    }
    if b.instances > 1 && b.kind == crate::scenario::BalancerKind::Direct {
        return Err(SimError::Scenario(
            "balancer.instances > 1 needs kind = \"engine\" or \"relay\" (direct has no balancer)"
                .into(),
        ));
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
    /// Per server (by name): connects the balancer abandoned in flight, which the server may
    /// still count as open (see [`crate::net::take_abandoned_connects`]).
    pub abandoned_connects: BTreeMap<String, u64>,
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
        .min_message_latency(crate::net::DEFAULT_LINK_LATENCY)
        .max_message_latency(crate::net::DEFAULT_LINK_LATENCY)
        .tcp_capacity(1 << 16)
        .build()
}

/// Starts the balancer instances (if any) and returns the front door clients go through.
fn start_balancer(world: &mut World<'_>, spread: Spread) -> SharedFrontDoor {
    let hosts = match &world.balancer {
        Some(b) => b.hosts(),
        None => vec![world.servers[0].host.clone()],
    };
    for i in 0..hosts.len() {
        world.start_instance(i);
    }
    Rc::new(RefCell::new(FrontDoor::new(spread, hosts)))
}

/// Client↔balancer, balancer↔server and balancer↔balancer link latencies from the scenario.
fn link_latencies(world: &mut World<'_>) {
    let Some(b) = &world.balancer else {
        let server = world.servers[0].host.clone();
        world.set_latency(&world.fleet_hosts.clone(), &server, world.client_latency);
        return;
    };
    for host in b.hosts() {
        world.instance_links(&host);
    }
}

/// The world for `scenario`: servers, balancer instances, fleets and links.
fn build_world<'a>(
    scenario: &Scenario,
    seed: u64,
    sim: turmoil::Sim<'a>,
    recorder: &SharedRecorder,
    balancer: Option<Instances>,
) -> World<'a> {
    let replication = scenario.balancer.replication.as_ref();
    let mut world = World {
        sim,
        servers: Vec::new(),
        removed: Vec::new(),
        spec: scenario.servers.clone(),
        recorder: recorder.clone(),
        door: Rc::new(RefCell::new(FrontDoor::new(Spread::default(), Vec::new()))),
        balancer,
        fleet_hosts: client_hosts(scenario),
        server_latency: scenario.network.server_latency.get(),
        client_latency: scenario.network.client_latency.get(),
        peer_latency: replication.map_or(Duration::from_millis(1), |r| r.latency.get()),
        later: Vec::new(),
        processes: Vec::new(),
    };
    let has_balancer = world.balancer.is_some();
    world.add_initial_servers(
        scenario.servers.count,
        &own_host_servers(scenario),
        has_balancer,
    );
    world.door = start_balancer(&mut world, scenario.balancer.spread);
    start_fleets(&mut world, scenario, seed);
    link_latencies(&mut world);
    let adds = scenario
        .events
        .iter()
        .any(|e| e.action == Action::AddInstance);
    if has_balancer && (scenario.balancer.instances > 1 || adds) {
        recorder.borrow_mut().track_instances(InstanceMetrics::new(
            scenario.balancer.spread,
            replication.is_some_and(|r| r.enabled),
            scenario.network.tick.get().as_millis().max(1) as u64,
        ));
    }
    world
}

/// Runs the scenario to completion and builds the report (and the trace when asked).
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    balancer: Option<Instances>,
    trace: bool,
    progress: Option<Box<dyn FnMut(u64, u64)>>,
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
    crate::net::take_abandoned_connects();
    crate::net::forget_link_latencies();
    let mut world = build_world(scenario, seed, sim, &recorder, balancer);
    run_steps(&mut world, scenario, tick, tr.as_mut(), progress)?;
    let elapsed = world.sim.elapsed();
    let abandoned = crate::net::take_abandoned_connects();
    if let Some(t) = tr.as_mut() {
        t.abandoned_connects = world
            .servers
            .iter()
            .filter_map(|s| Some((s.name.clone(), *abandoned.get(&s.address())?)))
            .collect();
    }
    if let Some(b) = &world.balancer {
        record_final(&recorder, b, elapsed.as_millis() as u64);
    }
    if let (Some(t), Some(b)) = (tr.as_mut(), world.balancer.as_ref()) {
        t.table_capacity = b.table_totals().map(|x| x.capacity);
    }
    let balancer_name = world
        .balancer
        .as_ref()
        .map_or_else(|| "direct".to_owned(), |b| b.name());
    drop(world);
    let report = Report::build(scenario, seed, &balancer_name, elapsed, &recorder.borrow());
    if let Some(t) = tr.as_mut() {
        t.connections = recorder.borrow_mut().take_trace();
    }
    Ok((report, tr))
}

/// How often the tables of several instances are compared (simulated ms).
const AGREEMENT_EVERY_MS: u64 = 1_000;

/// Applies the events due at `now` (the scenario's, then those earlier events scheduled).
fn apply_due(
    world: &mut World<'_>,
    schedule: &mut Schedule,
    now: u64,
    mut tr: Option<&mut Trace>,
) -> Result<(), SimError> {
    let mut due: Vec<Action> = schedule.due(now).into_iter().map(|e| e.action).collect();
    due.extend(world.due_later(now));
    for action in due {
        world.apply(&action, now)?;
        world.recorder.borrow_mut().event(now, action.describe());
        if matches!(
            action,
            Action::HealPeers { .. } | Action::RestartInstance { .. } | Action::AddInstance
        ) {
            let agreement = world
                .balancer
                .as_ref()
                .and_then(|b| b.table_agreement())
                .unwrap_or(1.0);
            if let Some(m) = world.recorder.borrow_mut().instances_mut() {
                m.await_convergence(now, action.describe(), agreement);
            }
        }
        if let Some(t) = tr.as_deref_mut() {
            t.events.push((now, action.clone()));
        }
    }
    Ok(())
}

/// Steps the simulation until every client is done, firing events and taking samples.
fn run_steps(
    world: &mut World<'_>,
    scenario: &Scenario,
    tick: Duration,
    mut tr: Option<&mut Trace>,
    mut progress: Option<Box<dyn FnMut(u64, u64)>>,
) -> Result<(), SimError> {
    let total_ms = scenario.duration.get().as_millis() as u64;
    let mut down: Vec<String> = Vec::new();
    let mut next_progress = PROGRESS_EVERY_MS;
    let mut schedule = Schedule::new(&scenario.events);
    let mut next_sample = 0u64;
    let mut next_agreement = 0u64;
    loop {
        let now = world.sim.elapsed().as_millis() as u64;
        apply_due(world, &mut schedule, now, tr.as_deref_mut())?;
        if let (Some(t), Some(b)) = (tr.as_deref_mut(), world.balancer.as_ref()) {
            trace_health(t, b, &mut down, now);
        }
        if now >= next_progress {
            if let Some(p) = progress.as_mut() {
                p(now, total_ms);
            }
            next_progress += PROGRESS_EVERY_MS;
        }
        if now >= next_sample {
            if let Some(totals) = world.balancer.as_ref().and_then(|b| b.table_totals()) {
                world.recorder.borrow_mut().table_sample(now, totals);
            }
            next_sample += 60_000;
        }
        sample_replication(world, now);
        if now >= next_agreement {
            sample_agreement(world, now);
            next_agreement += AGREEMENT_EVERY_MS;
        }
        match world.sim.step() {
            Ok(true) => {
                settle(&mut world.sim, tick)?;
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(SimError::Turmoil(e.to_string())),
        }
    }
}

/// Reads what the instances stored and received since the last step (replication lag).
fn sample_replication(world: &World<'_>, now: u64) {
    let Some(b) = world.balancer.as_ref() else {
        return;
    };
    // Only runs with several instances track replication (a single instance has no feed).
    if world.recorder.borrow().instances().is_none() {
        return;
    }
    let updates = b.replication_updates();
    if updates.is_empty() {
        return;
    }
    if let Some(m) = world.recorder.borrow_mut().instances_mut() {
        m.replication_updates(now, &updates);
    }
}

/// Compares the instances' tables (runs with several instances only).
fn sample_agreement(world: &World<'_>, now: u64) {
    let mut rec = world.recorder.borrow_mut();
    let Some(m) = rec.instances_mut() else { return };
    if let Some(a) = world.balancer.as_ref().and_then(|b| b.table_agreement()) {
        m.agreement_sample(now, a);
    }
}

/// Records which servers the balancer's health checks turned DOWN or UP since the last step.
fn trace_health(t: &mut Trace, b: &Instances, down: &mut Vec<String>, now: u64) {
    let now_down = b.down_servers();
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

/// Starts every fleet of the scenario on the client host, going through the front door.
fn start_fleets(world: &mut World, scenario: &Scenario, seed: u64) {
    let duration = scenario.duration.get();
    let mut runs = Vec::new();
    for (i, spec) in scenario.fleets.iter().enumerate() {
        runs.push(Rc::new(FleetRun {
            index: i,
            spec: spec.clone(),
            seed,
            door: world.door.clone(),
            end_ms: spec
                .until
                .map_or(duration, |u| u.get().min(duration))
                .as_millis() as u64,
            connect_timeout: CONNECT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
            recorder: world.recorder.clone(),
        }));
    }
    let hosts = world.fleet_hosts.clone();
    for (h, host) in hosts.iter().enumerate() {
        let runs = runs.clone();
        let n = hosts.len();
        world.sim.client(host.as_str(), async move {
            let fleets: Vec<_> = runs
                .into_iter()
                .map(|run| tokio::task::spawn_local(run_fleet(run, h, n)))
                .collect();
            for f in fleets {
                f.await??;
            }
            Ok(())
        });
    }
}

/// Busiest connection rate (per second, all fleets) one client host carries before the
/// clients are spread over more: turmoil scans a link's whole queue of messages in flight on
/// every send, so one link carrying a busy fleet's traffic costs time quadratic in the load,
/// while each extra host costs a little on every step.
const CONNECTIONS_PER_CLIENT_HOST: f64 = 1_000.0;

/// Most client hosts.
const MAX_CLIENT_HOSTS: usize = 8;

/// The client hosts: `clients`, then `clients-1`, ... as the scenario's peak rate needs.
fn client_hosts(scenario: &Scenario) -> Vec<String> {
    let rate: f64 = scenario
        .fleets
        .iter()
        .map(FleetSpec::peak_connection_rate)
        .sum();
    let n = ((rate / CONNECTIONS_PER_CLIENT_HOST).ceil() as usize).clamp(1, MAX_CLIENT_HOSTS);
    (0..n)
        .map(|i| match i {
            0 => CLIENT_HOST.to_owned(),
            i => format!("{CLIENT_HOST}-{i}"),
        })
        .collect()
}

/// The balancer's table totals and affinity counts at the end of the run (and per instance).
fn record_final(recorder: &Rc<RefCell<Recorder>>, b: &Instances, end: u64) {
    if let Some(totals) = b.table_totals() {
        recorder.borrow_mut().table_sample(end, totals);
    }
    if let Some(counts) = b.affinity_counts() {
        recorder.borrow_mut().set_affinity(counts);
    }
    let mut rec = recorder.borrow_mut();
    if let Some(m) = rec.instances_mut() {
        for (i, x) in b.all().iter().enumerate() {
            m.set_final(i, x.balancer.affinity_counts(), x.balancer.table_totals());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_events(events: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\nduration = \"60s\"\n[servers]\ncount = 4\n[balancer]\nkind = \"engine\"\n\
             [[fleets]]\nname = \"f\"\nkind = \"tls12-session-id\"\nclients = 1\n{events}"
        );
        Scenario::from_toml(&text).expect("scenario")
    }

    fn event(at: &str, action: &str, server: usize) -> String {
        format!("[[events]]\nat = \"{at}\"\naction = \"{action}\"\nserver = {server}\n")
    }

    #[test]
    fn a_process_crash_keeps_the_shared_host_and_a_host_loss_takes_its_own() {
        let crash = event("10s", "crash", 1) + &event("20s", "restart", 1);
        assert!(own_host_servers(&with_events(&crash)).is_empty());
        let lost = event("10s", "host-down", 2) + &event("20s", "restart", 2);
        assert_eq!(own_host_servers(&with_events(&lost)), [2]);
        let parted = event("10s", "partition", 3) + &event("20s", "heal", 3);
        assert_eq!(own_host_servers(&with_events(&parted)), [3]);
    }
}
