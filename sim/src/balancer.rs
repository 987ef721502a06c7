//! The seam between the simulator and the balancer under test.
//!
//! The simulator runs the balancer as the software of one turmoil host. tether's engine plugs in
//! here (it will run `tether_core::engine` over turmoil sockets); until then, and as the
//! no-affinity baseline, [`RoundRobinRelay`] is a plain TCP relay. Admin events (drain, maint,
//! ready, add, remove) reach the balancer through [`BalancerHost::admin`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::metrics::{AffinityCounts, SharedRecorder, TableTotals};
use crate::tls_server::TLS_PORT;

/// The balancer host's name in the simulation.
pub const BALANCER_HOST: &str = "lb";

/// Where a simulated server listens: its name (in reports and in the balancer's pool) and its
/// turmoil host and port. Servers that no event singles out share one host, each on its own
/// port, because turmoil's cost per step grows with the number of hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    /// Server name, e.g. `server-00`.
    pub name: String,
    /// turmoil host it runs on.
    pub host: String,
    /// Port it listens on (TLS, PROXY v2 accepted).
    pub port: u16,
}

impl ServerAddr {
    /// A server alone on its host, listening on [`TLS_PORT`].
    pub fn own_host(name: &str) -> Self {
        ServerAddr {
            name: name.to_owned(),
            host: name.to_owned(),
            port: TLS_PORT,
        }
    }

    /// `host:port`, as a balancer connects to it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Administrative state of a server in the balancer's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation.
    Ready,
    /// No new clients, affinity honoured.
    Drain,
    /// Out of rotation.
    Maint,
}

/// An operation on the balancer's pool, from a scenario event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admin {
    /// Change a server's admin state.
    SetState {
        /// Server name.
        server: String,
        /// New state.
        state: AdminState,
    },
    /// A new server joins.
    AddServer {
        /// The new server.
        server: ServerAddr,
    },
    /// A server leaves.
    RemoveServer {
        /// Server name.
        server: String,
    },
}

/// What the balancer's software gets when its host (re)starts.
#[derive(Clone)]
pub struct BalancerEnv {
    /// Port to listen on (0.0.0.0).
    pub listen_port: u16,
    /// Servers at start, in index order, each accepting PROXY v2.
    pub servers: Vec<ServerAddr>,
    /// Where to report table occupancy or other counters.
    pub recorder: SharedRecorder,
}

/// The software on the balancer host, as seen by the simulator.
pub trait BalancerHost {
    /// Name in the report.
    fn name(&self) -> String;
    /// The host software; called again on every balancer restart.
    fn software(&self, env: BalancerEnv) -> Pin<Box<dyn Future<Output = turmoil::Result>>>;
    /// Applies an admin operation (between simulation steps).
    fn admin(&self, op: &Admin);
    /// Stick-table entries, sampled each simulated minute, when the balancer has a table.
    fn table_occupancy(&self) -> Option<u64> {
        None
    }
    /// Stick-table counters so far (summed over tables, kept across balancer restarts).
    fn table_totals(&self) -> Option<TableTotals> {
        None
    }
    /// The balancer's own affinity outcomes, when it has any.
    fn affinity_counts(&self) -> Option<AffinityCounts> {
        None
    }
    /// Every stick-table entry as (table number and key bytes, server name), to compare the
    /// tables of several instances; `None` without tables.
    fn table_keys(&self) -> Option<Vec<(Vec<u8>, String)>> {
        None
    }
    /// Stick-table updates since the last call, as (table number and key, stored from traffic
    /// here rather than by a peer); empty when the balancer does not replicate.
    fn replication_updates(&self) -> Vec<(Vec<u8>, bool)> {
        Vec::new()
    }
    /// Servers the balancer currently considers DOWN (health checks), for trace mode.
    fn down_servers(&self) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Debug, Default)]
struct Pool {
    servers: Vec<(ServerAddr, AdminState)>,
    next: usize,
}

impl Pool {
    /// Up to `n` distinct Ready servers in round-robin order starting at the cursor.
    fn candidates(&mut self, n: usize) -> Vec<ServerAddr> {
        let len = self.servers.len();
        let start = self.next;
        let mut out = Vec::new();
        for i in 0..len {
            let (server, state) = &self.servers[(start + i) % len];
            if *state == AdminState::Ready {
                if out.is_empty() {
                    self.next = (start + i + 1) % len;
                }
                out.push(server.clone());
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }
}

/// A TCP relay that spreads connections round robin, redispatching on connect failure.
///
/// No TLS awareness and no affinity: the baseline that shows what affinity buys.
#[derive(Clone)]
pub struct RoundRobinRelay {
    pool: Rc<RefCell<Pool>>,
    connect_timeout: Duration,
    attempts: usize,
}

impl RoundRobinRelay {
    /// A relay with HAProxy-like defaults: 4 attempts (retries 3), each on another server.
    pub fn new(connect_timeout: Duration) -> Self {
        RoundRobinRelay {
            pool: Rc::default(),
            connect_timeout,
            attempts: 4,
        }
    }
}

impl BalancerHost for RoundRobinRelay {
    fn name(&self) -> String {
        "roundrobin-relay".to_owned()
    }

    fn software(&self, env: BalancerEnv) -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
        {
            let mut pool = self.pool.borrow_mut();
            if pool.servers.is_empty() {
                pool.servers = env
                    .servers
                    .iter()
                    .map(|s| (s.clone(), AdminState::Ready))
                    .collect();
            }
            // A restarted relay starts its rotation from the first server again.
            pool.next = 0;
        }
        let relay = self.clone();
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", env.listen_port)).await?;
            loop {
                let (client, _) = listener.accept().await?;
                let candidates = relay.pool.borrow_mut().candidates(relay.attempts);
                let timeout = relay.connect_timeout;
                tokio::task::spawn_local(async move {
                    let mut client = client;
                    for server in candidates {
                        let connect = tokio::time::timeout(
                            timeout,
                            crate::net::connect_tcp((server.host.as_str(), server.port)),
                        )
                        .await;
                        if let Ok(Ok(mut upstream)) = connect {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                    // No server reachable: the client sees its connection closed.
                });
            }
        })
    }

    fn admin(&self, op: &Admin) {
        let mut pool = self.pool.borrow_mut();
        match op {
            Admin::SetState { server, state } => {
                if let Some(s) = pool.servers.iter_mut().find(|(s, _)| s.name == *server) {
                    s.1 = *state;
                }
            }
            Admin::AddServer { server } => pool.servers.push((server.clone(), AdminState::Ready)),
            Admin::RemoveServer { server } => pool.servers.retain(|(s, _)| s.name != *server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_skips_unready_and_lists_alternatives() {
        let relay = RoundRobinRelay::new(Duration::from_secs(1));
        relay.pool.borrow_mut().servers = ["a", "b", "c"]
            .iter()
            .map(|s| (ServerAddr::own_host(s), AdminState::Ready))
            .collect();
        relay.admin(&Admin::SetState {
            server: "b".into(),
            state: AdminState::Drain,
        });
        let mut pool = relay.pool.borrow_mut();
        let mut names =
            |n| -> Vec<String> { pool.candidates(n).into_iter().map(|s| s.name).collect() };
        assert_eq!(names(4), vec!["a", "c"]);
        assert_eq!(names(1), vec!["c"]);
        assert_eq!(names(1), vec!["a"]);
    }
}
