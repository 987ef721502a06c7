//! tether's native configuration: the types every other part reads, and loading them from TOML.
//!
//! The schema (kebab-case keys, unknown keys are errors):
//! ```toml
//! [global]
//! maxconn = 4000
//! log-format = "tcplog"          # or "json"
//! grace = "10s"                  # SIGTERM drain period
//!
//! [[frontend]]
//! name = "main"
//! bind = ["127.0.0.1:9443"]
//! backend = "app"               # default backend
//!
//! [[frontend.route]]             # ordered rules, see [`route`]
//! if = { server-name = ["api.example.com"] }
//! use-backend = "api"
//!
//! [[backend]]
//! name = "app"
//! balance = "roundrobin"         # leastconn | first | hash (hash-key = "source" | "sni")
//! affinity = ["session-id", "ticket", "psk", "source"]
//!
//! [[backend.server]]
//! name = "s1"
//! address = "10.0.0.1:443"
//! ```
//! Durations are `"10s"`, `"1m"`, `"500ms"`, `"2h"`, `"1d"`; a bare number is milliseconds, as
//! in HAProxy. Sizes are `"60k"` (61440) with k/m/g powers of 1024. Defaults follow HAProxy where
//! HAProxy has one (retries 3, check inter 2s, rise 2, fall 3).
//!
//! [`load_toml`] reports every problem it can find at once, each with file:line, the key path and
//! the text to write instead.

mod load;
mod locate;
pub mod log;
mod log_format;
mod monitor;
pub mod peers;
pub mod resolvers;
pub mod route;
pub mod rules;
pub mod units;
mod unix_address;
mod validate;

pub use load::{load_table, load_toml, ConfigError, ConfigErrors};
pub use locate::key_line;
pub use log_format::{LogFormat, LogFormatError, LogTemplate, LogVar, Part as LogPart};
pub use monitor::{Compare, MonitorFail};
pub use route::{Match, RouteRule, RuleAction};
pub use rules::{
    Condition, ContentAction, ContentRule, HaproxyRules, Sample, StickAction, StickRule,
};
pub use units::{
    format_duration, format_size, parse_duration, parse_duration_with_unit, parse_size, UnitError,
};
pub use unix_address::{is_unix_address, UnixAddress, MAX_UNIX_NAME};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use units::{duration_text, size_text};

/// A whole tether configuration: the process, its listeners, its server pools and its stats page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub global: Global,
    /// Listeners, each handing connections to one backend.
    #[serde(default, rename = "frontend")]
    pub frontends: Vec<Frontend>,
    /// Server pools with their balancing and affinity.
    #[serde(default, rename = "backend")]
    pub backends: Vec<Backend>,
    /// The stats/admin HTTP page, if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// HAProxy's runtime API on a unix socket (`stats socket`), if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSocket>,
    /// Stick-table replication with HAProxy's peers protocol, if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<peers::PeersSection>,
    /// Syslog/stdout targets for connection logs (HAProxy's `log` lines), see [`log`].
    #[serde(default, rename = "log", skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<log::LogTarget>,
    /// DNS name servers that keep servers' addresses current (HAProxy `resolvers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<resolvers::Resolvers>,
}

impl Config {
    /// Every CA file the servers' check TLS settings name, once each, for the runner to read
    /// into [`CaFiles`](crate::server::check::CaFiles) (core reads no file).
    pub fn ca_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self
            .backends
            .iter()
            .flat_map(|b| b.servers.iter().filter_map(|s| b.check_tls(s)))
            .filter_map(|t| t.ca_file.as_deref())
            .collect();
        files.sort_unstable();
        files.dedup();
        files
    }
}

/// The runtime API socket: HAProxy's `stats socket PATH [mode M] [level L]`, so `socat`, `hatop`
/// and the Prometheus exporter's unix mode work unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminSocket {
    /// Filesystem path of the unix socket.
    pub socket: String,
    /// File permissions of the socket, octal text as HAProxy's `mode` (`"600"`).
    #[serde(default = "defaults::admin_mode")]
    pub mode: String,
    /// What a client may do.
    #[serde(default)]
    pub level: AdminLevel,
}

/// A runtime API access level, as HAProxy's: each level can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminLevel {
    /// Read-only: `show`, `get`, `help`.
    User,
    /// Also change server state and weight.
    Operator,
    /// Also clear stick tables.
    #[default]
    Admin,
}

