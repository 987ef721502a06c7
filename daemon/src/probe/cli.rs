//! The `tether probe` command line: options, the human table, JSON, and the `--expect` exit code.
//! This is the only part of the probe that prints.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use tether_core::config::parse_duration_with_unit;

use super::report::{ConnectionReport, Identify, Mechanism, ProbeReport};
use super::{expect_sticky, probe, ProbeError, ProbeOptions, Request};

/// `tether probe ADDR`: check session affinity through a balancer, like rfc5077-client.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The balancer (or server) to probe, as host:port.
    pub target: String,
    /// Only probe mechanisms of this TLS version.
    #[arg(long, value_enum)]
    pub tls: Option<TlsVersionArg>,
    /// Which resumption mechanism(s) to exercise.
    #[arg(long, value_enum, default_value = "all")]
    pub mechanism: MechanismArg,
    /// Reconnections after the first connection, each presenting the previous session.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Server name (SNI) to send; default: the target's host name (none for an IP).
    #[arg(long)]
    pub sni: Option<String>,
    /// Independent clients per mechanism, to show how first connections spread.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero unless the expectation holds.
    #[arg(long, value_enum)]
    pub expect: Option<ExpectArg>,
    /// Per-connection timeout (connect, handshake, first answer), e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub timeout: Duration,
    /// How long to wait for the server's first answer after the handshake.
    #[arg(long, default_value = "300ms", value_parser = positive_duration)]
    pub linger: Duration,
    /// What to send after the handshake.
    #[arg(long, value_enum, default_value = "http")]
    pub request: RequestArg,
    /// How to tell backends apart: by certificate, or by the first line they send.
    #[arg(long, value_enum, default_value = "certificate")]
    pub identify: IdentifyArg,
}

/// `--tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersionArg {
    /// TLS 1.2: session-id and ticket.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3: psk.
    #[value(name = "1.3")]
    Tls13,
}

/// `--mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MechanismArg {
    /// TLS 1.2 session ID, tickets off.
    SessionId,
    /// TLS 1.2 RFC 5077 ticket.
    Ticket,
    /// TLS 1.3 PSK ticket.
    Psk,
    /// All three.
    All,
}

/// `--expect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectArg {
    /// Every reconnection reached the same backend and resumed.
    Sticky,
}

/// `--request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestArg {
    /// Send `GET / HTTP/1.0`.
    Http,
    /// Send nothing.
    None,
}

/// `--identify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdentifyArg {
    /// Certificate fingerprint.
    Certificate,
    /// First line the server sends.
    Banner,
}

impl ProbeArgs {
    /// The library options these arguments stand for.
    pub fn options(&self) -> Result<ProbeOptions, ProbeError> {
        let chosen: &[Mechanism] = match self.mechanism {
            MechanismArg::SessionId => &[Mechanism::SessionId],
            MechanismArg::Ticket => &[Mechanism::Ticket],
            MechanismArg::Psk => &[Mechanism::Psk],
            MechanismArg::All => &Mechanism::ALL,
        };
        let mechanisms: Vec<Mechanism> = chosen
            .iter()
            .copied()
            .filter(|m| match self.tls {
                None => true,
                Some(TlsVersionArg::Tls12) => !m.is_tls13(),
                Some(TlsVersionArg::Tls13) => m.is_tls13(),
            })
            .collect();
        if mechanisms.is_empty() {
            return Err(ProbeError::NoMechanism(format!(
                "--tls {} excludes --mechanism {}",
                if self.tls == Some(TlsVersionArg::Tls13) {
                    "1.3"
                } else {
                    "1.2"
                },
                chosen.first().map_or("?", |m| m.as_str())
            )));
        }
        Ok(ProbeOptions {
            target: self.target.clone(),
            sni: self.sni.clone(),
            mechanisms,
            reconnections: self.count,
            clients: self.clients,
            timeout: self.timeout,
            linger: self.linger,
            request: match self.request {
                RequestArg::Http => Request::Http,
                RequestArg::None => Request::None,
            },
            identify: match self.identify {
                IdentifyArg::Certificate => Identify::Certificate,
                IdentifyArg::Banner => Identify::Banner,
            },
        })
    }
}

/// Run `tether probe`: print the report; exit 1 when `--expect` is not met.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let report = probe(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    if args.expect == Some(ExpectArg::Sticky) {
        if let Err(not) = expect_sticky(&report) {
            eprintln!("tether probe: {not}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a timeout flag: "5s", "300ms", "2m" (the core's duration grammar, unit required) and
/// more than zero, since a zero timeout would fail every connection.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration_with_unit(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("{:?}: must be more than zero", text.trim()));
    }
    Ok(d)
}

