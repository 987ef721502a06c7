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

/// Checks one server until `shutdown` turns true.
pub async fn check_server<N: Net>(
    net: N,
    backend: Arc<Backend>,
    server: ServerId,
    check_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &backend.servers[server.index()];
    let inter = slot.health.inter;
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