impl AdminLevel {
    /// Reads HAProxy's level word.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "user" => Some(AdminLevel::User),
            "operator" => Some(AdminLevel::Operator),
            "admin" => Some(AdminLevel::Admin),
            _ => None,
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Global {
    /// Connections served at once; at the limit listeners pause (nothing is refused), as HAProxy.
    #[serde(default = "defaults::global_maxconn")]
    pub maxconn: u32,
    /// Line format of the per-connection log.
    #[serde(default)]
    pub log_format: LogFormat,
    /// How long SIGTERM waits for connections to drain before closing them.
    #[serde(default = "defaults::grace", with = "duration_text")]
    pub grace: Duration,
    /// Worker threads serving connections (HAProxy `nbthread`; absent: one per CPU; `--threads`
    /// overrides it). Read at start: a reload keeps the threads it started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u16>,
    /// Pipes for splicing bulk transfers kernel-side (HAProxy `maxpipes`; absent: a quarter of
    /// `maxconn`; 0: never splice, HAProxy's `nosplice`). Each holds two descriptors. Read at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pipes: Option<u32>,
    /// Capacity of each splicing pipe (HAProxy `tune.pipesize`; absent: the system's, 64k on
    /// Linux). Larger pipes move a bulk transfer in fewer `splice` calls; each pipe's capacity
    /// counts against the user's `fs.pipe-user-pages-soft` (64 MiB by default) unless tether
    /// runs with `CAP_SYS_RESOURCE`. From 4k to 1m. Read at start.
    #[serde(
        default,
        with = "size_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pipe_size: Option<u64>,
}

impl Global {
    /// Why Linux would refuse `bytes` as a pipe's capacity (below a page, or above
    /// `fs.pipe-max-size` for an unprivileged process), if it would.
    pub fn pipe_size_problem(bytes: u64) -> Option<String> {
        (!(4096..=1024 * 1024).contains(&bytes))
            .then(|| format!("{bytes} bytes is outside what Linux gives a pipe (4k to 1m)"))
    }

    /// The pipes splicing may use: `max-pipes`, else a quarter of `maxconn`, as HAProxy.
    pub fn pipes(&self) -> u32 {
        self.max_pipes.unwrap_or(self.maxconn / 4)
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            maxconn: defaults::global_maxconn(),
            log_format: LogFormat::default(),
            grace: defaults::grace(),
            threads: None,
            max_pipes: None,
            pipe_size: None,
        }
    }
}

/// A listener: where clients connect and which backend serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Frontend {
    /// Name used in logs and stats.
    pub name: String,
    /// Listening addresses, `"IP:PORT"` each (`"0.0.0.0:9443"` for all IPv4 addresses).
    pub bind: Vec<String>,
    /// Expect a PROXY protocol v1/v2 header from a trusted L4 balancer in front.
    #[serde(default)]
    pub accept_proxy: bool,
    /// The default backend: where connections go that no `route` rule decides.
    pub backend: String,
    /// Ordered routing and filtering rules (`[[frontend.route]]`); the first that holds decides.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRule>,
    /// Connections this frontend serves at once (absent: only the global limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<u32>,
    /// Client inactivity timeout.
    #[serde(default = "defaults::timeout_client", with = "duration_text")]
    pub timeout_client: Duration,
    /// HAProxy `timeout client-fin`: the client's idle limit once tether has half-closed it
    /// (the server ended its side), in place of `timeout-client` or `timeout-tunnel`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_client_fin: Option<Duration>,
    /// The longest wait for the ClientHello before balancing without it (native affinity).
    #[serde(default = "defaults::inspect_delay", with = "duration_text")]
    pub inspect_delay: Duration,
    /// The most bytes buffered while waiting for the ClientHello (HAProxy gives up at 15360).
    #[serde(default = "defaults::inspect_cap", with = "size_text")]
    pub inspect_cap: u64,
    /// TCP keepalive probes on client connections (HAProxy `option clitcpka`), so that idle
    /// long-lived connections survive NAT and firewall idle timers and dead peers are noticed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp_keepalive: bool,
    /// Connections whose client sent no byte are not logged (HAProxy `option dontlognull`), so
    /// an outside balancer's probes or a port scan do not flood the log; stats still count them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dont_log_null: bool,
    /// Hand a connection over only once the client's first bytes are there (Linux
    /// `TCP_DEFER_ACCEPT`, HAProxy `bind ... defer-accept`): a TLS client's ClientHello comes
    /// with the accept, sparing a wake-up per connection. Only for protocols where the client
    /// speaks first. Applied when the address is bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defer_accept: bool,
}

