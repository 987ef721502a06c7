//! Where connection logs are sent besides the daemon's stderr: HAProxy's `log` targets (syslog
//! over UDP or a unix datagram socket, or stdout/stderr), as native `[[log]]` entries.
//!
//! ```toml
//! [[log]]
//! address = "127.0.0.1:514"      # or "/dev/log", "stdout", "stderr"
//! facility = "local0"
//! format = "rfc5424"             # rfc3164 (default) | rfc5424 | raw
//! level = "info"                 # the least severe level sent (HAProxy's max level)
//! min-level = "notice"           # optional: more severe levels are lowered to this one
//! len = 1024                     # longest datagram, bytes
//! ```

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// HAProxy's default port for a syslog address without one.
pub const SYSLOG_PORT: u16 = 514;

/// One log destination: HAProxy's `log ADDR [len N] [format F] FACILITY [LEVEL [MINLEVEL]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogTarget {
    /// `host:port` (UDP; the port defaults to 514), a unix datagram socket path (`/dev/log`),
    /// `stdout` or `stderr`.
    pub address: String,
    /// The syslog facility in each line's priority.
    #[serde(default = "default_facility")]
    pub facility: Facility,
    /// The framing around each line.
    #[serde(default)]
    pub format: SyslogFormat,
    /// The least severe level sent; connection logs are `info`, so `notice` or above sends none.
    #[serde(default = "default_level")]
    pub level: Severity,
    /// More severe messages are lowered to this level (HAProxy's `minlevel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_level: Option<Severity>,
    /// The longest line sent, framing included (HAProxy's `len`); longer lines are truncated.
    #[serde(default = "default_len")]
    pub len: usize,
}

/// Shortest and longest `len` accepted (HAProxy caps at 65535; a datagram needs its header).
pub const LEN_RANGE: std::ops::RangeInclusive<usize> = 80..=65535;

fn default_facility() -> Facility {
    Facility::Local0
}

fn default_level() -> Severity {
    Severity::Debug
}

fn default_len() -> usize {
    1024
}

/// Where a [`LogTarget`]'s address points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A syslog server over UDP, `host:port`.
    Udp(String),
    /// A unix datagram socket, e.g. `/dev/log`.
    Unix(PathBuf),
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl Destination {
    /// Reads HAProxy's address forms: `stdout`, `stderr`, `/path`, `unix@/path`, `host[:port]`,
    /// `udp@`/`ipv4@`/`ipv6@host[:port]`, `[v6]:port`. The error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "stdout" => return Ok(Destination::Stdout),
            "stderr" => return Ok(Destination::Stderr),
            _ => {}
        }
        if let Some(path) = text.strip_prefix("unix@").or_else(|| {
            if text.starts_with('/') {
                Some(text)
            } else {
                None
            }
        }) {
            return Ok(Destination::Unix(PathBuf::from(path)));
        }
        let host = ["udp@", "udp4@", "udp6@", "ipv4@", "ipv6@"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .unwrap_or(text);
        if host.contains('@') || host.is_empty() {
            return Err(format!(
                "log address {text:?} is not supported: tether sends to UDP host:port, a unix \
                 datagram socket path, stdout or stderr"
            ));
        }
        let with_port = if host.parse::<std::net::SocketAddr>().is_ok() {
            host.to_string()
        } else if host.parse::<std::net::IpAddr>().is_ok() && host.contains(':') {
            format!("[{host}]:{SYSLOG_PORT}")
        } else if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:{SYSLOG_PORT}")
        };
        if super::validate::is_host_port(&with_port) {
            Ok(Destination::Udp(with_port))
        } else {
            Err(format!("log address {text:?} is not host:port"))
        }
    }
}

impl LogTarget {
    /// A target at `address` with HAProxy's defaults (rfc3164, every level, 1024 bytes).
    pub fn new(address: impl Into<String>, facility: Facility) -> Self {
        LogTarget {
            address: address.into(),
            facility,
            format: SyslogFormat::default(),
            level: default_level(),
            min_level: None,
            len: default_len(),
        }
    }

    /// The syslog priority a message of `severity` gets at this target, or `None` when the
    /// target's level filters it out.
    pub fn priority(&self, severity: Severity) -> Option<u8> {
        if severity > self.level {
            return None;
        }
        let sent = match self.min_level {
            Some(min) if severity < min => min,
            _ => severity,
        };
        Some(self.facility.code() * 8 + sent as u8)
    }
}

/// The framing of a syslog line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyslogFormat {
    /// BSD syslog: `<PRI>Mmm dd hh:mm:ss host tag[pid]: line`.
    #[default]
    Rfc3164,
    /// IETF syslog: `<PRI>1 TIMESTAMP host tag pid - - line`.
    Rfc5424,
    /// The line alone (HAProxy's `format raw`, for stdout under a service manager).
    Raw,
}

impl SyslogFormat {
    /// Reads HAProxy's format word.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "rfc3164" => Some(SyslogFormat::Rfc3164),
            "rfc5424" => Some(SyslogFormat::Rfc5424),
            "raw" => Some(SyslogFormat::Raw),
            _ => None,
        }
    }
}

macro_rules! named_codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        #[allow(missing_docs)]
        pub enum $name { $($variant),* }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Reads the syslog name (as HAProxy writes it).
            pub fn parse(word: &str) -> Option<Self> {
                match word { $($word => Some($name::$variant),)* _ => None }
            }

            /// The syslog name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $word),* }
            }

            /// The numeric code (RFC 5424 tables).
            pub fn code(self) -> u8 {
                self as u8
            }
        }
    };
}

