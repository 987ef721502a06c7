//! One record per connection, written when it closes, and its two line formats.
//!
//! `tcplog` reproduces HAProxy's `option tcplog` layout (design.md §3) with the affinity outcome
//! appended, so existing log tooling keeps working; `json` carries the same fields by name.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Serialize;

use super::termination::Termination;
use crate::affinity::{AffinityKey, AffinityOutcome, MatchOutcome};

/// Everything known about a connection when it ends.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRecord {
    /// The client's address (from the PROXY header when there is one).
    pub client: SocketAddr,
    /// Frontend name.
    pub frontend: String,
    /// Backend name.
    pub backend: String,
    /// Server name; `None` logs as `<NOSRV>`.
    pub server: Option<String>,
    /// Milliseconds from accept to the end of inspection (HAProxy `%Tw` is queue time; tether
    /// reports inspection + queue here).
    pub tw_ms: u64,
    /// Milliseconds to connect to the server (`%Tc`), -1 if never connected.
    pub tc_ms: i64,
    /// Total milliseconds (`%Tt`).
    pub tt_ms: u64,
    /// Bytes sent to the client (`%B`).
    pub bytes_down: u64,
    /// Bytes received from the client.
    pub bytes_up: u64,
    /// HAProxy termination state (`--`, `SC`, `CD`, `cD`, `sD`, `CR`, `PR`...).
    pub termination: Termination,
    /// Process-wide active connections (`%ac`).
    pub actconn: u64,
    /// Frontend active connections (`%fc`).
    pub feconn: u64,
    /// Backend active connections (`%bc`).
    pub beconn: u64,
    /// Server active connections (`%sc`).
    pub srvconn: u64,
    /// Retries (`%rc`).
    pub retries: u32,
    /// A redispatch happened (`+` before `%rc`).
    pub redispatched: bool,
    /// What the stick-table lookups said.
    pub matched: MatchOutcome,
    /// The final affinity word.
    pub affinity: AffinityOutcome,
    /// The key kind that matched, if any.
    pub key: Option<AffinityKey>,
    /// Keys learned from this connection's server.
    pub learned: u32,
    /// Whether the server resumed the TLS session, when its hello says.
    pub resumed: Option<bool>,
    /// The negotiated TLS version, e.g. `0x0303`.
    pub tls_version: Option<u16>,
    /// The requested server name.
    pub sni: Option<String>,
    /// The route rule that decided (`3` or its name); `None` without rules or by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Whether a route rule refused the connection.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

impl ConnectionRecord {
    /// The HAProxy `option tcplog` line (without syslog header), plus tether's affinity fields.
    /// `accept_date` is `%t`, e.g. `25/Nov/2026:14:47:05.968`, supplied by the caller's wall clock.
    pub fn tcplog(&self, accept_date: &str) -> String {
        let mut s = String::with_capacity(160);
        let server = self.server.as_deref().unwrap_or("<NOSRV>");
        let _ = write!(
            s,
            "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{}{} 0/0 affinity={}",
            self.client.ip(),
            self.client.port(),
            accept_date,
            self.frontend,
            self.backend,
            server,
            self.tw_ms,
            self.tc_ms,
            self.tt_ms,
            self.bytes_down,
            self.termination,
            self.actconn,
            self.feconn,
            self.beconn,
            self.srvconn,
            if self.redispatched { "+" } else { "" },
            self.retries,
            self.affinity.label(),
        );
        if let Some(k) = self.key {
            let _ = write!(s, " key={k}");
        }
        if self.learned > 0 {
            let _ = write!(s, " learned={}", self.learned);
        }
        if let Some(r) = self.resumed {
            let _ = write!(s, " resumed={}", if r { "yes" } else { "no" });
        }
        if let Some(v) = self.tls_version {
            let _ = write!(s, " tls={}", tls_version_name(v));
        }
        if let Some(n) = &self.sni {
            s.push_str(" sni=");
            push_escaped(&mut s, n);
        }
        if let Some(r) = &self.route {
            s.push_str(" route=");
            push_escaped(&mut s, r);
        }
        if self.refused {
            s.push_str(" refused=yes");
        }
        s
    }

    /// The record as one JSON object.
    pub fn json(&self, accept_date: &str) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            date: &'a str,
            #[serde(flatten)]
            rec: &'a ConnectionRecord,
            termination_state: String,
            outcome: String,
        }
        serde_json::to_string(&Line {
            date: accept_date,
            rec: self,
            termination_state: self.termination.to_string(),
            outcome: self.affinity.label(),
        })
        .unwrap_or_default()
    }
}

fn tls_version_name(v: u16) -> &'static str {
    match v {
        0x0304 => "1.3",
        0x0303 => "1.2",
        0x0302 => "1.1",
        0x0301 => "1.0",
        _ => "other",
    }
}

/// Where finished connections go: the daemon writes log lines and updates stats, the simulator
/// counts outcomes.
pub trait LogSink: Send + Sync + 'static {
    /// Called once per connection, when it ends.
    fn record(&self, rec: &ConnectionRecord);
}

/// Appends a client-supplied name with control characters, spaces and backslashes written as
/// `\xNN`, so a hostile server name cannot forge or split a log line.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() || c == ' ' || c == '\\' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_server_name_cannot_forge_a_log_line() {
        let mut out = String::new();
        push_escaped(&mut out, "a.example\n1.2.3.4:5 [x] forged\u{7f} \\");
        assert_eq!(
            out,
            "a.example\\x0a1.2.3.4:5\\x20[x]\\x20forged\\x7f\\x20\\x5c"
        );
        assert!(!out.contains('\n') && !out.contains(' '));
    }
}