/// How a backend picks a server for a connection that affinity does not place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BalanceAlgorithm {
    /// Smooth weighted round robin in declaration order.
    #[default]
    #[serde(rename = "roundrobin")]
    RoundRobin,
    /// The server with the fewest active connections (per weight).
    #[serde(rename = "leastconn")]
    LeastConn,
    /// The first server in declaration order with a free slot.
    #[serde(rename = "first")]
    First,
    /// Consistent hashing of `hash-key`, with bounded load if `hash-balance-factor` is set.
    #[serde(rename = "hash")]
    Hash,
    /// The least loaded of `random-draws` (default 2) servers drawn at random by weight
    /// (HAProxy `balance random(<draws>)`).
    #[serde(rename = "random")]
    Random,
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashKey {
    /// The client address (HAProxy `balance source`).
    #[default]
    Source,
    /// The ClientHello server_name.
    Sni,
}

pub use crate::affinity::AffinityKey;
pub use crate::retry::Redispatch;

/// A pool of servers with its balancing, affinity, retry and health settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Backend {
    /// Name used by frontends, logs and stats.
    pub name: String,
    /// The balancing algorithm.
    #[serde(default)]
    pub balance: BalanceAlgorithm,
    /// What `balance = "hash"` hashes (only with `hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// Bounded-load factor in percent (≥ 100) for `hash`, as HAProxy `hash-balance-factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_balance_factor: Option<u32>,
    /// Servers drawn per pick for `balance = "random"` (default 2, HAProxy's `random(<draws>)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_draws: Option<u32>,
    /// The native affinity chain; exclusive with `[backend.haproxy]`. Absent (and no haproxy
    /// rules): [`Backend::DEFAULT_AFFINITY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Vec<AffinityKey>>,
    /// Where `ticket-key` affinity finds the key name in a ticket (default: RFC 5077's first
    /// 16 bytes, as OpenSSL and BoringSSL write it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_key_name: Option<crate::affinity::ticket_keys::NameSpan>,
    /// How `ticket-key` affinity routes a key name no server has confirmed yet (default:
    /// the client's last server, then a server with no name yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_key_bootstrap: Option<crate::affinity::ticket_keys::Bootstrap>,
    /// `option persist`: go back to a sticky server even when it is marked down.
    #[serde(default)]
    pub persist: bool,
    /// Log every health-check result that changes the status or moves the rise/fall counter,
    /// as HAProxy's `option log-health-checks` (`Health check for server b/s1 failed, ...`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log_health_checks: bool,
    /// Connect retries after the first attempt (`3` = 4 attempts).
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// When retries move to another server.
    #[serde(default)]
    pub redispatch: Redispatch,
    /// A refused connect (RST) redispatches at once instead of waiting for the retry turnaround.
    #[serde(default = "defaults::yes")]
    pub redispatch_on_refused: bool,
    /// Longest wait for a server connection.
    #[serde(default = "defaults::timeout_connect", with = "duration_text")]
    pub timeout_connect: Duration,
    /// Server inactivity timeout.
    #[serde(default = "defaults::timeout_server", with = "duration_text")]
    pub timeout_server: Duration,
    /// Longest wait in the queue for a server slot (absent: `timeout-connect`, as HAProxy).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_queue: Option<Duration>,
    /// HAProxy `timeout tunnel`: once the server is connected, the idle limit of both sides,
    /// in place of the frontend's `timeout-client` and `timeout-server`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_tunnel: Option<Duration>,
    /// HAProxy `timeout server-fin`: the server's idle limit once tether has half-closed it
    /// (the client ended its side), in place of `timeout-server` or `timeout-tunnel`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_server_fin: Option<Duration>,
    /// TCP keepalive probes on server connections (HAProxy `option srvtcpka`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp_keepalive: bool,
    /// HAProxy `timeout check`: when set, a health check's connect waits at most
    /// `min(timeout-connect, inter)`; absent, the whole check gets `inter`, as in HAProxy.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_check: Option<Duration>,
    /// The affinity table.
    #[serde(default)]
    pub stick_table: StickTableConfig,
    /// Health checking defaults for the servers.
    #[serde(default)]
    pub check: CheckConfig,
    /// HAProxy rule semantics (imported configs), instead of `affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<HaproxyRules>,
    /// The servers, in declaration order (which roundrobin follows).
    #[serde(default, rename = "server")]
    pub servers: Vec<Server>,
}

