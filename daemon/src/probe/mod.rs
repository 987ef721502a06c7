//! `tether probe`: verify session affinity end to end, from the client's side.
//!
//! Like Vincent Bernat's rfc5077-client, for each resumption mechanism (TLS 1.2 session ID,
//! TLS 1.2 ticket, TLS 1.3 PSK) it opens one connection and then K reconnections, each presenting
//! the session its predecessor received, and reports which backend answered (by certificate) and
//! whether the handshake resumed. Behind a balancer with working affinity every reconnection lands
//! on the same backend and resumes; anything else is shown connection by connection.
//!
//! The library returns a [`ProbeReport`]; only [`cli::run`] prints.

pub mod certificate;
pub mod cli;
mod connection;
pub mod key_names;
pub mod recording;
pub mod report;
pub mod session_store;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::client::Tls12Resumption;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

pub use cli::{run, ProbeArgs};
pub use report::{
    BackendIdentity, ChainReport, ConnectionReport, Identify, Mechanism, MechanismReport,
    ProbeReport, ResumedBy, Verdict,
};

use session_store::ChainSessionStore;
use tether_core::server::check::verify::identifying_client;

/// Upper bound on reconnections per chain and on clients, so a typo cannot start a flood.
pub const MAX_COUNT: usize = 1000;

/// What the probe sends once the handshake is done, to make the server talk (and, in TLS 1.3,
/// deliver its tickets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Request {
    /// `GET / HTTP/1.0` with a Host header: HTTPS servers answer, echo servers echo.
    #[default]
    Http,
    /// Nothing: only listen for what the server sends on its own.
    None,
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `host:port` to connect to.
    pub target: String,
    /// Server name to send; defaults to the target's host when that is a name, none for an IP.
    pub sni: Option<String>,
    /// Mechanisms to exercise, in order.
    pub mechanisms: Vec<Mechanism>,
    /// Reconnections after the initial connection (K).
    pub reconnections: usize,
    /// Independent clients per mechanism, run one after another.
    pub clients: usize,
    /// Bound on each connection's connect, handshake and read.
    pub timeout: Duration,
    /// How long to wait for the server's first bytes after the handshake.
    pub linger: Duration,
    /// What to send after the handshake.
    pub request: Request,
    /// How to tell backends apart.
    pub identify: Identify,
}

impl ProbeOptions {
    /// All mechanisms, 5 reconnections, one client, 5 s timeout.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            sni: None,
            mechanisms: Mechanism::ALL.to_vec(),
            reconnections: 5,
            clients: 1,
            timeout: Duration::from_secs(5),
            linger: Duration::from_millis(300),
            request: Request::Http,
            identify: Identify::Certificate,
        }
    }

    /// Only these mechanisms.
    pub fn mechanisms(mut self, mechanisms: &[Mechanism]) -> Self {
        self.mechanisms = mechanisms.to_vec();
        self
    }

    /// K reconnections per chain.
    pub fn reconnections(mut self, k: usize) -> Self {
        self.reconnections = k;
        self
    }

    /// N clients per mechanism.
    pub fn clients(mut self, n: usize) -> Self {
        self.clients = n;
        self
    }
}

/// Why a probe could not run at all (failed connections are findings, reported, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The target is not `host:port` or does not resolve.
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The target resolved to no address.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// The SNI is not a valid DNS name.
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    /// The options select no mechanism (e.g. `--tls 1.3 --mechanism session-id`).
    #[error("no resumption mechanism selected: {0}")]
    NoMechanism(String),
    /// A count is zero or above [`MAX_COUNT`].
    #[error("{what} must be between {min} and {MAX_COUNT}, not {value}")]
    Count {
        /// Which option.
        what: &'static str,
        /// Smallest allowed.
        min: usize,
        /// What was given.
        value: usize,
    },
    /// rustls rejected the client configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// `--expect sticky` was not met.
#[derive(Debug, thiserror::Error)]
#[error("expected sticky and resuming, got: {0}")]
pub struct NotSticky(pub String);

/// Ok when every probed mechanism was sticky and resuming; otherwise the verdicts that were not.
pub fn expect_sticky(report: &ProbeReport) -> Result<(), NotSticky> {
    if report.is_sticky() {
        return Ok(());
    }
    let failures: Vec<String> = report
        .mechanisms
        .iter()
        .filter(|m| !m.verdict.is_sticky_and_resuming())
        .map(|m| format!("{}: {}", m.mechanism.as_str(), m.verdict))
        .collect();
    Err(NotSticky(if failures.is_empty() {
        "nothing probed".into()
    } else {
        failures.join("; ")
    }))
}

