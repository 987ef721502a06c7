//! Active health checks: every `inter` (`fastinter` while a server moves, `downinter` while it is
//! down) the server's check [`Plan`](crate::server::check::Plan) is run over the [`Net`], and
//! its verdict fed into the core's rise/fall counter.
//!
//! The loop is here, not in the daemon, so the simulator checks servers exactly as production
//! does; transitions are logged with HAProxy's wording. The protocol (what to send, how to judge
//! the answer) is the sans-IO [`Probe`]; this file only moves its bytes and keeps its time:
//! without `timeout check` the whole check gets `inter`, with it the connect gets
//! `min(timeout connect, inter)` and the answer `timeout check`, as in HAProxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep, timeout_at, Instant};

use super::backend::{Backend, LastCheck, ServerSlot};
use super::check_conn::{handshake, CheckConn};
use super::check_log::{
    check_line, os_error_text, status_part, transition_line, Census, Checked, Subject,
};
use super::log::LogSink;
use super::net::Net;
use crate::config::log::Severity;
use crate::server::check::{CheckDefaults, Io, Opening, Verdict};
use crate::server::{ServerState, Transition};
use crate::ServerId;

/// Checks one server until `shutdown` turns true (or its sender is gone). The check takes its
/// timeout from the server's and the backend's settings
/// ([`HealthConfig::check_connect_timeout`](crate::server::HealthConfig::check_connect_timeout)),
/// so every runner checks alike.
pub async fn check_server<N: Net>(
    net: N,
    backend: Arc<Backend>,
    server: ServerId,
    sink: Arc<dyn LogSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &backend.servers[server.index()];
    loop {
        let wait = backend.check_interval(server);
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = sleep(wait) => {}
            // Out of maintenance the server is UP until a check says otherwise: check at once.
            _ = left_maintenance(slot) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if backend.in_maintenance(server) {
            continue; // checks pause in maintenance, as HAProxy's
        }
        let t0 = Instant::now();
        let Some(verdict) = probe(&net, &backend, slot, server).await else {
            // Our own descriptors ran out: this says nothing about the server.
            tracing::debug!(backend = %backend.name, server = %slot.name, "check skipped: local resources exhausted");
            continue;
        };
        record(&backend, server, &verdict, t0.elapsed(), &*sink);
    }
}

/// Resolves when the server leaves maintenance (it first waits for it to be in it).
async fn left_maintenance(slot: &ServerSlot) {
    use crate::server::state::AdminState;
    slot.state_until(|t| t.admin == AdminState::Maint).await;
    slot.state_until(|t| t.admin != AdminState::Maint).await;
}

