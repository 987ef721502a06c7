//! The daemon and the simulator run one configuration alike.
//!
//! The same tether configuration and the same event script run through `Process<TokioNet>`
//! (real sockets on 127.0.0.1) and `Process<TurmoilNet>` (a turmoil simulation): servers close
//! their listener, come back, stop answering SYNs, answer again, and clients connect between
//! the events. Each run writes down the health transitions it saw (which server, which way,
//! after how many failed checks, the last check's status and how long it took in `inter`
//! units) and where each connection landed. The two transcripts must be equal: a runner that
//! checks or routes differently (another check timeout, another order) shows up as a diff.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tether::net::TokioNet;
use tether_core::config;
use tether_core::engine::runtime::{build, Runtime};
use tether_core::engine::{ConnectionRecord, LogSink, Net, Process, ProcessView};
use tether_core::server::OperState;
use tether_sim::net::TurmoilNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Check interval of the configuration: short, as the tokio run takes real time.
const INTER: Duration = Duration::from_millis(300);
const SERVERS: [&str; 3] = ["s1", "s2", "s3"];

/// The one configuration both runners load: `timeout connect` far above `inter`, so a check
/// that waited for the connect timeout instead of `inter` is told apart.
fn configuration(bind: &str, servers: &[String]) -> Runtime {
    let mut text = format!(
        "[global]\nmaxconn = 100\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{bind}\"]\nbackend = \"app\"\n\
         [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\ntimeout-connect = \"3s\"\n\
         [backend.check]\ninter = \"{}ms\"\nrise = 2\nfall = 2\npassive = false\n",
        INTER.as_millis()
    );
    for (name, address) in SERVERS.iter().zip(servers) {
        text += &format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{address}\"\n");
    }
    let config = config::load_toml("runners_agree.toml", &text).expect("config loads");
    build(&config, None).expect("config builds")
}

/// What a test server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Accepts and greets with its name.
    Open,
    /// No listener: connects are refused.
    Closed,
    /// Connects hang (SYNs dropped), as for a crashed or partitioned host.
    Stalled,
}

/// A runner's way of putting a server in a [`Mode`].
trait Bed {
    fn set(&mut self, server: usize, mode: Mode) -> impl Future<Output = ()>;
}

/// Discards connection records: the transcript reads the runtime instead.
struct Quiet;

impl LogSink for Quiet {
    fn record(&self, _: &ConnectionRecord) {}
}

