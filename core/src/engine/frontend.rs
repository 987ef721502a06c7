//! A frontend at run time: where clients arrive and how their first bytes are inspected.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::router::Router;

/// A frontend: listening address, inspection limits, client timeout and its backend.
#[derive(Debug)]
pub struct Frontend {
    /// Frontend name (`%ft` in logs).
    pub name: Arc<str>,
    /// Listening address, `"host:port"`.
    pub bind: String,
    /// Expect a PROXY protocol v1/v2 header first (from a trusted L4 balancer or the simulator).
    pub accept_proxy: bool,
    /// Longest wait for the ClientHello, from the first wait (HAProxy: not sliding).
    pub inspect_delay: Duration,
    /// Most bytes buffered while inspecting; reaching it makes the evaluation final.
    pub inspect_cap: usize,
    /// Idle time allowed waiting on the client.
    pub timeout_client: Duration,
    /// Idle time allowed on the client once its write side is shut (HAProxy `timeout client-fin`).
    pub timeout_client_fin: Option<Duration>,
    /// SO_KEEPALIVE on accepted connections (HAProxy `option clitcpka`).
    pub tcp_keepalive: bool,
    /// Connections whose client sent nothing are not logged (HAProxy `option dontlognull`).
    pub dont_log_null: bool,
    /// Accept only once the client's first bytes are there (`TCP_DEFER_ACCEPT`).
    pub defer_accept: bool,
    /// Most concurrent connections on this frontend (accepting pauses at the limit).
    pub maxconn: Option<usize>,
    /// The default backend: where connections go that no route rule sends elsewhere.
    pub backend: Arc<Backend>,
    /// The address clients reach (the bind address; `destination` tests, `dst_port`).
    pub destination: SocketAddr,
    /// The frontend's route rules, if it has any.
    pub router: Option<Arc<Router>>,
    /// Connections a route rule refused at accept, on addresses alone (HAProxy `dcon`).
    pub denied_connections: AtomicU64,
    /// Connections a route rule refused after inspection (HAProxy `dreq`).
    pub denied_requests: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections currently open (`%fc`).
    pub current: AtomicU64,
}

impl Frontend {
    /// A frontend with HAProxy-like defaults for everything but its name, address and backend.
    pub fn new(name: impl Into<Arc<str>>, bind: impl Into<String>, backend: Arc<Backend>) -> Self {
        Frontend {
            name: name.into(),
            bind: bind.into(),
            accept_proxy: false,
            inspect_delay: Duration::from_secs(5),
            inspect_cap: crate::tls::DEFAULT_HELLO_CAP,
            timeout_client: Duration::from_secs(60),
            timeout_client_fin: None,
            tcp_keepalive: false,
            dont_log_null: false,
            defer_accept: false,
            maxconn: None,
            backend,
            router: None,
            destination: SocketAddr::from(([0, 0, 0, 0], 0)),
            denied_connections: AtomicU64::new(0),
            denied_requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            current: AtomicU64::new(0),
        }
    }
}
