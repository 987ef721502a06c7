//! What a rule asks of a connection: tests on its addresses and its ClientHello, combined with
//! and / or / not. [`Condition::eval`] is the reference meaning the compiled matcher must agree
//! with.

use super::cidr::Cidr;
use super::facts::{Facts, HelloFacts};
use super::regex::NameRegex;
use crate::tls::ProtocolVersion;

/// A boolean combination of [`Test`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Always true (a rule without a condition).
    Always,
    /// One test.
    Test(Test),
    /// True when the inner condition is false.
    Not(Box<Condition>),
    /// True when every inner condition is (true when empty).
    All(Vec<Condition>),
    /// True when one inner condition is (false when empty).
    Any(Vec<Condition>),
}

/// One thing known about a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// The ClientHello's server name matches.
    ServerName(NameMatch),
    /// The ClientHello's server name matches one of these regular expressions (`-m reg`).
    ServerNameRegex(NameRegex),
    /// A ClientHello without a server name was read.
    NoServerName,
    /// The client address is in one of the networks.
    Source(Vec<Cidr>),
    /// The address the client connected to is in one of the networks.
    Destination(Vec<Cidr>),
    /// The port the client connected to is in one of the inclusive ranges.
    DestinationPort(Vec<(u16, u16)>),
    /// The ClientHello offers one of these versions (its supported_versions extension, or its
    /// legacy version when it has none).
    TlsVersion(Vec<ProtocolVersion>),
    /// The ClientHello's legacy version is in one of the inclusive ranges (HAProxy's
    /// `req.ssl_ver`, where a TLS 1.3 client says 3.3).
    HelloVersion(Vec<(u16, u16)>),
    /// The ClientHello offers one of these ALPN protocols.
    Alpn(Vec<Vec<u8>>),
    /// A complete ClientHello was read (HAProxy's `req_ssl_hello_type 1`).
    ClientHello,
    /// The client sent bytes that are not a TLS handshake.
    NotTls,
}

/// How a server name is compared with a list of values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameMatch {
    /// The comparison.
    pub method: NameMethod,
    /// Compare ASCII letters without regard to case (DNS names; HAProxy's `-i`).
    pub ignore_case: bool,
    /// The values; for [`NameMethod::Wildcard`] the suffix after `*.`.
    pub values: Vec<String>,
}

/// The comparison of a [`NameMatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameMethod {
    /// The whole name (HAProxy `-m str`).
    Exact,
    /// A name with at least one more label before `.value` (`*.example.com`).
    Wildcard,
    /// The name starts with the value (`-m beg`).
    Prefix,
    /// The name ends with the value, on any character (`-m end`).
    Suffix,
    /// The value is somewhere in the name (`-m sub`).
    Substring,
    /// The value is in the name as whole labels, delimited by `.` or `/` (`-m dom`).
    Domain,
}

impl Condition {
    /// Whether the condition holds for `facts`: the meaning every faster evaluation must match.
    pub fn eval(&self, facts: &Facts<'_>) -> bool {
        match self {
            Condition::Always => true,
            Condition::Test(t) => t.eval(facts),
            Condition::Not(c) => !c.eval(facts),
            Condition::All(cs) => cs.iter().all(|c| c.eval(facts)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(facts)),
        }
    }

    /// Whether deciding needs the ClientHello (or knowing there is none).
    pub fn needs_hello(&self) -> bool {
        match self {
            Condition::Always => false,
            Condition::Test(t) => t.needs_hello(),
            Condition::Not(c) => c.needs_hello(),
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::needs_hello),
        }
    }

    /// Every test in the condition, depth first.
    pub fn tests(&self) -> Vec<&Test> {
        let mut out = Vec::new();
        self.collect_tests(&mut out);
        out
    }

    fn collect_tests<'s>(&'s self, out: &mut Vec<&'s Test>) {
        match self {
            Condition::Always => {}
            Condition::Test(t) => out.push(t),
            Condition::Not(c) => c.collect_tests(out),
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.collect_tests(out)),
        }
    }

    /// Both conditions (flattening nested `All`s, dropping `Always`).
    pub fn and(self, other: Condition) -> Condition {
        match (self, other) {
            (Condition::Always, c) | (c, Condition::Always) => c,
            (Condition::All(mut a), Condition::All(b)) => {
                a.extend(b);
                Condition::All(a)
            }
            (Condition::All(mut a), c) => {
                a.push(c);
                Condition::All(a)
            }
            (c, Condition::All(mut b)) => {
                b.insert(0, c);
                Condition::All(b)
            }
            (a, b) => Condition::All(vec![a, b]),
        }
    }
}

