//! `[[resolvers]]`: DNS name servers that keep servers' addresses current (HAProxy's
//! `resolvers` section), and the per-server settings that use them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::duration_text;

/// A named list of DNS name servers and the timers of the resolutions sent to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Resolvers {
    /// What servers name in `resolvers = "NAME"`.
    pub name: String,
    /// The name servers, each asked every query at once; the first valid answer wins.
    #[serde(default, rename = "nameserver")]
    pub nameservers: Vec<Nameserver>,
    /// Queries sent for one resolution before giving up (HAProxy `resolve_retries`).
    #[serde(default = "defaults::retries")]
    pub resolve_retries: u32,
    /// Time between two resolutions of a name (HAProxy `timeout resolve`).
    #[serde(default = "defaults::second", with = "duration_text")]
    pub timeout_resolve: Duration,
    /// Time to wait for an answer before asking again (HAProxy `timeout retry`).
    #[serde(default = "defaults::second", with = "duration_text")]
    pub timeout_retry: Duration,
    /// How long after the last valid answer an error takes the server out (HAProxy `hold`).
    #[serde(default)]
    pub hold: Hold,
    /// The UDP payload size announced in EDNS0 (HAProxy `accepted_payload_size`; 512: none).
    #[serde(default = "defaults::payload")]
    pub accepted_payload_size: u16,
}

/// One name server: UDP on `address` (`"IP:PORT"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Nameserver {
    /// Name in logs.
    pub name: String,
    /// `"IP:PORT"`.
    pub address: String,
}

/// HAProxy's `hold` periods: an error status puts the server in maintenance only when no valid
/// answer came within this long before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hold {
    /// After NXDOMAIN.
    #[serde(default = "defaults::thirty", with = "duration_text")]
    pub nx: Duration,
    /// After REFUSED.
    #[serde(default = "defaults::thirty", with = "duration_text")]
    pub refused: Duration,
    /// After every retry timed out.
    #[serde(default = "defaults::thirty", with = "duration_text")]
    pub timeout: Duration,
    /// After any other error (no record, truncated, SERVFAIL).
    #[serde(default = "defaults::thirty", with = "duration_text")]
    pub other: Duration,
    /// HAProxy applies it to `do-resolve` actions only; kept for the round trip.
    #[serde(default = "defaults::ten", with = "duration_text")]
    pub valid: Duration,
    /// HAProxy applies it to SRV records only; kept for the round trip.
    #[serde(default, with = "duration_text")]
    pub obsolete: Duration,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            nx: defaults::thirty(),
            refused: defaults::thirty(),
            timeout: defaults::thirty(),
            other: defaults::thirty(),
            valid: defaults::ten(),
            obsolete: Duration::ZERO,
        }
    }
}

impl Resolvers {
    /// A section with HAProxy's defaults and the given name servers.
    pub fn new(name: &str, nameservers: Vec<Nameserver>) -> Self {
        Resolvers {
            name: name.to_string(),
            nameservers,
            resolve_retries: defaults::retries(),
            timeout_resolve: defaults::second(),
            timeout_retry: defaults::second(),
            hold: Hold::default(),
            accepted_payload_size: defaults::payload(),
        }
    }
}

/// Which address family a server's resolution asks for first (HAProxy `resolve-prefer`;
/// HAProxy's default is IPv6, then IPv4 when the name has no AAAA record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// AAAA first.
    #[default]
    Ipv6,
    /// A first.
    Ipv4,
}

/// How a server gets its address at startup (HAProxy `init-addr`), tried in order. Written as
/// HAProxy writes it: `"last"`, `"libc"`, `"none"` or an IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InitAddr {
    /// The address saved in the server-state file; tether keeps none, so this is skipped, as
    /// HAProxy skips it without `server-state-file`.
    Last,
    /// The system resolver, once at startup.
    Libc,
    /// No address: the server waits in maintenance until DNS answers.
    None,
    /// This address.
    Ip(std::net::IpAddr),
}

impl TryFrom<String> for InitAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "last" => Ok(InitAddr::Last),
            "libc" => Ok(InitAddr::Libc),
            "none" => Ok(InitAddr::None),
            ip => ip.parse().map(InitAddr::Ip).map_err(|_| {
                format!("init-addr {ip:?}: expected \"last\", \"libc\", \"none\" or an IP")
            }),
        }
    }
}

impl From<InitAddr> for String {
    fn from(a: InitAddr) -> String {
        match a {
            InitAddr::Last => "last".into(),
            InitAddr::Libc => "libc".into(),
            InitAddr::None => "none".into(),
            InitAddr::Ip(ip) => ip.to_string(),
        }
    }
}

/// The default methods when none are written: HAProxy's `last,libc`.
pub fn default_init_addr() -> Vec<InitAddr> {
    vec![InitAddr::Last, InitAddr::Libc]
}

/// Checks the sections: names unique and present, each with a name server whose address is
/// `IP:PORT`, timers non-zero; and that every server's `resolvers` names one of them.
pub(super) fn validate(config: &super::Config, err: &mut impl FnMut(String, String, String)) {
    let sections = &config.resolvers;
    for (i, r) in sections.iter().enumerate() {
        let at = format!("resolvers[{i}]");
        if r.name.is_empty() || sections[..i].iter().any(|o| o.name == r.name) {
            err(
                format!("{at}.name"),
                format!("resolvers name {:?} is empty or used twice", r.name),
                "give each [[resolvers]] its own name, e.g. name = \"dns\"".into(),
            );
        }
        if r.nameservers.is_empty() {
            err(
                format!("{at}.nameserver"),
                format!("resolvers {:?} has no name server", r.name),
                "add [[resolvers.nameserver]] with name = \"dns1\" and address = \"IP:53\"".into(),
            );
        }
        for (j, ns) in r.nameservers.iter().enumerate() {
            if ns.address.parse::<std::net::SocketAddr>().is_err() {
                err(
                    format!("{at}.nameserver[{j}].address"),
                    format!(
                        "name server {:?}: address {:?} is not IP:PORT",
                        ns.name, ns.address
                    ),
                    "write an IP and a port, e.g. address = \"127.0.0.1:53\"".into(),
                );
            }
        }
        if r.timeout_resolve.is_zero() || r.timeout_retry.is_zero() || r.resolve_retries == 0 {
            err(
                at.clone(),
                format!("resolvers {:?}: a zero timer or retry count", r.name),
                "leave timeout-resolve, timeout-retry and resolve-retries out for HAProxy's \
                 defaults (1s, 1s, 3)"
                    .into(),
            );
        }
    }
    for (i, b) in config.backends.iter().enumerate() {
        for (j, s) in b.servers.iter().enumerate() {
            let Some(name) = s.resolvers.as_deref() else {
                continue;
            };
            if !sections.iter().any(|r| r.name == name) {
                let known: Vec<&str> = sections.iter().map(|r| r.name.as_str()).collect();
                err(
                    format!("backend[{i}].server[{j}].resolvers"),
                    format!("server {}: resolvers {name:?} is not defined", s.name),
                    if known.is_empty() {
                        format!(
                            "add [[resolvers]] with name = {name:?} and a [[resolvers.nameserver]]"
                        )
                    } else {
                        format!("write one of {known:?}, or add [[resolvers]] with name = {name:?}")
                    },
                );
            }
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn retries() -> u32 {
        3
    }
    pub fn second() -> Duration {
        Duration::from_secs(1)
    }
    pub fn thirty() -> Duration {
        Duration::from_secs(30)
    }
    pub fn ten() -> Duration {
        Duration::from_secs(10)
    }
    pub fn payload() -> u16 {
        512
    }
}