/// HAProxy's `slowstart`: the server came back with the least weight (set with the transition);
/// its share grows linearly to full over `slow`, in steps of a twentieth (50 ms to 1 s). Ends
/// early when the server goes down or a newer ramp starts.
async fn ramp_up(backend: Arc<Backend>, server: ServerId, slow: Duration, generation: u64) {
    let start = Instant::now();
    let step = (slow / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let full = u128::from(crate::server::state::FULL_RAMP);
    loop {
        sleep(step).await;
        let done = (start.elapsed().as_millis() * full / slow.as_millis().max(1)).min(full);
        let ramp = u16::try_from(done).unwrap_or(crate::server::state::FULL_RAMP);
        if !backend.set_ramp(server, generation, ramp) || u128::from(ramp) >= full {
            return;
        }
    }
}

/// Keeps the verdict for the stats page, counts it, and logs as HAProxy does: the result when
/// `option log-health-checks` is on and it changed the status or moved the counter; acts on a
/// state change and returns it.
fn record(
    backend: &Arc<Backend>,
    server: ServerId,
    verdict: &Verdict,
    duration: Duration,
    sink: &dyn LogSink,
) -> Option<Transition> {
    let slot = &backend.servers[server.index()];
    let ok = verdict.status.is_ok();
    let previous = slot
        .last_check
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(last(verdict, duration));
    if !ok {
        slot.counters.check_failures.fetch_add(1, Ordering::Relaxed);
    }
    let step = backend.health_result(server, ok);
    let checked = Checked {
        verdict,
        duration_ms: duration.as_millis(),
    };
    let status_changed = previous.is_none_or(|p| p.status != verdict.status.as_str());
    if backend.log_health_checks && (status_changed || step.moved) {
        let (who, me) = subject(backend, server);
        let line = check_line(&who, &checked, &step, me.weight == 0);
        tracing::info!(target: "tether::health", "{line}");
        sink.event(Severity::Notice, &line);
    }
    let t = step.transition?;
    // With `log-health-checks` the reason is already on the check's own line.
    let cause = if backend.log_health_checks {
        String::new()
    } else {
        status_part(&checked)
    };
    transitioned(backend, server, t, &cause, sink);
    Some(t)
}

/// A verdict as the stats page keeps it.
pub(super) fn last(verdict: &Verdict, duration: Duration) -> LastCheck {
    LastCheck {
        status: verdict.status.as_str(),
        code: verdict.code,
        desc: verdict.status.description(),
        duration,
        at: Instant::now(),
        info: Some(verdict.info.clone()).filter(|i| !i.is_empty()),
    }
}

/// Who a log line is about, with its state now.
fn subject(backend: &Backend, server: ServerId) -> (Subject<'_>, ServerState) {
    let me = backend.server_states().swap_remove(server.index());
    let who = Subject {
        backend: &backend.name,
        server: &backend.servers[server.index()].name,
        backup: me.backup,
    };
    (who, me)
}

/// What follows a state change, whatever caused it (check, agent, tracked server): the time of
/// the change and the DOWN count for the stats page, HAProxy's log line (`cause` as
/// [`transition_line`] takes it), and a slowstart ramp.
pub(super) fn transitioned(
    backend: &Arc<Backend>,
    server: ServerId,
    t: Transition,
    cause: &str,
    sink: &dyn LogSink,
) {
    let slot = &backend.servers[server.index()];
    *slot.last_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    if t == Transition::Down {
        slot.counters.check_downs.fetch_add(1, Ordering::Relaxed);
    }
    let census = census(backend, server, &backend.server_states());
    let line = transition_line(&subject(backend, server).0, t, &census, cause);
    log_transition(t, &line, sink);
    if let (Transition::Up, Some(slow)) = (t, slot.slowstart) {
        let generation = slot.ramp_generation.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(ramp_up(backend.clone(), server, slow, generation));
    }
}

/// The counts HAProxy appends to a transition line.
fn census(backend: &Backend, server: ServerId, states: &[ServerState]) -> Census {
    let slot = &backend.servers[server.index()];
    let usable = |backup: bool| {
        states
            .iter()
            .filter(|s| s.backup == backup && s.usable_for_balance())
            .count()
    };
    Census {
        active: usable(false),
        backup: usable(true),
        sessions: slot.counters.current.load(Ordering::Relaxed),
        queued: slot.queued.load(Ordering::Relaxed),
    }
}

/// `Server b/s is DOWN|UP ...`: a warning in the daemon's log, and to the log targets at
/// HAProxy's levels (`alert` for DOWN, `notice` for UP).
fn log_transition(t: Transition, line: &str, sink: &dyn LogSink) {
    match t {
        Transition::Up => {
            tracing::info!(target: "tether::health", "{line}");
            sink.event(Severity::Notice, line);
        }
        Transition::Down => {
            tracing::warn!(target: "tether::health", "{line}");
            sink.event(Severity::Alert, line);
        }
    }
}

/// Runs one check of `slot`: connects (and does the TLS handshake when the step asks), sends
/// and reads as its probe asks, within the time rules. `None` when connecting failed for lack of
/// a local resource (EMFILE...): no verdict on the server.
async fn probe<N: Net>(
    net: &N,
    backend: &Backend,
    slot: &ServerSlot,
    server: ServerId,
) -> Option<Verdict> {
    let mut probe = slot.plan.probe_with(CheckDefaults {
        ssl: slot.check_tls.as_ref().is_some_and(|t| t.default_on),
        send_proxy: slot.check_send_proxy,
    });
    let timing = Timing {
        connect: check_timeout(backend, server),
        read: backend.timeouts.check,
        whole: slot.health.inter,
    };
    run_probe(net, slot, &mut probe, &slot.check_target(), timing).await
}

/// How long a check may take: the connect, each read after it (`timeout check`), and the whole
/// check when `timeout check` is not set (`inter`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    /// Connect (and TLS handshake) bound when `read` is set.
    pub connect: Duration,
    /// `timeout check`.
    pub read: Option<Duration>,
    /// The whole check.
    pub whole: Duration,
}