impl Backend {
    /// The chain used when neither `affinity` nor `[backend.haproxy]` is written.
    pub const DEFAULT_AFFINITY: [AffinityKey; 3] = [
        AffinityKey::SessionId,
        AffinityKey::Ticket,
        AffinityKey::Psk,
    ];

    /// The TLS settings of `server`'s checks: its own, else the backend's; `None` when its checks
    /// neither use nor may need TLS.
    pub fn check_tls<'a>(&'a self, server: &'a Server) -> Option<&'a CheckTls> {
        server.check_tls.as_ref().or(self.check.tls.as_ref())
    }

    /// The native affinity chain in force: `None` when HAProxy rules drive the backend.
    pub fn effective_affinity(&self) -> Option<Vec<AffinityKey>> {
        match (&self.affinity, &self.haproxy) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(Self::DEFAULT_AFFINITY.to_vec()),
        }
    }

    /// A backend with HAProxy's defaults and no servers, for builders and the importer.
    pub fn named(name: &str) -> Backend {
        Backend {
            name: name.to_string(),
            balance: BalanceAlgorithm::default(),
            hash_key: None,
            hash_balance_factor: None,
            random_draws: None,
            affinity: None,
            ticket_key_name: None,
            ticket_key_bootstrap: None,
            persist: false,
            log_health_checks: false,
            retries: defaults::retries(),
            redispatch: Redispatch::default(),
            redispatch_on_refused: true,
            timeout_connect: defaults::timeout_connect(),
            timeout_server: defaults::timeout_server(),
            timeout_queue: None,
            timeout_tunnel: None,
            timeout_server_fin: None,
            tcp_keepalive: false,
            timeout_check: None,
            stick_table: StickTableConfig::default(),
            check: CheckConfig::default(),
            haproxy: None,
            servers: Vec::new(),
        }
    }
}

impl Frontend {
    /// A frontend with default timeouts, for builders and the importer.
    pub fn named(name: &str, backend: &str) -> Frontend {
        Frontend {
            name: name.to_string(),
            bind: Vec::new(),
            accept_proxy: false,
            backend: backend.to_string(),
            routes: Vec::new(),
            maxconn: None,
            timeout_client: defaults::timeout_client(),
            timeout_client_fin: None,
            inspect_delay: defaults::inspect_delay(),
            inspect_cap: defaults::inspect_cap(),
            tcp_keepalive: false,
            dont_log_null: false,
            defer_accept: false,
        }
    }

    /// The parsed listening addresses (those that parse; [`Config::validate`] reports the rest).
    pub fn bind_addrs(&self) -> Vec<SocketAddr> {
        self.bind.iter().filter_map(|b| b.parse().ok()).collect()
    }
}

pub use crate::stick::{StickKeyType, StickTableConfig};

pub use crate::server::check::{
    CheckProtocol, CheckTls, ConnectStep, DbUser, HttpCheck, SmtpCheck, TcpCheck, TcpStep, Verify,
};

/// Health checking of a backend's servers: timing, and what a check does once connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckConfig {
    /// Interval between checks.
    #[serde(default = "defaults::inter", with = "duration_text")]
    pub inter: Duration,
    /// Interval while a server is going up or down (HAProxy `fastinter`; absent: `inter`).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub fastinter: Option<Duration>,
    /// Interval while a server is fully down (HAProxy `downinter`; absent: `inter`).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub downinter: Option<Duration>,
    /// What a check does once connected: `"connect"` (default), `"redis"`, `"ssl-hello"`,
    /// or a table: `{ http = { uri = "/health" } }`, `{ tcp-check = { steps = [...] } }`,
    /// `{ mysql = { user = "haproxy" } }`, `{ pgsql = { user = "haproxy" } }`,
    /// `{ smtp = {} }`.
    #[serde(default, skip_serializing_if = "is_connect")]
    pub protocol: CheckProtocol,
    /// Checks over TLS for every server without its own `check-tls` (HAProxy `check-ssl`,
    /// `verify`, `ca-file`, `check-sni`, `verifyhost`): `tls = { verify = "none" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CheckTls>,
    /// Consecutive successes to mark a server up.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Consecutive failures to mark a server down.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
    /// Count live connect failures/successes as checks too (tether; HAProxy imports set false).
    #[serde(default = "defaults::yes")]
    pub passive: bool,
}