/// The human-readable report: a row per connection, a verdict per mechanism.
pub fn render_table(report: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tether probe {} ({}), SNI {}, {} reconnection(s) x {} client(s)",
        report.target,
        report.address,
        report.sni.as_deref().unwrap_or("-"),
        report.reconnections,
        report.clients
    );
    for m in &report.mechanisms {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10} {:>3} {:>4}  {:<7}  {:<14}  {:<24}  {:<35}  {:<35}  {:>8}",
            "mechanism",
            "cli",
            "conn",
            "version",
            "handshake",
            "backend",
            "session id offered -> server",
            "ticket/psk offered -> issued",
            "time"
        );
        for chain in &m.chains {
            for c in &chain.connections {
                let _ = writeln!(out, "{}", row(m.mechanism, chain.client, c));
            }
        }
        let _ = writeln!(
            out,
            "{}: same backend {}/{}, resumed {}/{}, first connections on {} backend(s): {}",
            m.mechanism.as_str(),
            m.same_backend,
            m.reconnections,
            m.resumed,
            m.reconnections,
            m.initial_backends,
            m.verdict
        );
    }
    if !report.ticket_keys.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "ticket key names (first 16 bytes of each ticket):");
        for b in &report.ticket_keys {
            let _ = writeln!(out, "  {}", super::key_names::describe(b));
        }
    }
    out
}

fn row(mechanism: Mechanism, client: usize, c: &ConnectionReport) -> String {
    let dash = |v: &Option<String>| match v.as_deref() {
        None | Some("") => "-".to_string(),
        Some(s) => s.to_string(),
    };
    if let Some(error) = &c.error {
        return format!(
            "{:<10} {:>3} {:>4}  error: {error}",
            mechanism.as_str(),
            client,
            c.index
        );
    }
    let kind = match (c.resumed, c.resumed_by) {
        (true, Some(by)) => format!("resumed/{}", resumed_by_name(by)),
        (true, None) => "resumed".into(),
        (false, _) if c.session_offered => "full (refused)".into(),
        (false, _) => "full".into(),
    };
    let backend = c
        .backend
        .as_ref()
        .map(|b| {
            format!(
                "{} {}",
                b.name,
                &b.fingerprint[..b.fingerprint.len().min(8)]
            )
        })
        .unwrap_or_else(|| "-".into());
    let ticket_offered = c.offered_ticket.clone().or_else(|| c.offered_psk.clone());
    format!(
        "{:<10} {:>3} {:>4}  {:<7}  {:<14}  {:<24}  {:<35}  {:<35}  {:>6.1}ms",
        mechanism.as_str(),
        client,
        c.index,
        c.version.as_deref().unwrap_or("-"),
        kind,
        backend,
        format!(
            "{} -> {}",
            dash(&c.offered_session_id),
            dash(&c.server_session_id)
        ),
        format!("{} -> {}", dash(&ticket_offered), dash(&c.issued_ticket)),
        c.handshake_ms
    )
}

fn resumed_by_name(by: super::ResumedBy) -> &'static str {
    match by {
        super::ResumedBy::SessionId => "id",
        super::ResumedBy::Ticket => "ticket",
        super::ResumedBy::Psk => "psk",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    fn args(line: &[&str]) -> ProbeArgs {
        Cli::try_parse_from(std::iter::once("probe").chain(line.iter().copied()))
            .unwrap()
            .probe
    }

    #[test]
    fn tls_version_restricts_mechanisms() {
        let o = args(&["h:1", "--tls", "1.2"]).options().unwrap();
        assert_eq!(o.mechanisms, vec![Mechanism::SessionId, Mechanism::Ticket]);
        let o = args(&["h:1", "--tls", "1.3"]).options().unwrap();
        assert_eq!(o.mechanisms, vec![Mechanism::Psk]);
        assert!(args(&["h:1", "--tls", "1.3", "--mechanism", "session-id"])
            .options()
            .is_err());
    }

    #[test]
    fn options_carry_every_flag() {
        let a = args(&[
            "h:1",
            "--count",
            "7",
            "--clients",
            "3",
            "--sni",
            "app.test",
            "--timeout",
            "2s",
            "--linger",
            "50ms",
            "--request",
            "none",
            "--identify",
            "banner",
            "--expect",
            "sticky",
            "--json",
        ]);
        assert!(a.json);
        assert_eq!(a.expect, Some(ExpectArg::Sticky));
        let o = a.options().unwrap();
        assert_eq!((o.reconnections, o.clients), (7, 3));
        assert_eq!(o.sni.as_deref(), Some("app.test"));
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert_eq!(o.linger, Duration::from_millis(50));
        assert_eq!(o.request, Request::None);
        assert_eq!(o.identify, Identify::Banner);
    }

    #[test]
    fn durations() {
        assert_eq!(positive_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(positive_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(positive_duration("3").unwrap_err().contains("has no unit"));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("5x").is_err());
        assert!(positive_duration("").is_err());
        assert!(positive_duration("99999999999999999999999s").is_err());
    }
}
