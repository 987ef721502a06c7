//! One record per connection, written when it closes, and its two line formats.
//!
//! `tcplog` reproduces HAProxy's `option tcplog` layout (design.md §3) with the affinity outcome
//! appended, so existing log tooling keeps working; `json` carries the same fields by name; an
//! HAProxy `log-format` template is rendered by [`ConnectionRecord::render`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::termination::Termination;
use crate::affinity::{AffinityKey, AffinityOutcome, MatchOutcome};
use crate::config::{LogPart, LogTemplate, LogVar};

/// What a log line carries beyond the record: the wall-clock accept date (the daemon's to read,
/// never the engine's) and the process's identity.
#[derive(Clone, Copy, Debug)]
pub struct LineContext<'a> {
    /// `%t`: `25/Nov/2026:14:47:05.968`.
    pub accept_date: &'a str,
    /// `%Ts`: Unix seconds.
    pub accept_unix: u64,
    /// `%H`.
    pub hostname: &'a str,
    /// `%pid`.
    pub pid: u32,
}

/// Everything known about a connection when it ends.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRecord {
    /// The client's address (from the PROXY header when there is one).
    pub client: SocketAddr,
    /// Frontend name.
    pub frontend: Arc<str>,
    /// Backend name.
    pub backend: Arc<str>,
    /// Server name; `None` logs as `<NOSRV>`.
    pub server: Option<Arc<str>>,
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
            Escaped(&self.frontend),
            Escaped(&self.backend),
            Escaped(server),
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

    /// The line an HAProxy `log-format` template describes. String fields are escaped as in
    /// [`ConnectionRecord::tcplog`]: a client cannot forge a line through its server name.
    pub fn render(&self, template: &LogTemplate, at: &LineContext<'_>) -> String {
        let mut s = String::with_capacity(template.text().len() + 64);
        for part in template.parts() {
            match part {
                LogPart::Literal(text) => s.push_str(text),
                LogPart::Var { var, quoted } => {
                    if *quoted {
                        s.push('"');
                    }
                    self.push_var(&mut s, *var, at);
                    if *quoted {
                        s.push('"');
                    }
                }
            }
        }
        s
    }

    fn push_var(&self, s: &mut String, var: LogVar, at: &LineContext<'_>) {
        let number = match var {
            LogVar::ClientIp => {
                let _ = write!(s, "{}", self.client.ip());
                return;
            }
            LogVar::Frontend => return push_escaped(s, &self.frontend),
            LogVar::Backend => return push_escaped(s, &self.backend),
            LogVar::Server => return push_escaped(s, self.server.as_deref().unwrap_or("<NOSRV>")),
            LogVar::AcceptDate => return s.push_str(at.accept_date),
            LogVar::Hostname => return push_escaped(s, at.hostname),
            LogVar::Sni => return push_escaped(s, self.sni.as_deref().unwrap_or("-")),
            LogVar::Termination => {
                let _ = write!(s, "{}", self.termination);
                return;
            }
            LogVar::Retries => {
                if self.redispatched {
                    s.push('+');
                }
                i128::from(self.retries)
            }
            LogVar::ClientPort => i128::from(self.client.port()),
            LogVar::AcceptUnix => i128::from(at.accept_unix),
            LogVar::Tw => i128::from(self.tw_ms),
            LogVar::Tc => i128::from(self.tc_ms),
            LogVar::Tt => i128::from(self.tt_ms),
            LogVar::BytesDown => i128::from(self.bytes_down),
            LogVar::BytesUp => i128::from(self.bytes_up),
            LogVar::ActConn => i128::from(self.actconn),
            LogVar::FeConn => i128::from(self.feconn),
            LogVar::BeConn => i128::from(self.beconn),
            LogVar::SrvConn => i128::from(self.srvconn),
            LogVar::SrvQueue | LogVar::BeQueue => 0,
            LogVar::Pid => i128::from(at.pid),
        };
        let _ = write!(s, "{number}");
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

    /// A line about the process rather than a connection (a health check's result or a
    /// server's state change), at its syslog severity, for the log targets. The engine has
    /// already traced it; the default drops it.
    fn event(&self, severity: crate::config::log::Severity, line: &str) {
        let _ = (severity, line);
    }
}

/// Appends a client-supplied name with control characters, spaces and backslashes written as
/// `\xNN`, so a hostile server name cannot forge or split a log line.
fn push_escaped(out: &mut String, text: &str) {
    let _ = write!(out, "{}", Escaped(text));
}

/// A name or client-sent text as a log field: control bytes, spaces and backslashes as `\xNN`,
/// so no value can end a line or split a field.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || c == ' ' || c == '\\' {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "\\x{b:02x}")?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
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

    fn record() -> ConnectionRecord {
        ConnectionRecord {
            client: "192.0.2.7:51234".parse().unwrap(),
            frontend: "fe".into(),
            backend: "be".into(),
            server: Some("s\n2".into()),
            tw_ms: 3,
            tc_ms: 1,
            tt_ms: 250,
            bytes_down: 4096,
            bytes_up: 517,
            termination: Termination::NORMAL,
            actconn: 9,
            feconn: 8,
            beconn: 7,
            srvconn: 6,
            retries: 1,
            redispatched: true,
            matched: MatchOutcome::MissUnknown,
            affinity: AffinityOutcome::MissUnknown,
            key: None,
            learned: 0,
            resumed: None,
            tls_version: None,
            sni: Some("api.example".into()),
            route: None,
            refused: false,
        }
    }

    /// HAProxy's own definition of `option tcplog`, as a `log-format` template, renders the
    /// same fields as tether's tcplog line (which appends the affinity outcome).
    #[test]
    fn haproxys_tcplog_template_renders_as_the_tcplog_line() {
        let rec = record();
        let date = "25/Nov/2026:14:47:05.968";
        let at = LineContext {
            accept_date: date,
            accept_unix: 1_795_625_225,
            hostname: "lb1",
            pid: 42,
        };
        let t: LogTemplate =
            "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq"
                .parse()
                .unwrap();
        let line = rec.render(&t, &at);
        assert_eq!(
            line,
            "192.0.2.7:51234 [25/Nov/2026:14:47:05.968] fe be/s\\x0a2 3/1/250 4096 -- \
             9/8/7/6/+1 0/0"
        );
        assert!(rec.tcplog(date).starts_with(&format!("{line} affinity=")));
        let t: LogTemplate = "%H[%pid] %Ts %U %{+Q}[req.ssl_sni]".parse().unwrap();
        assert_eq!(
            rec.render(&t, &at),
            "lb1[42] 1795625225 517 \"api.example\""
        );
    }
}
