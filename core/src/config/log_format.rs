//! The per-connection log line's format: HAProxy's `tcplog` layout, JSON, or a `log-format`
//! template of HAProxy's `%` variables, so an imported `log-format` keeps the lines the
//! operator's log tooling already parses.
//!
//! A template is compiled once, when the configuration loads: literal text and variables in
//! order. Only variables tether can fill in TCP mode are accepted; any other is an error that
//! names it, never an empty field the tooling would misread.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Per-connection log line format (native `log-format = "tcplog" | "json" | "TEMPLATE"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// HAProxy's `option tcplog` line, plus the affinity outcome.
    #[default]
    Tcplog,
    /// One JSON object per line.
    Json,
    /// HAProxy's `log-format` template.
    Template(LogTemplate),
}

/// A compiled `log-format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTemplate {
    text: String,
    parts: Vec<Part>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A variable, quoted (`%{+Q}`) or not.
    Var {
        /// Which value.
        var: LogVar,
        /// Wrap it in double quotes.
        quoted: bool,
    },
}

/// The variables a TCP-mode line can carry (HAProxy 2.6 configuration manual, 8.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVar {
    /// `%ci`: client address.
    ClientIp,
    /// `%cp`: client port.
    ClientPort,
    /// `%f` / `%ft`: frontend name (no TLS termination, so no `~`).
    Frontend,
    /// `%b`: backend name.
    Backend,
    /// `%s`: server name, `<NOSRV>` when none.
    Server,
    /// `%t`: accept date, `25/Nov/2026:14:47:05.968`.
    AcceptDate,
    /// `%Ts`: accept date, Unix seconds.
    AcceptUnix,
    /// `%Tw`: time waiting (inspection and queue), ms.
    Tw,
    /// `%Tc`: connect time, ms (-1 when never connected).
    Tc,
    /// `%Tt`: total time, ms.
    Tt,
    /// `%B`: bytes to the client.
    BytesDown,
    /// `%U`: bytes from the client.
    BytesUp,
    /// `%ts`: termination state.
    Termination,
    /// `%ac`: process connections.
    ActConn,
    /// `%fc`: frontend connections.
    FeConn,
    /// `%bc`: backend connections.
    BeConn,
    /// `%sc`: server connections.
    SrvConn,
    /// `%rc`: retries, `+` first after a redispatch.
    Retries,
    /// `%sq`: server queue before this connection (tether logs 0, as its tcplog).
    SrvQueue,
    /// `%bq`: backend queue (0).
    BeQueue,
    /// `%H`: host name.
    Hostname,
    /// `%pid`: process id.
    Pid,
    /// `%[req.ssl_sni]` (or `req_ssl_sni`, `ssl_fc_sni`'s passthrough equivalent): the SNI.
    Sni,
}

/// `(name, variable)`.
const VARS: &[(&str, LogVar)] = &[
    ("pid", LogVar::Pid),
    ("ci", LogVar::ClientIp),
    ("cp", LogVar::ClientPort),
    ("ft", LogVar::Frontend),
    ("Ts", LogVar::AcceptUnix),
    ("Tw", LogVar::Tw),
    ("Tc", LogVar::Tc),
    ("Tt", LogVar::Tt),
    ("ts", LogVar::Termination),
    ("ac", LogVar::ActConn),
    ("fc", LogVar::FeConn),
    ("bc", LogVar::BeConn),
    ("sc", LogVar::SrvConn),
    ("rc", LogVar::Retries),
    ("sq", LogVar::SrvQueue),
    ("bq", LogVar::BeQueue),
    ("f", LogVar::Frontend),
    ("b", LogVar::Backend),
    ("s", LogVar::Server),
    ("t", LogVar::AcceptDate),
    ("B", LogVar::BytesDown),
    ("U", LogVar::BytesUp),
    ("H", LogVar::Hostname),
];

/// Sample fetches (`%[...]`) a log line can carry.
const FETCHES: &[(&str, LogVar)] = &[("req.ssl_sni", LogVar::Sni), ("req_ssl_sni", LogVar::Sni)];

/// A template that cannot be compiled: what is wrong, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log-format: {what}")]
pub struct LogFormatError {
    /// What is wrong, naming the variable.
    pub what: String,
    /// What to write instead.
    pub fix: String,
}

fn error(what: String, fix: &str) -> LogFormatError {
    LogFormatError {
        what,
        fix: fix.into(),
    }
}

const FIX: &str = "use the variables tether fills in TCP mode: %ci %cp %f %ft %b %s %t %Ts %Tw \
                   %Tc %Tt %B %U %ts %ac %fc %bc %sc %rc %sq %bq %H %pid %[req.ssl_sni], with \
                   %{+Q} to quote; or `option tcplog`";

impl LogTemplate {
    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

impl FromStr for LogTemplate {
    type Err = LogFormatError;

    fn from_str(text: &str) -> Result<Self, LogFormatError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                literal.push('%');
                rest = r;
                continue;
            }
            let (quoted, after_flags) = flags(rest)?;
            let (var, after) = variable(after_flags)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var { var, quoted });
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(LogTemplate {
            text: text.to_string(),
            parts,
        })
    }
}

/// `{+Q}` before a variable: whether it is quoted, and what follows the braces.
fn flags(rest: &str) -> Result<(bool, &str), LogFormatError> {
    let Some(inner) = rest.strip_prefix('{') else {
        return Ok((false, rest));
    };
    let Some(end) = inner.find('}') else {
        return Err(error("an unclosed `%{`".into(), FIX));
    };
    let mut quoted = false;
    for flag in inner[..end].split(['+', ',']).filter(|f| !f.is_empty()) {
        match flag {
            "Q" => quoted = true,
            // Escaping is always on: control bytes never reach a line raw.
            "E" => {}
            other => {
                return Err(error(
                    format!("flag `{other}` is not supported"),
                    "%{+Q} (quote) or no flag",
                ))
            }
        }
    }
    Ok((quoted, &inner[end + 1..]))
}