impl Test {
    /// Whether the test needs the ClientHello.
    pub fn needs_hello(&self) -> bool {
        !matches!(
            self,
            Test::Source(_) | Test::Destination(_) | Test::DestinationPort(_)
        )
    }

    /// Whether the test holds for `facts`.
    pub fn eval(&self, facts: &Facts<'_>) -> bool {
        let hello = match &facts.hello {
            HelloFacts::Hello(h) => Some(h),
            _ => None,
        };
        match self {
            Test::ServerName(m) => hello
                .and_then(|h| h.server_name())
                .is_some_and(|n| m.matches(n)),
            Test::ServerNameRegex(r) => hello
                .and_then(|h| h.server_name())
                .is_some_and(|n| r.matches(n)),
            Test::NoServerName => hello.is_some_and(|h| h.server_name().is_none()),
            Test::Source(nets) => nets.iter().any(|n| n.contains(facts.source)),
            Test::Destination(nets) => nets.iter().any(|n| n.contains(facts.destination.ip())),
            Test::DestinationPort(ranges) => in_ranges(ranges, facts.destination.port()),
            Test::TlsVersion(vs) => hello.is_some_and(|h| {
                let mut offered = h.supported_versions().peekable();
                if offered.peek().is_none() {
                    vs.contains(&h.legacy_version())
                } else {
                    offered.any(|v| vs.contains(&v))
                }
            }),
            Test::HelloVersion(ranges) => {
                hello.is_some_and(|h| in_ranges(ranges, h.legacy_version().0))
            }
            Test::Alpn(protos) => {
                hello.is_some_and(|h| h.alpn().any(|p| protos.iter().any(|x| x == p)))
            }
            Test::ClientHello => hello.is_some(),
            Test::NotTls => matches!(facts.hello, HelloFacts::NotTls),
        }
    }
}

fn in_ranges(ranges: &[(u16, u16)], v: u16) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= v && v <= hi)
}

impl NameMatch {
    /// Whether `name` matches one of the values.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.values
            .iter()
            .any(|v| name_matches(self.method, self.ignore_case, name, v.as_bytes()))
    }
}

fn eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// One comparison of a name with one value.
pub(crate) fn name_matches(method: NameMethod, ic: bool, name: &[u8], v: &[u8]) -> bool {
    match method {
        NameMethod::Exact => eq(name, v, ic),
        NameMethod::Wildcard => {
            name.len() > v.len() + 1
                && name[name.len() - v.len() - 1] == b'.'
                && eq(&name[name.len() - v.len()..], v, ic)
        }
        NameMethod::Prefix => name.len() >= v.len() && eq(&name[..v.len()], v, ic),
        NameMethod::Suffix => name.len() >= v.len() && eq(&name[name.len() - v.len()..], v, ic),
        NameMethod::Substring => v.is_empty() || name.windows(v.len()).any(|w| eq(w, v, ic)),
        NameMethod::Domain => domain_matches(name, v, ic),
    }
}

/// HAProxy's `-m dom`: `v` occurs in `name` bounded by the ends or by `.` / `/`.
fn domain_matches(name: &[u8], v: &[u8], ic: bool) -> bool {
    if v.is_empty() || v.len() > name.len() {
        return false;
    }
    let delim = |b: u8| b == b'.' || b == b'/';
    (0..=name.len() - v.len()).any(|i| {
        let before = i == 0 || delim(name[i - 1]);
        let end = i + v.len();
        let after = end == name.len() || delim(name[end]);
        before && after && eq(&name[i..end], v, ic)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_methods() {
        use NameMethod::*;
        let m = |method, ic, n: &str, v: &str| name_matches(method, ic, n.as_bytes(), v.as_bytes());
        assert!(m(Exact, true, "API.example.com", "api.example.com"));
        assert!(!m(Exact, false, "API.example.com", "api.example.com"));
        assert!(m(Wildcard, true, "a.b.example.com", "example.com"));
        assert!(!m(Wildcard, true, "example.com", "example.com"));
        assert!(!m(Wildcard, true, "badexample.com", "example.com"));
        assert!(m(Suffix, false, "badexample.com", "example.com"));
        assert!(m(Prefix, false, "api.x", "api."));
        assert!(m(Substring, false, "my-api.x", "api"));
        assert!(m(Domain, false, "www.example.com", "example.com"));
        assert!(m(Domain, false, "example.com", "example.com"));
        assert!(!m(Domain, false, "myexample.com", "example.com"));
    }
}
