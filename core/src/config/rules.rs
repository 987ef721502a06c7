//! HAProxy rule semantics for a backend (`[backend.haproxy]`).
//!
//! A backend imported from haproxy.cfg keeps HAProxy's own rules (stick on/match/store-request/
//! store-response, tcp-request/tcp-response content rules and their inspect delays) instead of
//! tether's native affinity chain, so it behaves as HAProxy 2.6 does, quirks included: with no
//! `response-inspect-delay`, response rules are evaluated once on an empty buffer and a
//! `store-response` rule never stores anything.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::units::duration_text;

/// The HAProxy rules of one backend, in HAProxy's evaluation order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HaproxyRules {
    /// `tcp-request inspect-delay`: how long request content rules may wait for data. Absent: the
    /// rules are evaluated at once on whatever has arrived (usually nothing), as HAProxy does.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_inspect_delay: Option<Duration>,
    /// `tcp-request content` rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_content: Vec<ContentRule>,
    /// `tcp-response inspect-delay`. Absent: response rules run once, when the server connection
    /// opens, on an empty buffer, so `store-response` never fires (HAProxy ≥ 2.2).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_inspect_delay: Option<Duration>,
    /// `tcp-response content` rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_content: Vec<ContentRule>,
    /// `stick` rules in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stick: Vec<StickRule>,
}

/// One `tcp-request content` or `tcp-response content` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContentRule {
    /// What to do when the condition holds.
    pub action: ContentAction,
    /// When the rule applies.
    #[serde(default)]
    pub when: Condition,
}

/// The action of a content rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentAction {
    /// Stop inspecting and go on: the rules have seen what they need.
    Accept,
    /// Close the connection.
    Reject,
}

/// One `stick` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StickRule {
    /// Match, store, or both.
    pub action: StickAction,
    /// The key, taken from the request or the response.
    pub sample: Sample,
    /// When the rule applies.
    #[serde(default)]
    pub when: Condition,
}

/// What a stick rule does with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StickAction {
    /// `stick on`: `match` then `store-request`.
    On,
    /// `stick match`: look the key up and go to its server.
    Match,
    /// `stick store-request`: remember the key → the server finally used.
    StoreRequest,
    /// `stick store-response`: remember a key read from the server's response.
    StoreResponse,
}

/// A sample fetch a stick rule reads its key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// `payload_lv(offset,len_size)`: `len_size` bytes at `offset` give a length, the value
    /// follows. `payload_lv(43,1)` is the TLS session ID.
    PayloadLv {
        /// Where the length field starts.
        offset: u32,
        /// How many bytes the length field has (1, 2 or 4).
        len_size: u8,
    },
    /// `req.ssl_sni`: the server_name of the ClientHello.
    Sni,
    /// `src`: the client address.
    Src,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sample::PayloadLv { offset, len_size } => write!(f, "payload-lv({offset},{len_size})"),
            Sample::Sni => f.write_str("sni"),
            Sample::Src => f.write_str("src"),
        }
    }
}

impl FromStr for Sample {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid sample \"{s}\": expected \"payload-lv(43,1)\", \"sni\" or \"src\"");
        match s.trim() {
            "sni" => return Ok(Sample::Sni),
            "src" => return Ok(Sample::Src),
            _ => {}
        }
        let inner = s
            .trim()
            .strip_prefix("payload-lv(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        let (a, b) = inner.split_once(',').ok_or_else(bad)?;
        let offset: u32 = a.trim().parse().map_err(|_| bad())?;
        let len_size: u8 = b.trim().parse().map_err(|_| bad())?;
        if !matches!(len_size, 1 | 2 | 4) {
            return Err(format!(
                "invalid sample \"{s}\": the length field size must be 1, 2 or 4 bytes"
            ));
        }
        Ok(Sample::PayloadLv { offset, len_size })
    }
}

/// When a rule applies: the ACL conditions tether understands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Condition {
    /// Always (no condition, or `if TRUE`).
    #[default]
    Always,
    /// `req_ssl_hello_type 1`: the buffered request starts with a TLS ClientHello.
    ClientHello,
    /// `rep_ssl_hello_type 2`: the buffered response starts with a TLS ServerHello.
    ServerHello,
    /// `req.ssl_sni` equals one of these names (compared case-insensitively).
    Sni(Vec<String>),
    /// `src` is one of these addresses or networks (`10.0.0.0/8`).
    Src(Vec<String>),
    /// The negation (`if !acl` or `unless acl`).
    Not(Box<Condition>),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Always => f.write_str("always"),
            Condition::ClientHello => f.write_str("client-hello"),
            Condition::ServerHello => f.write_str("server-hello"),
            Condition::Sni(v) => write!(f, "sni({})", v.join(",")),
            Condition::Src(v) => write!(f, "src({})", v.join(",")),
            Condition::Not(c) => write!(f, "!{c}"),
        }
    }
}

impl FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix('!') {
            return Ok(Condition::Not(Box::new(rest.parse()?)));
        }
        let list = |prefix: &str| -> Option<Vec<String>> {
            let inner = t.strip_prefix(prefix)?.strip_suffix(')')?;
            let items: Vec<String> = inner
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            (!items.is_empty()).then_some(items)
        };
        match t {
            "always" => Ok(Condition::Always),
            "client-hello" => Ok(Condition::ClientHello),
            "server-hello" => Ok(Condition::ServerHello),
            _ => {
                if let Some(v) = list("sni(") {
                    Ok(Condition::Sni(v))
                } else if let Some(v) = list("src(") {
                    Ok(Condition::Src(v))
                } else {
                    Err(format!(
                        "invalid condition \"{s}\": expected \"always\", \"client-hello\", \
                         \"server-hello\", \"sni(a.example,b.example)\", \"src(10.0.0.0/8)\", \
                         or one of these prefixed with \"!\""
                    ))
                }
            }
        }
    }
}

macro_rules! serde_via_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_text!(Sample);
serde_via_text!(Condition);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_conditions_round_trip_through_text() {
        for s in ["payload-lv(43,1)", "sni", "src"] {
            assert_eq!(s.parse::<Sample>().unwrap().to_string(), s);
        }
        for c in [
            "always",
            "client-hello",
            "!server-hello",
            "sni(a.example,b.example)",
            "src(10.0.0.0/8)",
        ] {
            assert_eq!(c.parse::<Condition>().unwrap().to_string(), c);
        }
        assert!("payload-lv(43,3)".parse::<Sample>().is_err());
        assert!("sni()".parse::<Condition>().is_err());
        assert!("hello".parse::<Condition>().is_err());
    }
}
