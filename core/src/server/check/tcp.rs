//! `option tcp-check` with `tcp-check connect [default] [port N] [addr IP] [ssl] [sni NAME]
//! [send-proxy]`, `send`, `send-binary` and `expect`: a check written as a sequence of steps.

use super::expect::{split_words, unhex, Expect};
use super::{CheckError, Connect, Step};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One `tcp-check` rule (native `steps = [{ send = "PING\r\n" }, { expect = "string +PONG" }]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum TcpStep {
    /// `tcp-check connect [default] [port N] [addr IP] [ssl] [sni NAME] [send-proxy]`: (re)connect.
    Connect(ConnectStep),
    /// `tcp-check send STRING`.
    Send(String),
    /// `tcp-check send-binary HEX`.
    SendBinary(String),
    /// `tcp-check expect ...` in HAProxy's words (`"string +PONG"`, `"! rstring ^E"`).
    Expect(String),
}

/// Where a `connect` step goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectStep {
    /// Port instead of the server's check port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Address instead of the server's check address (`addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    /// Over TLS, with the server's check TLS settings (`ssl`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssl: bool,
    /// The server name the TLS handshake sends (`sni`); without it a written-out connect
    /// sends none, a `default` one the server's `check-sni`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A PROXY header first (`send-proxy`), in the server's version (a LOCAL one in v2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_proxy: bool,
    /// With the server's settings (`default`): over TLS when the server has `check-ssl`, its
    /// `check-sni`, and a PROXY header when its checks send one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

impl ConnectStep {
    fn compile(&self) -> Result<Connect, CheckError> {
        if let Some(n) = &self.sni {
            rustls::pki_types::ServerName::try_from(n.as_str()).map_err(|_| {
                CheckError::new(
                    format!("tcp-check connect sni `{n}` is not a host name"),
                    "write a host name, e.g. sni api.example",
                )
            })?;
        }
        Ok(Connect {
            port: self.port,
            addr: self.addr,
            default: self.default,
            ssl: self.ssl,
            sni: self.sni.as_deref().map(Into::into),
            send_proxy: self.send_proxy,
        })
    }
}

impl TcpStep {
    /// The step the probe runs.
    pub(super) fn compile(&self) -> Result<Step, CheckError> {
        Ok(match self {
            TcpStep::Connect(c) => Step::Connect(c.compile()?),
            TcpStep::Send(s) => Step::Send(s.as_bytes().to_vec()),
            TcpStep::SendBinary(h) => Step::Send(unhex(h)?),
            TcpStep::Expect(e) => Step::Expect(Expect::parse_tcp(&split_words(e))?),
        })
    }

    /// Reads HAProxy's `tcp-check` words (after `tcp-check`), e.g. `["connect", "port",
    /// "8008"]`, `["send", "PING\r\n"]`; `None` for the keyword itself when unsupported.
    pub fn from_haproxy(words: &[String]) -> Result<TcpStep, CheckError> {
        let arg = |i: usize| words.get(i).cloned().unwrap_or_default();
        match words.first().map(String::as_str).unwrap_or("") {
            "connect" => connect(&words[1..]),
            "send" if words.len() == 2 => Ok(TcpStep::Send(arg(1))),
            "send-binary" if words.len() == 2 => Ok(TcpStep::SendBinary(arg(1))),
            "expect" => {
                Expect::parse_tcp(&words[1..])?;
                Ok(TcpStep::Expect(join_quoted(&words[1..])))
            }
            other => Err(CheckError::new(
                format!("unsupported tcp-check rule `{other}`"),
                "tether runs tcp-check connect [port N], send, send-binary and expect",
            )),
        }
    }
}

fn connect(words: &[String]) -> Result<TcpStep, CheckError> {
    let mut step = ConnectStep::default();
    let mut i = 0;
    while i < words.len() {
        match (words[i].as_str(), words.get(i + 1)) {
            ("port", Some(p)) => {
                step.port = Some(p.parse().map_err(|_| {
                    CheckError::new(
                        format!("`port {p}` is not a port"),
                        "write e.g. tcp-check connect port 8008",
                    )
                })?);
                i += 1;
            }
            ("addr", Some(a)) => {
                step.addr = Some(a.parse().map_err(|_| {
                    CheckError::new(
                        format!("`addr {a}` is not an IP address"),
                        "write e.g. tcp-check connect addr 10.0.0.5 port 8008",
                    )
                })?);
                i += 1;
            }
            ("sni", Some(n)) => {
                step.sni = Some(n.clone());
                i += 1;
            }
            ("ssl", _) => step.ssl = true,
            ("send-proxy", _) => step.send_proxy = true,
            ("default", _) => step.default = true,
            ("linger", _) => {}
            ("comment", Some(_)) => i += 1,
            (w, _) => {
                return Err(CheckError::new(
                    format!("unsupported tcp-check connect option `{w}`"),
                    "tether connects with `default`, `port N`, `addr IP`, `ssl`, `sni NAME` and \
                 `send-proxy` (no `alpn`, `proto` or `via-socks4`)",
                ))
            }
        }
        i += 1;
    }
    Ok(TcpStep::Connect(step))
}

/// Words back into one native rule string, quoting those with spaces or quotes.
pub fn join_quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains([' ', '"', '\\']) || w.chars().any(char::is_whitespace) {
                format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn haproxy_rules_become_steps_and_round_trip_through_native_strings() {
        let s = TcpStep::from_haproxy(&words(&["connect", "port", "8008"])).unwrap();
        assert_eq!(
            s,
            TcpStep::Connect(ConnectStep {
                port: Some(8008),
                ..Default::default()
            })
        );
        let s = TcpStep::from_haproxy(&words(&["expect", "string", "role: master"])).unwrap();
        assert_eq!(s, TcpStep::Expect("string \"role: master\"".into()));
        match s.compile().unwrap() {
            Step::Expect(e) => assert!(matches!(
                e.eval(b"x role: master", false),
                super::super::expect::Outcome::Pass(_)
            )),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            TcpStep::from_haproxy(&words(&["send-binary", "2a31"])).unwrap().compile().unwrap(),
            Step::Send(b) if b == b"*1"
        ));
    }

    #[test]
    fn unsupported_rules_say_so() {
        for bad in [
            &["connect", "alpn", "h2"][..],
            &["connect", "sni"],
            &["connect", "addr", "db.example"],
            &["set-var(check.x)", "1"],
            &["send"],
            &["connect", "port", "x"],
        ] {
            assert!(TcpStep::from_haproxy(&words(bad)).is_err(), "{bad:?}");
        }
    }
}