named_codes!(
    /// A syslog facility (RFC 5424 section 6.2.1, HAProxy's names).
    Facility {
        Kern = "kern", User = "user", Mail = "mail", Daemon = "daemon", Auth = "auth",
        Syslog = "syslog", Lpr = "lpr", News = "news", Uucp = "uucp", Cron = "cron",
        Auth2 = "auth2", Ftp = "ftp", Ntp = "ntp", Audit = "audit", Alert = "alert",
        Cron2 = "cron2", Local0 = "local0", Local1 = "local1", Local2 = "local2",
        Local3 = "local3", Local4 = "local4", Local5 = "local5", Local6 = "local6",
        Local7 = "local7",
    }
);

named_codes!(
    /// A syslog severity, most severe first (so `a < b` means `a` is more severe).
    Severity {
        Emerg = "emerg", Alert = "alert", Crit = "crit", Err = "err", Warning = "warning",
        Notice = "notice", Info = "info", Debug = "debug",
    }
);

/// Every problem with the `[[log]]` entries, as (key path, message, fix).
pub(crate) fn validate(targets: &[LogTarget], err: &mut impl FnMut(String, String, String)) {
    for (i, t) in targets.iter().enumerate() {
        if let Err(msg) = Destination::parse(&t.address) {
            err(
                format!("log[{i}].address"),
                msg,
                "write address = \"127.0.0.1:514\", \"/dev/log\", \"stdout\" or \"stderr\"".into(),
            );
        }
        if !LEN_RANGE.contains(&t.len) {
            err(
                format!("log[{i}].len"),
                format!("log len {} is out of range", t.len),
                format!(
                    "write a length from {} to {}, e.g. len = 1024",
                    LEN_RANGE.start(),
                    LEN_RANGE.end()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn destinations_read_haproxy_forms() {
        let udp = |s: &str| Destination::Udp(s.to_string());
        assert_eq!(Destination::parse("127.0.0.1"), Ok(udp("127.0.0.1:514")));
        assert_eq!(
            Destination::parse("10.0.0.1:1514"),
            Ok(udp("10.0.0.1:1514"))
        );
        assert_eq!(
            Destination::parse("udp@loghost:514"),
            Ok(udp("loghost:514"))
        );
        assert_eq!(Destination::parse("::1"), Ok(udp("[::1]:514")));
        assert_eq!(Destination::parse("[::1]:600"), Ok(udp("[::1]:600")));
        assert_eq!(
            Destination::parse("/dev/log"),
            Ok(Destination::Unix("/dev/log".into()))
        );
        assert_eq!(
            Destination::parse("unix@/run/log.sock"),
            Ok(Destination::Unix("/run/log.sock".into()))
        );
        assert_eq!(Destination::parse("stdout"), Ok(Destination::Stdout));
        assert!(Destination::parse("ring@buf1").is_err());
        assert!(Destination::parse("fd@1").is_err());
        assert!(Destination::parse("host:0").is_err());
    }

    #[test]
    fn codes_follow_rfc5424() {
        assert_eq!(Facility::Local0.code(), 16);
        assert_eq!(Facility::Local7.code(), 23);
        assert_eq!(Severity::Info.code(), 6);
        assert_eq!(Facility::ALL.len(), 24);
        for f in Facility::ALL {
            assert_eq!(Facility::parse(f.name()), Some(*f));
        }
    }

    #[test]
    fn level_filters_and_min_level_lowers() {
        let mut t = LogTarget::new("stdout", Facility::Local0);
        assert_eq!(t.priority(Severity::Info), Some(16 * 8 + 6));
        t.level = Severity::Notice;
        assert_eq!(t.priority(Severity::Info), None);
        assert_eq!(t.priority(Severity::Err), Some(16 * 8 + 3));
        t.min_level = Some(Severity::Warning);
        assert_eq!(t.priority(Severity::Err), Some(16 * 8 + 4));
    }

    proptest! {
        /// A priority is always a valid syslog PRI (0..=191) and never more severe than the
        /// message nor less severe than the target's level.
        #[test]
        fn priority_is_bounded(f in 0usize..24, lvl in 0usize..8, min in proptest::option::of(0usize..8), sev in 0usize..8) {
            let mut t = LogTarget::new("stdout", Facility::ALL[f]);
            t.level = Severity::ALL[lvl];
            t.min_level = min.map(|m| Severity::ALL[m]);
            let sev = Severity::ALL[sev];
            match t.priority(sev) {
                None => prop_assert!(sev > t.level),
                Some(p) => {
                    prop_assert!(p <= 191);
                    prop_assert_eq!(p / 8, Facility::ALL[f].code());
                    prop_assert!(p % 8 >= sev.code());
                }
            }
        }

        /// Any text either parses into a destination or gives an error; never panics.
        #[test]
        fn destination_parse_never_panics(s in ".{0,40}") {
            let _ = Destination::parse(&s);
        }
    }
}

#[cfg(test)]
mod toml_tests {
    use crate::config::load_toml;

    const BASE: &str = "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:9443\"]\nbackend = \"b\"\n\
                        [[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n";

    #[test]
    fn native_log_entries_load() {
        let text = format!(
            "{BASE}[[log]]\naddress = \"/dev/log\"\nfacility = \"daemon\"\nformat = \"rfc5424\"\n\
             [[log]]\naddress = \"stdout\"\nformat = \"raw\"\n"
        );
        let c = load_toml("t.toml", &text).unwrap();
        assert_eq!(c.logs.len(), 2);
        assert_eq!(c.logs[0].facility, super::Facility::Daemon);
        assert_eq!(c.logs[1].format, super::SyslogFormat::Raw);
    }

    #[test]
    fn a_bad_address_names_its_line() {
        let text = format!("{BASE}[[log]]\naddress = \"ring@x\"\n");
        let e = load_toml("t.toml", &text).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].line, 11, "{e}");
        assert!(e.to_string().contains("/dev/log"), "{e}");
    }
}