/// Walks `probe` over the network to `address` (the check's or the agent's) within `timing`;
/// `slot` gives the TLS settings. `None` when our own descriptors ran out.
pub(super) async fn run_probe<N: Net>(
    net: &N,
    slot: &ServerSlot,
    probe: &mut crate::server::check::Probe,
    address: &str,
    timing: Timing,
) -> Option<Verdict> {
    let start = Instant::now();
    let connect_timeout = timing.connect;
    let read_budget = timing.read;
    let whole = start + timing.whole;
    let mut stream: Option<CheckConn<N::Stream>> = None;
    let mut read_deadline = whole;
    let mut buf = vec![0u8; 4096];
    loop {
        match probe.poll() {
            Io::Done(v) => return Some(v),
            Io::Connect {
                port,
                addr,
                opening,
            } => {
                stream = None;
                let target = check_target(address, addr, port);
                // The TLS handshake is part of connecting, as in HAProxy.
                let limit = match read_budget {
                    Some(_) => Instant::now() + connect_timeout,
                    None => whole,
                };
                match timeout_at(limit, net.connect(&target)).await {
                    Ok(Ok(s)) => {
                        probe.on_connected();
                        stream = open::<N>(slot, s, opening, limit, probe).await;
                        read_deadline = read_budget.map_or(whole, |t| Instant::now() + t);
                    }
                    Ok(Err(e)) if crate::retry::local_exhaustion(&e) => return None,
                    Ok(Err(e)) => probe.on_connect_error(&os_error_text(&e)),
                    Err(_) => probe.on_timeout(),
                }
            }
            Io::Send(bytes) => {
                let Some(s) = stream.as_mut() else {
                    probe.on_io_error("not connected");
                    continue;
                };
                let write = async {
                    s.write_all(&bytes).await?;
                    s.flush().await
                };
                match timeout_at(read_deadline, write).await {
                    Ok(Ok(())) => probe.on_sent(),
                    Ok(Err(e)) => probe.on_io_error(&os_error_text(&e)),
                    Err(_) => probe.on_timeout(),
                }
            }
            Io::Recv => {
                let Some(s) = stream.as_mut() else {
                    probe.on_io_error("not connected");
                    continue;
                };
                match timeout_at(read_deadline, s.read(&mut buf)).await {
                    Ok(Ok(n)) => probe.on_data(&buf[..n]),
                    Ok(Err(e)) => probe.on_io_error(&os_error_text(&e)),
                    Err(_) => probe.on_timeout(),
                }
            }
        }
    }
}

/// Writes the PROXY header a check sends (HAProxy's for a connection of its own: v1 with the
/// connection's addresses, v2 `LOCAL`) when asked, then does the TLS handshake when asked. `None`
/// when either failed (the probe then holds its verdict).
async fn open<N: Net>(
    slot: &ServerSlot,
    mut stream: N::Stream,
    opening: Opening,
    limit: Instant,
    probe: &mut crate::server::check::Probe,
) -> Option<CheckConn<N::Stream>> {
    if opening.send_proxy {
        let version = slot.send_proxy.unwrap_or(crate::config::SendProxy::V1);
        let header = super::proxy_protocol::encode_check(version, N::stream_addrs(&stream));
        match timeout_at(limit, stream.write_all(&header)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                probe.on_io_error(&os_error_text(&e));
                return None;
            }
            Err(_) => {
                probe.on_timeout();
                return None;
            }
        }
    }
    secure(slot, stream, &opening, limit, probe).await
}