fn is_connect(p: &CheckProtocol) -> bool {
    *p == CheckProtocol::Connect
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            inter: defaults::inter(),
            fastinter: None,
            downinter: None,
            protocol: CheckProtocol::Connect,
            tls: None,
            rise: defaults::rise(),
            fall: defaults::fall(),
            passive: true,
        }
    }
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Server {
    /// Name used in logs, stats and admin actions.
    pub name: String,
    /// The server's number (HAProxy's `id`): what the stats (`sid`), the runtime API and the
    /// peers protocol call it. Absent: numbered as HAProxy 2.6 numbers it (see
    /// [`crate::server::number`]; declaration position when no server of the backend has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// `"HOST:PORT"` (a host name is resolved once at start), or a unix stream socket:
    /// `"unix@/run/app.sock"`, `"/run/app.sock"` or `"abns@name"` (see [`UnixAddress`]).
    pub address: String,
    /// Share of new connections, 0..=256 (0: only sticky traffic).
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// Run active health checks on this server.
    #[serde(default = "defaults::yes")]
    pub check: bool,
    /// Connections at once; beyond it connections queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<u32>,
    /// Queue length at most; beyond it connections are redispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxqueue: Option<u32>,
    /// Used only when every non-backup server is down.
    #[serde(default)]
    pub backup: bool,
    /// Starts in maintenance (HAProxy `disabled`): no traffic until it is enabled on the stats
    /// page or the runtime API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Override of the backend check interval.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub inter: Option<Duration>,
    /// Override of the backend `rise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Override of the backend `fall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Override of the backend `fastinter`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub fastinter: Option<Duration>,
    /// Override of the backend `downinter`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub downinter: Option<Duration>,
    /// Port health checks connect to instead of the server's (HAProxy `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_port: Option<u16>,
    /// Host health checks connect to instead of the server's (HAProxy `addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_addr: Option<String>,
    /// Health checks over TLS (HAProxy `check-ssl`, `verify`, `ca-file`, `check-sni`,
    /// `verifyhost`); replaces the backend's `[backend.check.tls]` for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_tls: Option<CheckTls>,
    /// A PROXY protocol header sent before the client's bytes, so the server sees the client's
    /// address (HAProxy `send-proxy`, `send-proxy-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_proxy: Option<SendProxy>,
    /// Health checks send a PROXY header too (HAProxy `check-send-proxy`); without it they do
    /// when `send-proxy` is set and checks go to the server's own address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check_send_proxy: bool,
    /// After checks bring the server back up, its weight ramps from nearly 0 to full over this
    /// long, so a cold server is not handed its whole share at once (HAProxy `slowstart`).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub slowstart: Option<Duration>,
    /// What happens to the server's established connections when it is marked DOWN (HAProxy
    /// `on-marked-down`): by default they stay open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_marked_down: Option<OnMarkedDown>,
    /// What happens to the backend's backup servers' connections when this server is marked UP
    /// (HAProxy `on-marked-up`): by default they stay open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_marked_up: Option<OnMarkedUp>,
    /// A second check to an agent on the server that answers a line of words setting the
    /// server's weight, admin state and health (HAProxy `agent-check`):
    /// `agent = { port = 5555 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCheck>,
    /// Follow another server's health instead of checking this one (HAProxy `track`):
    /// `"SERVER"` in the same backend or `"BACKEND/SERVER"`. Needs `check = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// The `[[resolvers]]` that re-resolve the address's host name every `timeout-resolve`
    /// (HAProxy `resolvers`); without it a host name is resolved once at startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<String>,
    /// Which address family DNS is asked for first (HAProxy `resolve-prefer`, default ipv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_prefer: Option<resolvers::Family>,
    /// How the server gets its first address (HAProxy `init-addr`, default `last,libc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_addr: Option<Vec<resolvers::InitAddr>>,
}

/// HAProxy's `agent-check` with `agent-port`, `agent-addr`, `agent-inter`, `agent-send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentCheck {
    /// Port the agent listens on.
    pub port: u16,
    /// Host of the agent instead of the server's (`agent-addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Interval between agent checks (`agent-inter`); absent: the server's `inter`.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub inter: Option<Duration>,
    /// Bytes written to the agent once connected (`agent-send`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
}

