//! Health-check protocols, sans-IO: HAProxy's checks as small state machines that say what to
//! send and judge what comes back, with HAProxy's status codes.
//!
//! Every kind of check compiles to a [`Plan`], a list of [`Step`]s as HAProxy's `tcp-check`
//! rules are (`connect`, `send`, `expect`): `option httpchk` sends a request and expects a
//! status, `option redis-check` sends `PING` and expects `+PONG`, and so on, one file per
//! protocol. A [`Probe`] walks a plan: the caller (the engine's check task, over tokio or
//! turmoil) connects, writes and reads as the probe asks and feeds back what happened; the
//! probe ends with a [`Verdict`]. No socket and no clock here: timeouts come in as events.

pub mod agent;
mod expect;
pub mod http;
pub mod ldap;
pub mod mysql;
pub mod pgsql;
mod probe;
pub mod redis;
pub mod smtp;
pub mod ssl_hello;
mod status;
pub mod tcp;
pub mod tls;
pub mod verify;

pub use expect::{split_words, Expect, Judgement, Matcher, Outcome};
pub use http::HttpCheck;
pub use probe::{Io, Opening, Probe, Sni};
pub use status::{CheckStatus, Verdict};
pub use tcp::{ConnectStep, TcpStep};
pub use tls::{CaFiles, CheckTls, TlsClient, Verify};

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Most bytes kept of an answer (HAProxy's `tune.chksize` default): a server cannot make a
/// check hold more.
pub const MAX_RESPONSE: usize = 16384;

/// What a check does once connected (native `[backend.check] protocol`, HAProxy's `option
/// httpchk`, `option tcp-check`...). `connect` alone is HAProxy's default layer-4 check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum CheckProtocol {
    /// Connect and close (`L4OK`).
    #[default]
    Connect,
    /// `option httpchk` with `http-check send` / `expect`.
    Http(HttpCheck),
    /// `option tcp-check` with its rules.
    TcpCheck(TcpCheck),
    /// `option ssl-hello-chk`.
    SslHello,
    /// `option redis-check`.
    Redis,
    /// `option mysql-check [user U [post-41|pre-41]]`.
    Mysql(DbUser),
    /// `option pgsql-check user U`.
    Pgsql(DbUser),
    /// `option smtpchk [HELO|EHLO domain]`.
    Smtp(SmtpCheck),
    /// `option ldap-check`.
    Ldap,
}

/// `option tcp-check` rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TcpCheck {
    /// The rules; none means connect only.
    #[serde(default)]
    pub steps: Vec<TcpStep>,
}

/// The database user a MySQL or PostgreSQL check logs in as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DbUser {
    /// User name (required for PostgreSQL; for MySQL, absent checks the handshake only).
    #[serde(default)]
    pub user: String,
    /// MySQL: the pre-4.1 authentication packet (`pre-41`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre41: bool,
}

/// What an SMTP check greets with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpCheck {
    /// `HELO localhost` (HAProxy's default) or `EHLO mx.example`.
    #[serde(default = "default_greeting")]
    pub greeting: String,
}

fn default_greeting() -> String {
    "HELO localhost".into()
}

impl Default for SmtpCheck {
    fn default() -> Self {
        SmtpCheck {
            greeting: default_greeting(),
        }
    }
}

/// A check configuration that cannot run: what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct CheckError {
    /// What is wrong.
    pub what: String,
    /// What to write instead.
    pub fix: String,
}

impl CheckError {
    /// An error with its fix.
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> CheckError {
        CheckError {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// One step of a check.
#[derive(Debug, Clone)]
pub enum Step {
    /// Connect (again).
    Connect(Connect),
    /// Write these bytes.
    Send(Vec<u8>),
    /// Judge the bytes received since the last send.
    Expect(Expect),
}

/// How a connect step connects. HAProxy's own connects (the implicit first one, those of its
/// built-in checks, `tcp-check connect default`) take the server's check settings: `check-ssl`
/// with its `check-sni`, and the PROXY header of `check-send-proxy` (or of `send-proxy` when
/// checks go to the server's own address); a `tcp-check connect` written out takes only what it
/// says (`ssl`, `sni`, `send-proxy`), as HAProxy 2.6's `tcpcheck_eval_connect` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    /// Port instead of the check port.
    pub port: Option<u16>,
    /// Address instead of the check address.
    pub addr: Option<IpAddr>,
    /// With the server's check settings.
    pub default: bool,
    /// Over TLS whatever the server says.
    pub ssl: bool,
    /// The server name the TLS handshake sends.
    pub sni: Option<Arc<str>>,
    /// A PROXY header first, whatever the server says.
    pub send_proxy: bool,
}

impl Step {
    /// A connect with the server's own settings (HAProxy's `connect default`).
    pub(crate) fn connect_default() -> Step {
        Step::Connect(Connect {
            default: true,
            ..Connect::default()
        })
    }
}

/// What a server's check settings give the connects that take them (see [`Connect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckDefaults {
    /// `check-ssl`.
    pub ssl: bool,
    /// `check-send-proxy`, or `send-proxy` with checks on the server's own address.
    pub send_proxy: bool,
}

/// A compiled check: its steps, shared by every probe of a server.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Arc<[Step]>,
}