/// The connection a check goes on with: `stream` itself, or (`tls`) wrapped in the server's
/// TLS session once the handshake is done by `limit`. `None` when the handshake failed or timed
/// out (the probe then holds its verdict).
async fn secure<S>(
    slot: &ServerSlot,
    stream: S,
    opening: &Opening,
    limit: Instant,
    probe: &mut crate::server::check::Probe,
) -> Option<CheckConn<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if !opening.tls {
        return Some(CheckConn::Plain(stream));
    }
    let Some(client) = slot.check_tls.as_deref() else {
        probe.on_handshake_error("the server has no check TLS settings");
        return None;
    };
    match timeout_at(limit, handshake(client, &opening.sni, stream)).await {
        Ok(Ok(conn)) => {
            probe.on_handshake_done();
            Some(conn)
        }
        Ok(Err(e)) => {
            probe.on_handshake_error(&e);
            None
        }
        Err(_) => {
            probe.on_timeout();
            None
        }
    }
}

/// Where a connect goes: the check's `address`, with a connect rule's `ip` and `port` in place
/// of its own. A unix socket has no port: a rule's port alone checks the socket itself.
fn check_target(address: &str, ip: Option<std::net::IpAddr>, port: Option<u16>) -> String {
    let own_port = (address.rsplit_once(':')).and_then(|(_, p)| p.parse::<u16>().ok());
    let unix = crate::config::is_unix_address(address);
    match (ip, port.or(own_port)) {
        (Some(ip), Some(p)) => std::net::SocketAddr::new(ip, p).to_string(),
        _ if unix => address.to_string(),
        (_, Some(p)) => match address.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{p}"),
            None => address.to_string(),
        },
        _ => address.to_string(),
    }
}