/// A server that greets each connection with `name` while its mode is `Open` and has no
/// listener otherwise (`Stalled` is the bed's business). `first` is an already bound socket.
async fn serve_greeting<N: Net>(
    net: N,
    bind: String,
    name: &'static str,
    mut first: Option<N::Listener>,
    mut mode: watch::Receiver<Mode>,
) {
    loop {
        if *mode.borrow_and_update() != Mode::Open {
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let listener = match first.take() {
            Some(l) => l,
            None => net.bind(&bind).await.expect("server rebinds its address"),
        };
        loop {
            tokio::select! {
                biased;
                changed = mode.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                accepted = net.accept(&listener) => {
                    if let Ok((mut s, _)) = accepted {
                        tokio::spawn(async move {
                            // Read the client's byte first: closing with unread data would
                            // send a reset instead of the greeting and a FIN.
                            let _ = s.read(&mut [0u8; 16]).await;
                            let _ = s.write_all(name.as_bytes()).await;
                        });
                    }
                }
            }
        }
    }
}

/// One connection through the balancer: the server that greeted it, `-` for none.
async fn route<N: Net>(net: &N, frontend: &str) -> String {
    let attempt = async {
        let mut s = net.connect(frontend).await.ok()?;
        s.write_all(b"x").await.ok()?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.ok()?;
        Some(String::from_utf8_lossy(&got).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Some(name)) if !name.is_empty() => name,
        _ => "-".to_owned(),
    }
}

/// `n` connections one after the other: where each landed.
async fn routes<N: Net>(net: &N, frontend: &str, n: usize) -> String {
    let mut names = Vec::new();
    for _ in 0..n {
        names.push(route(net, frontend).await);
    }
    names.join(" ")
}

/// Waits until `server` is `want` (and its last check said `status`, when given) and
/// describes the transition.
async fn transition<N: Net>(
    view: &ProcessView<N>,
    server: usize,
    want: OperState,
    status: Option<&str>,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rt = view.runtime();
        let be = &rt.backends["app"];
        let slot = &be.servers[server];
        let last = slot.last_check.lock().unwrap().clone();
        let status_ok = status.is_none_or(|s| last.as_ref().is_some_and(|l| l.status == s));
        if be.server_states()[server].oper == want && status_ok {
            let failures = slot.counters.check_failures.load(Ordering::Relaxed);
            let (status, took) = match last {
                // In halves of `inter`, so the tokio run's scheduling noise rounds away.
                Some(l) => (
                    l.status,
                    (l.duration.as_millis() * 2 + INTER.as_millis() / 2) / INTER.as_millis(),
                ),
                None => ("none", 0),
            };
            return format!(
                "{} {want:?} after {failures} failed checks, last {status} in {took}/2 inter",
                SERVERS[server]
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never went {want:?}",
            SERVERS[server]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The event script, the same for both runners; returns the transcript.
async fn script<N: Net, B: Bed>(
    net: N,
    bed: &mut B,
    view: ProcessView<N>,
    frontend: &str,
) -> Vec<String> {
    // Every server passes a check first, so each starts from the same health counter.
    for server in 0..SERVERS.len() {
        transition(&view, server, OperState::Up, Some("L4OK")).await;
    }
    let mut log = vec![format!("all up: {}", routes(&net, frontend, 6).await)];

    let events = [
        (1, Mode::Closed, OperState::Down),
        (1, Mode::Open, OperState::Up),
        (2, Mode::Stalled, OperState::Down),
        (2, Mode::Open, OperState::Up),
    ];
    for (server, mode, want) in events {
        bed.set(server, mode).await;
        log.push(transition(&view, server, want, None).await);
        let names = routes(&net, frontend, 4).await;
        log.push(format!("{} {mode:?}: {names}", SERVERS[server]));
    }
    log
}

/// The tokio runner's servers: one task each on 127.0.0.1; a stalled server is a listener
/// with a backlog of 0 that one unaccepted connection fills, so the kernel drops further SYNs.
struct TokioBed {
    addrs: Vec<SocketAddr>,
    modes: Vec<watch::Sender<Mode>>,
    stalled: Vec<Option<(std::net::TcpListener, std::net::TcpStream)>>,
}

impl Bed for TokioBed {
    async fn set(&mut self, server: usize, mode: Mode) {
        self.stalled[server] = None;
        self.modes[server].send_if_modified(|m| std::mem::replace(m, mode) != mode);
        // Let the server drop or rebind its listener before anything else happens.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if mode == Mode::Stalled {
            let addr = self.addrs[server];
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket.bind(&addr.into()).unwrap();
            socket.listen(0).unwrap();
            let filler = std::net::TcpStream::connect(addr).unwrap();
            self.stalled[server] = Some((socket.into(), filler));
        }
    }
}

async fn tokio_run() -> Vec<String> {
    let mut addrs = Vec::new();
    let mut modes = Vec::new();
    for name in SERVERS {
        let listener = TokioNet.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Mode::Open);
        tokio::spawn(serve_greeting(
            TokioNet,
            addr.to_string(),
            name,
            Some(listener),
            rx,
        ));
        addrs.push(addr);
        modes.push(tx);
    }
    let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let process = Process::start(
        TokioNet,
        configuration("127.0.0.1:0", &servers),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    let frontend = process.local_addrs()["main"].to_string();
    let mut bed = TokioBed {
        addrs,
        modes,
        stalled: (0..SERVERS.len()).map(|_| None).collect(),
    };
    let log = script(TokioNet, &mut bed, process.view(), &frontend).await;
    process.shutdown(Duration::from_secs(1)).await;
    log
}

/// The turmoil runner's servers: one host each; a stalled server's link to the balancer host
/// holds every segment, so SYNs never arrive.
struct TurmoilBed {
    modes: Vec<watch::Sender<Mode>>,
}

impl Bed for TurmoilBed {
    async fn set(&mut self, server: usize, mode: Mode) {
        let host = SERVERS[server];
        if mode == Mode::Stalled {
            // Held, not partitioned: turmoil refuses a connect across a partition at once.
            turmoil::hold("lb", host);
        } else {
            turmoil::release("lb", host);
            self.modes[server].send_if_modified(|m| std::mem::replace(m, mode) != mode);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn turmoil_run() -> Vec<String> {
    let mut sim = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(1)
        .simulation_duration(Duration::from_secs(600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .build();
    let mut modes = Vec::new();
    for name in SERVERS {
        let (tx, rx) = watch::channel(Mode::Open);
        sim.host(name, move || {
            let rx = rx.clone();
            async move {
                serve_greeting(TurmoilNet, "0.0.0.0:443".into(), name, None, rx).await;
                Ok(())
            }
        });
        modes.push(tx);
    }
    let view: Rc<RefCell<Option<ProcessView<TurmoilNet>>>> = Rc::default();
    let published = view.clone();
    sim.host("lb", move || {
        let published = published.clone();
        async move {
            let servers: Vec<String> = SERVERS.iter().map(|s| format!("{s}:443")).collect();
            let process = Process::start(
                TurmoilNet,
                configuration("0.0.0.0:9000", &servers),
                Arc::new(Quiet),
            )
            .await?;
            *published.borrow_mut() = Some(process.view());
            std::future::pending::<()>().await;
            drop(process);
            Ok(())
        }
    });
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let out = log.clone();
    sim.client("client", async move {
        let view = loop {
            if let Some(v) = view.borrow().clone() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let mut bed = TurmoilBed { modes };
        *out.borrow_mut() = script(TurmoilNet, &mut bed, view, "lb:9000").await;
        Ok(())
    });
    sim.run().expect("simulation runs");
    log.take()
}

#[test]
fn daemon_and_simulator_check_and_route_alike() {
    let simulated = turmoil_run();
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(tokio_run());
    assert_eq!(real, simulated, "the daemon and the simulator diverge");
    // And both saw what the configuration promises.
    assert_eq!(real[0], "all up: s1 s2 s3 s1 s2 s3");
    assert!(
        real[1].starts_with("s2 Down after 2 failed checks, last L4CON"),
        "{}",
        real[1]
    );
    assert!(real[3].starts_with("s2 Up"), "{}", real[3]);
    assert_eq!(
        real[5],
        "s3 Down after 2 failed checks, last L4TOUT in 2/2 inter"
    );
    assert!(real[7].starts_with("s3 Up"), "{}", real[7]);
    for line in &real {
        assert!(!line.contains(" -"), "a connection found no server: {line}");
    }
}

/// Agent checks and `track` in both runners: s1 has an agent whose line the script switches,
/// s3 does no checks and tracks s2.
fn agent_configuration(bind: &str, servers: &[String], agent: &str) -> Runtime {
    let mut text = format!(
        "[global]\nmaxconn = 100\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{bind}\"]\nbackend = \"app\"\n\
         [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\ntimeout-connect = \"3s\"\n\
         [backend.check]\ninter = \"{}ms\"\nrise = 2\nfall = 2\npassive = false\n",
        INTER.as_millis()
    );
    let (host, port) = agent.rsplit_once(':').unwrap();
    let extra = [
        format!("weight = 100\nagent = {{ port = {port}, addr = \"{host}\" }}\n"),
        "weight = 100\n".to_string(),
        "weight = 100\ncheck = false\ntrack = \"s2\"\n".to_string(),
    ];
    for ((name, address), extra) in SERVERS.iter().zip(servers).zip(extra) {
        text += &format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{address}\"\n{extra}");
    }
    let config = config::load_toml("runners_agree.toml", &text).expect("config loads");
    build(&config, None).expect("config builds")
}

/// An agent: every connection gets the current line.
async fn serve_agent<N: Net>(net: N, bind: String, line: watch::Receiver<&'static str>) {
    let listener = net.bind(&bind).await.expect("agent binds");
    while let Ok((mut s, _)) = net.accept(&listener).await {
        let answer = *line.borrow();
        tokio::spawn(async move {
            let _ = s.write_all(answer.as_bytes()).await;
        });
    }
}

/// Waits until s1's (admin, weight) is `want`; describes it.
async fn s1_is<N: Net>(view: &ProcessView<N>, want: (&str, u32)) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = view.runtime().backends["app"].server_states()[0].clone();
        let now = (format!("{:?}", st.admin), st.weight);
        if (now.0.as_str(), now.1) == want {
            return format!("s1 {} weight {}", now.0, now.1);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "s1 never {want:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The agent and track script: agent words, then the tracked server closing and coming back.
async fn agent_script<N: Net, B: Bed>(
    net: N,
    bed: &mut B,
    line: &watch::Sender<&'static str>,
    view: ProcessView<N>,
    frontend: &str,
) -> Vec<String> {
    for server in 0..2 {
        transition(&view, server, OperState::Up, Some("L4OK")).await;
    }
    let mut log = vec![format!("all up: {}", routes(&net, frontend, 6).await)];
    for (answer, want) in [("drain\n", ("Drain", 100)), ("ready 50%\n", ("Ready", 50))] {
        line.send_replace(answer);
        log.push(s1_is(&view, want).await);
        log.push(routes(&net, frontend, 5).await);
    }
    line.send_replace("down #bye\n");
    log.push(transition(&view, 0, OperState::Down, None).await);
    log.push(routes(&net, frontend, 4).await);
    line.send_replace("up\n");
    log.push(transition(&view, 0, OperState::Up, None).await);
    for (mode, want) in [(Mode::Closed, OperState::Down), (Mode::Open, OperState::Up)] {
        bed.set(1, mode).await;
        log.push(transition(&view, 1, want, None).await);
        log.push(transition(&view, 2, want, None).await);
        log.push(format!("s2 {mode:?}: {}", routes(&net, frontend, 5).await));
    }
    log
}

async fn agent_tokio_run() -> Vec<String> {
    let (line, rx) = watch::channel("ready\n");
    let agent = TokioNet.bind("127.0.0.1:0").await.unwrap();
    let agent_addr = agent.local_addr().unwrap().to_string();
    drop(agent);
    tokio::spawn(serve_agent(TokioNet, agent_addr.clone(), rx));
    let mut addrs = Vec::new();
    let mut modes = Vec::new();
    for name in SERVERS {
        let listener = TokioNet.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Mode::Open);
        tokio::spawn(serve_greeting(
            TokioNet,
            addr.to_string(),
            name,
            Some(listener),
            rx,
        ));
        addrs.push(addr);
        modes.push(tx);
    }
    let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let rt = agent_configuration("127.0.0.1:0", &servers, &agent_addr);
    let process = Process::start(TokioNet, rt, Arc::new(Quiet)).await.unwrap();
    let frontend = process.local_addrs()["main"].to_string();
    let stalled = (0..SERVERS.len()).map(|_| None).collect();
    let mut bed = TokioBed {
        addrs,
        modes,
        stalled,
    };
    let log = agent_script(TokioNet, &mut bed, &line, process.view(), &frontend).await;
    process.shutdown(Duration::from_secs(1)).await;
    log
}

fn agent_turmoil_run() -> Vec<String> {
    let mut sim = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(1)
        .simulation_duration(Duration::from_secs(600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .build();
    let (line, line_rx) = watch::channel("ready\n");
    let mut modes = Vec::new();
    for name in SERVERS {
        let (tx, rx) = watch::channel(Mode::Open);
        let line_rx = line_rx.clone();
        sim.host(name, move || {
            let (rx, line_rx) = (rx.clone(), line_rx.clone());
            async move {
                if name == "s1" {
                    tokio::spawn(serve_agent(TurmoilNet, "0.0.0.0:5555".into(), line_rx));
                }
                serve_greeting(TurmoilNet, "0.0.0.0:443".into(), name, None, rx).await;
                Ok(())
            }
        });
        modes.push(tx);
    }
    let view: Rc<RefCell<Option<ProcessView<TurmoilNet>>>> = Rc::default();
    let published = view.clone();
    sim.host("lb", move || {
        let published = published.clone();
        async move {
            let servers: Vec<String> = SERVERS.iter().map(|s| format!("{s}:443")).collect();
            let rt = agent_configuration("0.0.0.0:9000", &servers, "s1:5555");
            let process = Process::start(TurmoilNet, rt, Arc::new(Quiet)).await?;
            *published.borrow_mut() = Some(process.view());
            std::future::pending::<()>().await;
            drop(process);
            Ok(())
        }
    });
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let out = log.clone();
    sim.client("client", async move {
        let view = loop {
            if let Some(v) = view.borrow().clone() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let mut bed = TurmoilBed { modes };
        *out.borrow_mut() = agent_script(TurmoilNet, &mut bed, &line, view, "lb:9000").await;
        Ok(())
    });
    sim.run().expect("simulation runs");
    log.take()
}

#[test]
fn daemon_and_simulator_follow_agents_and_tracks_alike() {
    let simulated = agent_turmoil_run();
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(agent_tokio_run());
    assert_eq!(real, simulated, "the daemon and the simulator diverge");
    assert_eq!(
        real[2], "s2 s3 s2 s3 s2",
        "a draining s1 takes no new connection"
    );
    assert!(real[5].starts_with("s1 Down"), "{}", real[5]);
    assert_eq!(real[6], "s2 s3 s2 s3");
    assert!(real[9].starts_with("s3 Down"), "{}", real[9]);
    assert_eq!(
        real[10], "s2 Closed: s1 s1 s1 s1 s1",
        "the tracker is down with s2"
    );
}