/// The variable at the start of `rest`, and what follows it.
fn variable(rest: &str) -> Result<(LogVar, &str), LogFormatError> {
    if let Some(inner) = rest.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| error("an unclosed `%[`".into(), FIX))?;
        let fetch = inner[..end].trim();
        return FETCHES
            .iter()
            .find(|(n, _)| *n == fetch)
            .map(|(_, v)| (*v, &inner[end + 1..]))
            .ok_or_else(|| {
                error(
                    format!("`%[{fetch}]` is not available in tether's log"),
                    FIX,
                )
            });
    }
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    // As HAProxy reads it: the name is the whole alphanumeric run after `%`.
    VARS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| (*v, &rest[name_len..]))
        .ok_or_else(|| match name {
            "" => error(
                "a `%` without a variable (write `%%` for a percent sign)".into(),
                FIX,
            ),
            _ => error(format!("`%{name}` is not available in tether's log"), FIX),
        })
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogFormat::Tcplog => f.write_str("tcplog"),
            LogFormat::Json => f.write_str("json"),
            LogFormat::Template(t) => f.write_str(t.text()),
        }
    }
}

impl FromStr for LogFormat {
    type Err = LogFormatError;

    fn from_str(s: &str) -> Result<Self, LogFormatError> {
        match s {
            "tcplog" => Ok(LogFormat::Tcplog),
            "json" => Ok(LogFormat::Json),
            t if t.contains('%') => t.parse().map(LogFormat::Template),
            other => Err(error(
                format!("`{other}` is neither tcplog, json nor a template of `%` variables"),
                "log-format = \"tcplog\", \"json\" or e.g. \"%ci:%cp [%t] %f %b/%s %Tt %B %ts\"",
            )),
        }
    }
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: LogFormatError| {
            serde::de::Error::custom(format!("{}; fix: {}", e.what, e.fix))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(t: &LogTemplate) -> Vec<LogVar> {
        t.parts()
            .iter()
            .filter_map(|p| match p {
                Part::Var { var, .. } => Some(*var),
                Part::Literal(_) => None,
            })
            .collect()
    }

    #[test]
    fn haproxys_own_tcplog_format_compiles() {
        // HAProxy 2.6's definition of `option tcplog`, as its manual gives it.
        let t: LogTemplate =
            "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq"
                .parse()
                .unwrap();
        use LogVar::*;
        assert_eq!(
            vars(&t),
            [
                ClientIp,
                ClientPort,
                AcceptDate,
                Frontend,
                Backend,
                Server,
                Tw,
                Tc,
                Tt,
                BytesDown,
                Termination,
                ActConn,
                FeConn,
                BeConn,
                SrvConn,
                Retries,
                SrvQueue,
                BeQueue
            ]
        );
        assert_eq!(t.parts()[1], Part::Literal(":".into()));
    }

    #[test]
    fn flags_fetches_and_percent_signs() {
        let t: LogTemplate = "%{+Q}s sni=%[req.ssl_sni] 100%% %pid".parse().unwrap();
        assert_eq!(
            t.parts(),
            [
                Part::Var {
                    var: LogVar::Server,
                    quoted: true
                },
                Part::Literal(" sni=".into()),
                Part::Var {
                    var: LogVar::Sni,
                    quoted: false
                },
                Part::Literal(" 100% ".into()),
                Part::Var {
                    var: LogVar::Pid,
                    quoted: false
                },
            ]
        );
    }

    #[test]
    fn what_tether_cannot_fill_is_an_error_naming_it() {
        for (text, named) in [
            ("%ci %HM", "%HM"),
            ("%[ssl_fc_cipher]", "ssl_fc_cipher"),
            ("%{+X}ci", "X"),
            ("50%", "without a variable"),
            ("%[req.ssl_sni", "unclosed"),
            ("%si:%sp", "%si"),
        ] {
            let e = text.parse::<LogTemplate>().unwrap_err();
            assert!(e.what.contains(named), "{text}: {e:?}");
            assert!(!e.fix.is_empty());
        }
    }

    #[test]
    fn native_values_round_trip_through_toml() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct G {
            f: LogFormat,
        }
        for text in ["tcplog", "json", "%ci [%t] %{+Q}b"] {
            let g = G {
                f: text.parse().unwrap(),
            };
            let back: G = toml::from_str(&toml::to_string(&g).unwrap()).unwrap();
            assert_eq!(back, g);
        }
        let e = toml::from_str::<G>("f = \"%xx\"").unwrap_err().to_string();
        assert!(e.contains("%xx") && e.contains("fix"), "{e}");
    }

    proptest! {
        /// Any text compiles or is refused without panicking, and a compiled template keeps
        /// its text and renders its literals in order.
        #[test]
        fn any_text_compiles_or_is_refused(text in "[%a-zA-Z{}\\[\\]+. :/]{0,40}") {
            if let Ok(t) = text.parse::<LogTemplate>() {
                prop_assert_eq!(t.text(), text.as_str());
                let literal: String = t.parts().iter().filter_map(|p| match p {
                    Part::Literal(l) => Some(l.as_str()),
                    Part::Var { .. } => None,
                }).collect();
                prop_assert!(literal.len() <= text.len());
            }
        }
    }
}