impl Plan {
    /// The plain layer-4 check.
    pub fn connect() -> Plan {
        Plan {
            steps: Arc::from(Vec::new()),
        }
    }

    /// A plan of these steps.
    pub(crate) fn from_steps(steps: Vec<Step>) -> Plan {
        Plan {
            steps: Arc::from(steps),
        }
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// A fresh probe of this plan, in clear and without a PROXY header (an agent's).
    pub fn probe(&self) -> Probe {
        Probe::new(self.steps.clone(), CheckDefaults::default())
    }

    /// A fresh probe of this plan whose default connects take the server's `defaults`.
    pub fn probe_with(&self, defaults: CheckDefaults) -> Probe {
        Probe::new(self.steps.clone(), defaults)
    }

    /// Whether a step connects over TLS whatever the server says (`tcp-check connect ssl`), so
    /// the server needs TLS settings even without `check-ssl`.
    pub fn needs_tls(&self) -> bool {
        (self.steps.iter()).any(|s| matches!(s, Step::Connect(c) if c.ssl))
    }
}

impl CheckProtocol {
    /// Compiles the check; an error names what cannot run and what to write instead.
    pub fn plan(&self) -> Result<Plan, CheckError> {
        let steps = match self {
            CheckProtocol::Connect => Vec::new(),
            CheckProtocol::Http(h) => {
                let mut s = vec![Step::Send(h.request()?)];
                s.extend(h.expects()?.into_iter().map(Step::Expect));
                s
            }
            CheckProtocol::TcpCheck(t) => t
                .steps
                .iter()
                .map(TcpStep::compile)
                .collect::<Result<_, _>>()?,
            CheckProtocol::SslHello => ssl_hello::steps(),
            CheckProtocol::Redis => redis::steps(),
            CheckProtocol::Ldap => ldap::steps(),
            CheckProtocol::Mysql(u) => {
                mysql::steps(Some(u.user.as_str()).filter(|u| !u.is_empty()), !u.pre41)
            }
            CheckProtocol::Pgsql(u) if u.user.is_empty() => {
                return Err(CheckError::new(
                    "pgsql-check needs a user",
                    "write option pgsql-check user haproxy",
                ))
            }
            CheckProtocol::Pgsql(u) => pgsql::steps(&u.user),
            CheckProtocol::Smtp(s) => {
                let g = &s.greeting;
                if !(g.starts_with("HELO ") || g.starts_with("EHLO ")) || g.contains(['\r', '\n']) {
                    return Err(CheckError::new(
                        format!("smtp greeting `{g}`"),
                        "write HELO localhost or EHLO mx.example",
                    ));
                }
                smtp::steps(g)
            }
        };
        Ok(Plan {
            steps: Arc::from(steps),
        })
    }

    /// HAProxy's name for the check (`option NAME`), for messages.
    pub fn haproxy_option(&self) -> &'static str {
        match self {
            CheckProtocol::Connect => "tcp connect",
            CheckProtocol::Http(_) => "httpchk",
            CheckProtocol::TcpCheck(_) => "tcp-check",
            CheckProtocol::SslHello => "ssl-hello-chk",
            CheckProtocol::Redis => "redis-check",
            CheckProtocol::Mysql(_) => "mysql-check",
            CheckProtocol::Pgsql(_) => "pgsql-check",
            CheckProtocol::Smtp(_) => "smtpchk",
            CheckProtocol::Ldap => "ldap-check",
        }
    }
}