/// HAProxy `on-marked-down`: what a server going DOWN does to its established connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedDown {
    /// Close them at once (logged `D-`), so clients reconnect to a server that is UP: the
    /// Patroni pattern, where a DOWN primary has become a replica.
    ShutdownSessions,
}

/// HAProxy `on-marked-up`: what a non-backup server coming UP does to the backup servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedUp {
    /// Close every backup server's connections at once (logged `U-`), so long sessions come
    /// back to the active servers.
    ShutdownBackupSessions,
}

/// Which PROXY protocol header a server gets first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendProxy {
    /// The text header (`PROXY TCP4 ...\r\n`), HAProxy `send-proxy`.
    V1,
    /// The binary header, HAProxy `send-proxy-v2`.
    V2,
}

impl Server {
    /// A server with default weight and checks on, for builders and the importer.
    pub fn new(name: &str, address: &str) -> Server {
        Server {
            name: name.to_string(),
            id: None,
            address: address.to_string(),
            weight: defaults::weight(),
            check: true,
            maxconn: None,
            maxqueue: None,
            backup: false,
            disabled: false,
            inter: None,
            rise: None,
            fall: None,
            fastinter: None,
            downinter: None,
            check_port: None,
            check_addr: None,
            check_tls: None,
            send_proxy: None,
            check_send_proxy: false,
            slowstart: None,
            on_marked_down: None,
            on_marked_up: None,
            agent: None,
            track: None,
            resolvers: None,
            resolve_prefer: None,
            init_addr: None,
        }
    }

    /// Whether checks' default connects send a PROXY header: `check-send-proxy`, or `send-proxy`
    /// with neither `addr` nor `port` for checks (HAProxy 2.6's `init_srv_check`).
    pub fn checks_send_proxy(&self) -> bool {
        self.check_send_proxy
            || (self.send_proxy.is_some() && self.check_port.is_none() && self.check_addr.is_none())
    }

    /// Where the agent check connects (`agent-addr`, else the server's host), if there is one.
    pub fn agent_address(&self) -> Option<String> {
        let agent = self.agent.as_ref()?;
        let host = match (agent.addr.as_deref(), self.address.rsplit_once(':')) {
            (Some(a), _) if a.contains(':') && !a.starts_with('[') => format!("[{a}]"),
            (Some(a), _) => a.to_string(),
            (None, Some((h, _))) => h.to_string(),
            (None, None) => self.address.clone(),
        };
        Some(format!("{host}:{}", agent.port))
    }

    /// The tracked server as (backend, server), `backend` being this server's own when `track`
    /// names a server alone.
    pub fn tracked<'a>(&'a self, own_backend: &'a str) -> Option<(&'a str, &'a str)> {
        let t = self.track.as_deref()?;
        Some(t.split_once('/').unwrap_or((own_backend, t)))
    }

    /// Where health checks connect (`addr` and `port` applied), on `step_port` if a check step
    /// names one.
    pub fn check_address(&self, step_port: Option<u16>) -> String {
        if self.check_addr.is_none() && is_unix_address(&self.address) {
            // A unix socket has no port: HAProxy checks the socket itself.
            return self.address.clone();
        }
        let (host, port) = match self.address.rsplit_once(':') {
            Some((h, p)) => (h, p.to_string()),
            None => (self.address.as_str(), String::new()),
        };
        let host = match self.check_addr.as_deref() {
            Some(a) if a.contains(':') && !a.starts_with('[') => format!("[{a}]"),
            Some(a) => a.to_string(),
            None => host.to_string(),
        };
        let port = step_port
            .or(self.check_port)
            .map_or(port, |p| p.to_string());
        format!("{host}:{port}")
    }
}