/// Run the probe: every mechanism, every client, K+1 connections each.
pub async fn probe(options: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    check_count("--count", options.reconnections, 1)?;
    check_count("--clients", options.clients, 1)?;
    if options.mechanisms.is_empty() {
        return Err(ProbeError::NoMechanism(
            "the TLS version restriction excludes every chosen mechanism".into(),
        ));
    }
    let address = resolve(&options.target).await?;
    let (server_name, sni) = server_name(&options.target, options.sni.as_deref())?;
    let mut mechanisms = Vec::with_capacity(options.mechanisms.len());
    for &mechanism in &options.mechanisms {
        let mut chains = Vec::with_capacity(options.clients);
        for client in 1..=options.clients {
            let connections =
                run_chain(mechanism, address, server_name.clone(), &sni, options).await?;
            chains.push(ChainReport::new(client, connections, options.identify));
        }
        let report = MechanismReport::new(mechanism, chains, options.identify);
        tracing::info!(mechanism = mechanism.as_str(), verdict = %report.verdict, "probe");
        mechanisms.push(report);
    }
    Ok(ProbeReport {
        target: options.target.clone(),
        address: address.to_string(),
        sni,
        reconnections: options.reconnections,
        clients: options.clients,
        identify: options.identify,
        ticket_keys: key_names::key_names(&mechanisms, options.identify),
        mechanisms,
    })
}

fn check_count(what: &'static str, value: usize, min: usize) -> Result<(), ProbeError> {
    if (min..=MAX_COUNT).contains(&value) {
        Ok(())
    } else {
        Err(ProbeError::Count { what, min, value })
    }
}

async fn resolve(target: &str) -> Result<SocketAddr, ProbeError> {
    let mut addrs =
        tokio::net::lookup_host(target)
            .await
            .map_err(|source| ProbeError::Resolve {
                target: target.to_string(),
                source,
            })?;
    addrs
        .next()
        .ok_or_else(|| ProbeError::NoAddress(target.to_string()))
}

/// The name rustls keys sessions on, and the SNI actually sent (none for an IP address).
fn server_name(
    target: &str,
    sni: Option<&str>,
) -> Result<(ServerName<'static>, Option<String>), ProbeError> {
    let host = match sni {
        Some(name) => name,
        None => target
            .rsplit_once(':')
            .map_or(target, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']'),
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| ProbeError::InvalidServerName(host.to_string()))?;
    let sent = matches!(name, ServerName::DnsName(_)).then(|| host.to_string());
    Ok((name, sent))
}

/// A client configuration for one chain: its own store and verifier (rustls only resumes
/// sessions made with the same verifier instance).
fn client_config(
    mechanism: Mechanism,
    store: Arc<ChainSessionStore>,
) -> Result<ClientConfig, ProbeError> {
    let mut config = identifying_client(mechanism.is_tls13())?;
    config.resumption = Resumption::store(store).tls12_resumption(match mechanism {
        Mechanism::SessionId => Tls12Resumption::SessionIdOnly,
        Mechanism::Ticket | Mechanism::Psk => Tls12Resumption::SessionIdOrTickets,
    });
    Ok(config)
}

async fn run_chain(
    mechanism: Mechanism,
    address: SocketAddr,
    server_name: ServerName<'static>,
    sni: &Option<String>,
    options: &ProbeOptions,
) -> Result<Vec<ConnectionReport>, ProbeError> {
    let store = Arc::new(ChainSessionStore::new());
    let connector = TlsConnector::from(Arc::new(client_config(mechanism, store.clone())?));
    let host = sni.clone().unwrap_or_else(|| address.ip().to_string());
    let mut connections = Vec::with_capacity(options.reconnections + 1);
    for index in 0..=options.reconnections {
        let report = connection::connect(
            index,
            address,
            server_name.clone(),
            &connector,
            &store,
            &host,
            options,
        )
        .await;
        tracing::debug!(
            mechanism = mechanism.as_str(),
            index,
            resumed = report.resumed,
            backend = report.backend.as_ref().map(|b| b.name.as_str()),
            error = report.error.as_deref(),
            "probe connection"
        );
        connections.push(report);
    }
    Ok(connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_follows_the_target_unless_given() {
        let (_, sni) = server_name("example.org:443", None).unwrap();
        assert_eq!(sni.as_deref(), Some("example.org"));
        let (name, sni) = server_name("127.0.0.1:443", None).unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)));
        assert_eq!(sni, None);
        let (_, sni) = server_name("127.0.0.1:443", Some("app.test")).unwrap();
        assert_eq!(sni.as_deref(), Some("app.test"));
        let (name, _) = server_name("[::1]:443", None).unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)));
        assert!(server_name("x:1", Some("bad name!")).is_err());
    }

    #[tokio::test]
    async fn bad_counts_and_empty_mechanisms_are_errors() {
        let o = ProbeOptions::new("127.0.0.1:1").reconnections(0);
        assert!(matches!(probe(&o).await, Err(ProbeError::Count { .. })));
        let o = ProbeOptions::new("127.0.0.1:1").clients(MAX_COUNT + 1);
        assert!(matches!(probe(&o).await, Err(ProbeError::Count { .. })));
        let o = ProbeOptions::new("127.0.0.1:1").mechanisms(&[]);
        assert!(matches!(probe(&o).await, Err(ProbeError::NoMechanism(_))));
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let o = ProbeOptions::new(addr.to_string())
            .mechanisms(&[Mechanism::SessionId])
            .reconnections(1);
        let report = probe(&o).await.unwrap();
        let m = report.mechanism(Mechanism::SessionId).unwrap();
        assert!(matches!(m.verdict, Verdict::Unreachable { failed: 2, .. }));
        assert!(expect_sticky(&report).is_err());
    }
}