/// How long a check of `server` waits for its connection.
pub fn check_timeout(backend: &Backend, server: ServerId) -> Duration {
    backend.servers[server.index()]
        .health
        .check_connect_timeout(backend.timeouts.connect, backend.timeouts.check)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::affinity::Route;
    use crate::config;

    use crate::engine::runtime::build;
    use crate::engine::testnet::{quiet, MemNet};
    use crate::server::OperState;

    /// Backend `app` with one checked server `s1` on 10.0.0.1:80; `extra` adds backend keys.
    fn backend(extra: &str) -> Arc<Backend> {
        let text = format!(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n{extra}\n\
             [backend.check]\ninter = \"2s\"\nrise = 2\nfall = 3\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\n"
        );
        let config = config::load_toml("test.toml", &text).expect("test config loads");
        build(&config, None).unwrap().backends["app"].clone()
    }

    fn oper(be: &Backend) -> OperState {
        be.server_states()[0].oper
    }

    /// Runs checks on a blackholed server until the first result and returns it.
    async fn first_timeout(extra: &str) -> LastCheck {
        let net = MemNet::default();
        net.blackhole("10.0.0.1:80", true);
        let be = backend(extra);
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(net, be.clone(), ServerId(0), quiet(), rx));
        tokio::time::sleep(Duration::from_secs(20)).await;
        let last = be.servers[0].last_check.lock().unwrap().clone();
        last.expect("a check ran")
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_times_out_after_inter_without_timeout_check() {
        let last = first_timeout("timeout-connect = \"5s\"").await;
        assert_eq!(last.status, "L4TOUT");
        assert_eq!(
            last.duration,
            Duration::from_secs(2),
            "inter, not timeout connect"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_check_bounds_the_connect_by_timeout_connect() {
        let last = first_timeout("timeout-connect = \"500ms\"\ntimeout-check = \"10s\"").await;
        assert_eq!(last.status, "L4TOUT");
        assert_eq!(last.duration, Duration::from_millis(500));
        let last = first_timeout("timeout-connect = \"5s\"\ntimeout-check = \"10s\"").await;
        assert_eq!(last.duration, Duration::from_secs(2), "min(connect, inter)");
    }

    #[tokio::test(start_paused = true)]
    async fn down_after_fall_failures_up_after_rise_successes() {
        let net = MemNet::default();
        let be = backend("");
        let (stop, rx) = watch::channel(false);
        let server = net.server("10.0.0.1:80", "s1").await;
        let checks = tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        // Checks every 2 s, each passing at once.
        tokio::time::sleep(Duration::from_millis(4100)).await;
        assert_eq!(net.connects("10.0.0.1:80"), 2);
        assert_eq!(oper(&be), OperState::Up);
        server.abort();
        let _ = server.await;
        // Refused: three failures (2 s apart) take it DOWN, not two.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(oper(&be), OperState::Up, "down before fall = 3");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(oper(&be), OperState::Down);
        assert_eq!(
            be.servers[0]
                .counters
                .check_failures
                .load(Ordering::Relaxed),
            3
        );
        let last = be.servers[0].last_check.lock().unwrap().clone().unwrap();
        assert_eq!(last.status, "L4CON");
        let _server = net.server("10.0.0.1:80", "s1").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(oper(&be), OperState::Down, "up before rise = 2");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(oper(&be), OperState::Up);
        stop.send(true).unwrap();
        checks.await.unwrap();
    }

    /// HAProxy 2.6's maintenance: no checks while in it; leaving it, the server is UP at once
    /// whatever its checks said before, and checked at once, so a dead one goes DOWN on that
    /// first failure.
    #[tokio::test(start_paused = true)]
    async fn checks_pause_in_maintenance_and_leaving_it_starts_up_and_checks_at_once() {
        use crate::server::AdminState;
        let net = MemNet::default();
        let be = backend("");
        let (stop, rx) = watch::channel(false);
        let server = net.server("10.0.0.1:80", "s1").await;
        let checks = tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        let connects = || net.connects("10.0.0.1:80");
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(6100)).await;
        assert_eq!((connects(), oper(&be)), (3, OperState::Down));
        be.set_admin(ServerId(0), Some(AdminState::Maint), None);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(connects(), 3, "no check in maintenance");
        let server = net.server("10.0.0.1:80", "s1").await;
        be.set_admin(ServerId(0), Some(AdminState::Ready), None);
        assert_eq!(oper(&be), OperState::Up, "UP on leaving maintenance");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            (connects(), oper(&be)),
            (4, OperState::Up),
            "checked at once"
        );
        server.abort();
        let _ = server.await;
        be.set_admin(ServerId(0), Some(AdminState::Maint), None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        be.set_admin(ServerId(0), Some(AdminState::Ready), None);
        assert_eq!(oper(&be), OperState::Up);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(connects(), 5);
        assert_eq!(
            oper(&be),
            OperState::Down,
            "one failure after leaving: DOWN"
        );
        stop.send(true).unwrap();
        checks.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn slowstart_ramps_the_weight_of_a_server_back_from_down_but_not_at_start() {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"2s\"\nrise = 2\nfall = 3\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\nweight = 100\nslowstart = \"10s\"\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        let be = build(&config, None).unwrap().backends["app"].clone();
        let weight = |be: &Backend| be.server_states()[0].effective_weight();
        assert_eq!(weight(&be), 100, "slowstart never applies at start");
        let net = MemNet::default();
        let (stop, rx) = watch::channel(false);
        let server = net.server("10.0.0.1:80", "s1").await;
        let checks = tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(6100)).await;
        assert_eq!(oper(&be), OperState::Down);
        let _server = net.server("10.0.0.1:80", "s1").await;
        // Two passing checks (2 s apart) bring it back at 10.1 s, with the least weight.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        assert_eq!(oper(&be), OperState::Up);
        assert_eq!(weight(&be), 1, "back with the least weight");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let half = weight(&be);
        assert!(
            (45..=55).contains(&half),
            "halfway through the ramp: {half}"
        );
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert_eq!(weight(&be), 100, "full after slowstart");
        stop.send(true).unwrap();
        checks.await.unwrap();
    }

    /// Of `n` connections chosen (and released) by the balancer, how many went to `server`.
    fn share(be: &Backend, server: ServerId, n: u32) -> u32 {
        let mut hits = 0;
        for _ in 0..n {
            let chosen = be
                .choose(&Route::Balance, &[], None)
                .server
                .expect("a server");
            hits += u32::from(chosen == server);
            be.release(chosen);
        }
        hits
    }

    #[tokio::test(start_paused = true)]
    async fn slowstart_grows_the_returning_servers_share_of_new_connections() {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"2s\"\nrise = 2\nfall = 3\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\nweight = 100\nslowstart = \"10s\"\n\
             [[backend.server]]\nname = \"s2\"\naddress = \"10.0.0.2:80\"\nweight = 100\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        let be = build(&config, None).unwrap().backends["app"].clone();
        let s1 = ServerId(0);
        assert_eq!(share(&be, s1, 1000), 500, "even shares at start");
        let net = MemNet::default();
        let (stop, rx) = watch::channel(false);
        let server = net.server("10.0.0.1:80", "s1").await;
        let checks = tokio::spawn(check_server(net.clone(), be.clone(), s1, quiet(), rx));
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(6100)).await;
        assert_eq!(share(&be, s1, 1000), 0, "down: no share");
        let _server = net.server("10.0.0.1:80", "s1").await;
        tokio::time::sleep(Duration::from_millis(4000)).await;
        assert_eq!(oper(&be), OperState::Up);
        // Weight 1 of 101: about 1% of new connections.
        let first = share(&be, s1, 1010);
        assert!((5..=15).contains(&first), "just back: {first} of 1010");
        tokio::time::sleep(Duration::from_secs(5)).await;
        // About 50 of 150: a third.
        let half = share(&be, s1, 1500);
        assert!((450..=550).contains(&half), "halfway: {half} of 1500");
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert_eq!(share(&be, s1, 1000), 500, "even again after slowstart");
        stop.send(true).unwrap();
        checks.await.unwrap();
    }

    /// Serves `answer` to every connection on `addr`, sending what each request held to `seen`.
    async fn responder(
        net: &MemNet,
        addr: &str,
        answer: &'static [u8],
    ) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = net.bind(addr).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let net = net.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = net.accept(&listener).await {
                let mut buf = vec![0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(buf[..n].to_vec());
                let _ = s.write_all(answer).await;
            }
        });
        rx
    }

    /// Backend `app` with one server `s2` on 10.0.0.2:5432, HTTP-checked on `check_port`.
    fn http_backend(check_port: u16) -> Arc<Backend> {
        let text = format!(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"2s\"\n\
             [backend.check.protocol.http]\nuri = \"/primary\"\n\
             [[backend.server]]\nname = \"s2\"\naddress = \"10.0.0.2:5432\"\ncheck-port = {check_port}\n"
        );
        let config = config::load_toml("test.toml", &text).expect("test config loads");
        build(&config, None).unwrap().backends["app"].clone()
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_check_on_the_check_port_takes_a_503_server_down_with_l7sts() {
        let net = MemNet::default();
        let mut seen = responder(
            &net,
            "10.0.0.2:8008",
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
        )
        .await;
        let be = http_backend(8008);
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            seen.recv().await.unwrap(),
            b"OPTIONS /primary HTTP/1.0\r\n\r\n"
        );
        let last = be.servers[0].last_check.lock().unwrap().clone().unwrap();
        assert_eq!((last.status, last.code), ("L7STS", Some(503)));
        assert_eq!(last.info.as_deref(), Some("Service Unavailable"));
        assert_eq!(
            be.server_states()[0].oper,
            OperState::Down,
            "first failure of a never-checked server"
        );
        assert_eq!(
            be.servers[0].counters.check_downs.load(Ordering::Relaxed),
            1
        );
        assert!(be.servers[0].last_change.lock().unwrap().is_some());
        assert_eq!(
            net.connects("10.0.0.2:5432"),
            0,
            "checks go to the check port only"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_200_keeps_the_server_up_with_l7ok() {
        let net = MemNet::default();
        let _seen = responder(&net, "10.0.0.2:8008", b"HTTP/1.1 200 OK\r\n\r\n").await;
        let be = http_backend(8008);
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(4100)).await;
        let last = be.servers[0].last_check.lock().unwrap().clone().unwrap();
        assert_eq!(
            (last.status, last.code, last.desc),
            ("L7OK", Some(200), "Layer7 check passed")
        );
        assert_eq!(be.server_states()[0].oper, OperState::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_http_server_is_l7tout_after_inter() {
        let net = MemNet::default();
        let listener = net.bind("10.0.0.2:8008").await.unwrap();
        let keep = net.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = keep.accept(&listener).await {
                held.push(s);
            }
        });
        let be = http_backend(8008);
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let last = be.servers[0].last_check.lock().unwrap().clone().unwrap();
        assert_eq!(
            (last.status, last.duration),
            ("L7TOUT", Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn downinter_spaces_checks_of_a_down_server() {
        let net = MemNet::default();
        let be = {
            let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
                 [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"2s\"\ndowninter = \"10s\"\n\
                 fastinter = \"500ms\"\n[[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\n";
            let config = config::load_toml("test.toml", text).expect("test config loads");
            build(&config, None).unwrap().backends["app"].clone()
        };
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        // Never checked: counter between the extremes, so the first check comes after fastinter.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(net.connects("10.0.0.1:80"), 1);
        assert_eq!(oper(&be), OperState::Down, "refused");
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(net.connects("10.0.0.1:80"), 1, "downinter, not inter");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(net.connects("10.0.0.1:80"), 2);
    }

    /// A self-signed certificate for `name` (its own CA, as HAProxy's `ca-file` can hold it).
    fn cert(name: &str) -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap()
    }

    /// A TLS server on `addr` with `cert`, answering `answer` to the first request of each
    /// connection.
    async fn tls_responder(
        net: &MemNet,
        addr: &str,
        cert: &rcgen::CertifiedKey,
        answer: &'static [u8],
    ) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = net.bind(addr).await.unwrap();
        let net = net.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = net.accept(&listener).await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 512];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(answer).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    }

    /// Backend `app`: server `cp1` on 10.0.0.3:6443, `GET /healthz` over TLS with `tls` (a TOML
    /// inline table); `ca` is the content of `ca.pem`.
    fn tls_backend(tls: &str, ca: Option<&str>) -> Arc<Backend> {
        let text = format!(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"2s\"\nrise = 1\nfall = 1\n\
             [backend.check.protocol.http]\nmethod = \"GET\"\nuri = \"/healthz\"\n\
             [[backend.server]]\nname = \"cp1\"\naddress = \"10.0.0.3:6443\"\ncheck-tls = {tls}\n"
        );
        let config = config::load_toml("test.toml", &text).expect("test config loads");
        let mut cas = crate::server::check::CaFiles::default();
        if let Some(pem) = ca {
            cas.insert("ca.pem", pem.as_bytes().to_vec());
        }
        crate::engine::runtime::build_with_cas(&config, None, 0, &cas)
            .unwrap()
            .backends["app"]
            .clone()
    }

    /// The first check's result of `be`'s server.
    async fn first_check(net: MemNet, be: &Arc<Backend>) -> LastCheck {
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(net, be.clone(), ServerId(0), quiet(), rx));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let last = be.servers[0].last_check.lock().unwrap().clone();
        last.expect("a check ran")
    }

    #[tokio::test(start_paused = true)]
    async fn an_https_check_verified_against_its_ca_is_l7ok_and_a_503_l7sts() {
        let server = cert("api.internal");
        for (answer, want, up) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], ("L7OK", Some(200)), true),
            (
                b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
                ("L7STS", Some(503)),
                false,
            ),
        ] {
            let net = MemNet::default();
            tls_responder(&net, "10.0.0.3:6443", &server, answer).await;
            let be = tls_backend(
                "{ verify = \"required\", ca-file = \"ca.pem\", verifyhost = \"api.internal\" }",
                Some(&server.cert.pem()),
            );
            let last = first_check(net, &be).await;
            assert_eq!((last.status, last.code), want, "{last:?}");
            assert_eq!(be.server_states()[0].oper == OperState::Up, up);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_certificate_from_another_ca_or_for_another_name_fails_the_handshake_l6rsp() {
        let server = cert("api.internal");
        let other = cert("api.internal");
        for (tls, ca, why) in [
            // Same subject, another key: the signature does not verify.
            ("{ ca-file = \"ca.pem\" }", other.cert.pem(), "BadSignature"),
            (
                "{ ca-file = \"ca.pem\", verifyhost = \"db.internal\" }",
                server.cert.pem(),
                "not valid for name \"db.internal\"",
            ),
            (
                "{ ca-file = \"ca.pem\", sni = \"db.internal\", verifyhost = \"api.internal\" }",
                server.cert.pem(),
                "not valid for name \"db.internal\"",
            ),
        ] {
            let net = MemNet::default();
            tls_responder(&net, "10.0.0.3:6443", &server, b"HTTP/1.1 200 OK\r\n\r\n").await;
            let last = first_check(net, &tls_backend(tls, Some(&ca))).await;
            assert_eq!(last.status, "L6RSP", "{tls}: {last:?}");
            let info = last.info.unwrap_or_default();
            assert!(
                info.starts_with("SSL handshake failure") && info.contains(why),
                "{tls}: {info}"
            );
        }
        // Without a name to match (no sni, no verifyhost) HAProxy checks the chain only.
        let net = MemNet::default();
        tls_responder(&net, "10.0.0.3:6443", &server, b"HTTP/1.1 200 OK\r\n\r\n").await;
        let be = tls_backend("{ ca-file = \"ca.pem\" }", Some(&server.cert.pem()));
        assert_eq!(first_check(net, &be).await.status, "L7OK");
        // verify none: any certificate.
        let net = MemNet::default();
        tls_responder(&net, "10.0.0.3:6443", &other, b"HTTP/1.1 200 OK\r\n\r\n").await;
        let be = tls_backend("{ verify = \"none\" }", None);
        assert_eq!(first_check(net, &be).await.status, "L7OK");
    }

    #[tokio::test(start_paused = true)]
    async fn a_plain_server_is_l6rsp_and_a_silent_one_l6tout() {
        let net = MemNet::default();
        let _seen = responder(&net, "10.0.0.3:6443", b"HTTP/1.1 200 OK\r\n\r\n").await;
        let last = first_check(net, &tls_backend("{ verify = \"none\" }", None)).await;
        assert_eq!(last.status, "L6RSP", "{last:?}");
        let net = MemNet::default();
        let listener = net.bind("10.0.0.3:6443").await.unwrap();
        let keep = net.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = keep.accept(&listener).await {
                held.push(s);
            }
        });
        let be = tls_backend("{ verify = \"none\" }", None);
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(net, be.clone(), ServerId(0), quiet(), rx));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let last = be.servers[0].last_check.lock().unwrap().clone().unwrap();
        assert_eq!(
            (last.status, last.duration),
            ("L6TOUT", Duration::from_secs(2))
        );
    }

    #[test]
    fn a_ca_file_not_handed_to_the_build_is_a_build_error() {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check.tls]\nca-file = \"/etc/ca.pem\"\n\
             [[backend.server]]\nname = \"cp1\"\naddress = \"10.0.0.3:6443\"\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        let e = build(&config, None).unwrap_err().to_string();
        assert!(
            e.contains("server cp1") && e.contains("/etc/ca.pem was not read"),
            "{e}"
        );
    }
}