/// The stats/admin HTTP page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Stats {
    /// `"IP:PORT"` to listen on.
    pub bind: String,
    /// Path of the page (CSV at `<uri>;csv`).
    #[serde(default = "defaults::stats_uri")]
    pub uri: String,
    /// Browser auto-refresh period.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh: Option<Duration>,
    /// Leave the version out of the page.
    #[serde(default)]
    pub hide_version: bool,
    /// Allow ready/drain/maint actions.
    #[serde(default)]
    pub admin: bool,
    /// Client networks admin actions are allowed from (HAProxy's `stats admin if LOCALHOST`
    /// or `if { src NET }`); empty: from any client that reaches the page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_from: Vec<crate::route::Cidr>,
    /// Basic authentication; absent means no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<StatsAuth>,
    /// Serve the page over HTTPS (HAProxy's `bind ... ssl crt FILE`); absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StatsTls>,
    /// Allow admin actions without credentials (off: admin needs `auth`, even on loopback, so
    /// that any web page the operator opens cannot drive it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_without_auth: bool,
    /// A path answered `200 OK` without authentication, for an outside load balancer or
    /// orchestrator probing that the process serves (HAProxy's `monitor-uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_uri: Option<String>,
    /// Conditions that make `monitor-uri` answer 503 instead (HAProxy `monitor fail`); any
    /// one that holds fails the probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor_fail: Vec<MonitorFail>,
}

/// The stats page's certificate: PEM files as HAProxy's `crt` reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatsTls {
    /// PEM file with the certificate chain (leaf first), and the private key too when `key` is
    /// absent (HAProxy's `crt` file holds both).
    pub cert: String,
    /// PEM file with the private key, when it is not in `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Stats {
    /// Whether admin actions are on for a client at `client` (authentication aside).
    pub fn admin_for(&self, client: std::net::IpAddr) -> bool {
        self.admin
            && (self.admin_from.is_empty() || self.admin_from.iter().any(|n| n.contains(client)))
    }

    /// Basic credentials would cross the network in clear: auth without TLS on an address
    /// other than loopback (`check` and the daemon warn about it).
    pub fn cleartext_auth_off_loopback(&self) -> bool {
        let loopback = self
            .bind
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        self.auth.is_some() && self.tls.is_none() && !loopback
    }
}

/// Basic-auth credentials for the stats page. The password comes from exactly one source: a
/// file or an environment variable, or, for a config imported from HAProxy's `stats auth
/// user:password`, the clear text itself (served as HAProxy does, with a warning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatsAuth {
    /// User name.
    pub user: String,
    /// File holding the password (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password written in the config (HAProxy's way; `check` warns about it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<ClearPassword>,
}

/// A password written in clear in a configuration. It exists so that an imported haproxy.cfg
/// with `stats auth user:password` serves as HAProxy does; `Debug` never shows it, so a logged
/// config does not leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClearPassword(pub String);

impl std::fmt::Debug for ClearPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClearPassword(<redacted>)")
    }
}

/// Default values, named so serde, builders and docs agree.
pub mod defaults {
    use std::time::Duration;

    /// Runtime API socket permissions: owner only.
    pub fn admin_mode() -> String {
        "600".to_string()
    }

    /// Global connection limit.
    pub fn global_maxconn() -> u32 {
        4000
    }
    /// SIGTERM drain period.
    pub fn grace() -> Duration {
        Duration::from_secs(10)
    }
    /// Client inactivity timeout.
    pub fn timeout_client() -> Duration {
        Duration::from_secs(60)
    }
    /// Server inactivity timeout.
    pub fn timeout_server() -> Duration {
        Duration::from_secs(60)
    }
    /// Connect timeout.
    pub fn timeout_connect() -> Duration {
        Duration::from_secs(10)
    }
    /// Longest ClientHello wait.
    pub fn inspect_delay() -> Duration {
        Duration::from_secs(5)
    }
    /// HAProxy's inspect buffer limit (bufsize 16384 minus 1024 reserved).
    pub fn inspect_cap() -> u64 {
        15360
    }
    /// HAProxy `retries`.
    pub fn retries() -> u32 {
        3
    }
    /// HAProxy check `inter`.
    pub fn inter() -> Duration {
        Duration::from_secs(2)
    }
    /// HAProxy check `rise`.
    pub fn rise() -> u32 {
        2
    }
    /// HAProxy check `fall`.
    pub fn fall() -> u32 {
        3
    }
    /// HAProxy server `weight`.
    pub fn weight() -> u32 {
        1
    }
    /// Stick table entries.
    pub fn table_size() -> u64 {
        100 * 1024
    }
    /// Stick table idle expiry (longer than common 5-10 min TLS session lifetimes).
    pub fn table_expire() -> Duration {
        Duration::from_secs(30 * 60)
    }
    /// A TLS session ID is at most 32 bytes.
    pub fn key_len() -> u32 {
        32
    }
    /// Stats page path.
    pub fn stats_uri() -> String {
        "/".to_string()
    }
    pub(crate) fn yes() -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
