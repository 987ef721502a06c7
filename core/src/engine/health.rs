//! Active health checks: a TCP connect every `inter`, fed into the core's rise/fall counter.
//!
//! The loop is here, not in the daemon, so the simulator checks servers exactly as production
//! does; transitions are logged with HAProxy's wording.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use super::backend::{Backend, LastCheck};
use super::net::Net;
use crate::server::Transition;
use crate::ServerId;

/// Checks one server until `shutdown` turns true (or its sender is gone). The check takes its
/// timeout from the server's and the backend's settings
/// ([`HealthConfig::check_connect_timeout`](crate::server::HealthConfig::check_connect_timeout)),
/// so every runner checks alike.
pub async fn check_server<N: Net>(
    net: N,
    backend: Arc<Backend>,
    server: ServerId,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &backend.servers[server.index()];
    let inter = slot.health.inter;
    let check_timeout = check_timeout(&backend, server);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = sleep(inter) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let t0 = Instant::now();
        let result = timeout(check_timeout, net.connect(&slot.address)).await;
        if let Ok(Err(e)) = &result {
            if crate::retry::local_exhaustion(e) {
                // Our own descriptors ran out: this says nothing about the server.
                tracing::debug!(backend = %backend.name, server = %slot.name, error = %e, "check skipped: local resources exhausted");
                continue;
            }
        }
        let (ok, info, status, error) = match result {
            Ok(Ok(_stream)) => (true, String::from("Layer4 check passed"), "L4OK", None),
            Ok(Err(e)) => (
                false,
                format!("Layer4 connection problem, info: \"{e}\""),
                "L4CON",
                Some(e.to_string()),
            ),
            Err(_) => (false, String::from("Layer4 timeout"), "L4TOUT", None),
        };
        *slot.last_check.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastCheck {
            status,
            duration: t0.elapsed(),
            at: Instant::now(),
            info: error,
        });
        if !ok {
            slot.counters
                .check_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(t) = backend.health_result(server, ok) {
            let states = backend.server_states();
            let up = states.iter().filter(|s| s.usable_for_balance()).count();
            let word = match t {
                Transition::Up => "UP",
                Transition::Down => "DOWN",
            };
            let msg = format!(
                "Server {}/{} is {word}, reason: {info}, check duration: {}ms. {up} active servers left.",
                backend.name,
                slot.name,
                t0.elapsed().as_millis()
            );
            match t {
                Transition::Up => tracing::info!(target: "tether::health", "{msg}"),
                Transition::Down => tracing::warn!(target: "tether::health", "{msg}"),
            }
        }
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
    use crate::config;
    use crate::engine::runtime::build;
    use crate::engine::testnet::MemNet;
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
        tokio::spawn(check_server(net, be.clone(), ServerId(0), rx));
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
        let checks = tokio::spawn(check_server(net.clone(), be.clone(), ServerId(0), rx));
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
}
