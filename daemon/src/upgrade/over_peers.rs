//! The stick tables shared by a `[peers]` section go to the new process over HAProxy's peers
//! protocol, as HAProxy's old process teaches the new one on a reload: the old process
//! connects to the new one's peers address under the local peer name, pushes every live entry
//! and waits for "resync finished" to be confirmed.
//!
//! The peers address is bound by one process at a time: the old one releases it before starting
//! the new one (remote peers reconnect within their retry delay), and takes it back if the
//! upgrade is abandoned.

use std::time::Duration;

use tether_core::config::peers::PeersSection;
use tether_core::engine::peers::{push_all, runtime_tables, PeersError, PeersService};
use tether_core::engine::runtime::Runtime;
use tether_core::engine::Clock;

use crate::net::TokioNet;

/// How long the push may take, confirmation included.
const PUSH_WAIT: Duration = Duration::from_secs(10);

/// Stops the peers service and waits (at most a second) until its address can be bound again,
/// so the new process can bind it.
pub async fn release(service: PeersService, section: &PeersSection) {
    let addr = service.local_addr();
    drop(service);
    let Some(addr) = addr else { return };
    for _ in 0..100 {
        if std::net::TcpListener::bind(addr).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(section = %section.name, %addr, "upgrade: the peers address is still bound");
}

/// Pushes the tables of `runtime` shared by `section` to the new process's peers service
/// and returns how many entries went; `None` when the section has no address to push to.
pub async fn push(
    section: &PeersSection,
    runtime: &Runtime,
    clock: Clock,
) -> Option<Result<u64, PeersError>> {
    let address = section.bind.as_deref()?;
    let tables = runtime_tables(runtime, &section.name);
    let local = section.local.as_str();
    Some(push_all(&TokioNet, address, local, local, tables, clock, PUSH_WAIT).await)
}
