//! `[[frontend.route]]`: a frontend's ordered routing and filtering rules, as an operator writes
//! them, and their translation into the engine's [`crate::route`] rules.
//!
//! ```toml
//! [[frontend]]
//! name = "main"
//! bind = ["0.0.0.0:443"]
//! backend = "web"                       # the default: where no rule sends a connection
//!
//! [[frontend.route]]                    # rules run in order; the first that holds decides
//! name = "blocklist"                    # optional: logs say route=blocklist (else route=1)
//! if = { source-file = "/etc/tether/blocked.txt" }
//! action = "reject"
//!
//! [[frontend.route]]
//! if = { server-name = ["api.example.com", "*.api.example.com"] }
//! use-backend = "api"
//!
//! [[frontend.route]]
//! unless = { source = ["10.0.0.0/8"] }
//! action = "reject"
//! ```
//! A condition table holds tests that must all hold; `any = [{..}, {..}]`, `all = [..]` and
//! `not = {..}` combine them. Server names compare without case (DNS), `*.example.com` matches
//! any name under example.com (not example.com itself). Files hold one entry a line (`#`
//! comments), as HAProxy's `-f`, and are read at load and at every reload.

use serde::{Deserialize, Serialize};

use crate::route::{self, Cidr, Condition, NameMatch, NameMethod, NameRegex, RouteAction, Test};
use crate::tls::ProtocolVersion;

/// One rule of a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteRule {
    /// How logs name the rule (`route=NAME`); empty: its 1-based position.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The rule applies when this holds.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub when: Option<Match>,
    /// The rule applies when this does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Match>,
    /// Send the connection to this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_backend: Option<String>,
    /// Or refuse it, or stop here and use the default backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
}

/// `action = "reject" | "accept"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Close the connection without connecting anywhere.
    Reject,
    /// Stop evaluating and use the frontend's default backend.
    Accept,
}

/// A condition: every test written holds (and `any`, `all`, `not` combine conditions).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Match {
    /// The server name is one of these (`*.suffix` for any name under suffix), any case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_name: Vec<String>,
    /// Like `server-name`, from a file with one name a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name_file: Option<String>,
    /// Another comparison of the server name (prefix, suffix, contains, domain; case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_match: Option<NameMatchSpec>,
    /// The ClientHello has no server name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_server_name: bool,
    /// The client address is in one of these networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Like `source`, from a file with one network a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    /// The address the client connected to is in one of these networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<String>,
    /// Like `destination`, from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_file: Option<String>,
    /// The port the client connected to: `443` or `"8000-8100"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_port: Vec<PortSpec>,
    /// The ClientHello offers one of these versions: `"1.2"`, `"1.3"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_version: Vec<String>,
    /// The ClientHello's legacy version (HAProxy `req.ssl_ver`): `"3.3"` or `"3.1:3.3"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hello_version: Vec<String>,
    /// The ClientHello offers one of these ALPN protocols.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// A ClientHello was read (`true`) or not (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hello: Option<bool>,
    /// The client's first bytes are not TLS (`true`) or are (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_tls: Option<bool>,
    /// One of these conditions holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<Match>,
    /// Every one of these conditions holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<Match>,
    /// This condition does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Match>>,
}

/// A server-name comparison other than exact / `*.suffix` without case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NameMatchSpec {
    /// `exact`, `wildcard`, `prefix`, `suffix`, `contains`, `domain` or `regex`.
    pub method: NameMethodName,
    /// The values compared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// More values, from a file with one a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Compare letters without regard to case (HAProxy `-i`).
    #[serde(default = "yes")]
    pub ignore_case: bool,
}

fn yes() -> bool {
    true
}

/// The method of a [`NameMatchSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameMethodName {
    /// The whole name.
    Exact,
    /// `*.value`.
    Wildcard,
    /// Starts with.
    Prefix,
    /// Ends with (any character boundary).
    Suffix,
    /// Contains.
    Contains,
    /// Whole labels inside the name.
    Domain,
    /// A regular expression found anywhere in the name (anchor with `^` / `$`); rules with one
    /// are evaluated in order, outside the name index (HAProxy `-m reg`).
    Regex,
}

/// A port or an inclusive range `"LOW-HIGH"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Port(u16),
    /// `"8000-8100"`.
    Range(String),
}

/// One problem in a rule: the key under the rule (`if.source`), what, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProblem {
    /// Key path under the rule, e.g. `if.source`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

fn problem(key: &str, message: impl Into<String>, fix: impl Into<String>) -> RouteProblem {
    RouteProblem {
        key: key.to_string(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// Reads a list file: one entry a line, blank lines and `#` comments skipped; a file that
/// cannot be read or holds no entry is a problem (a blocklist that silently matches nothing
/// would drop the restriction it was written for).
pub fn read_list_file(path: &str) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read list file {path}: {e}"))?;
    let entries: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if entries.is_empty() {
        return Err(format!("list file {path} holds no entry"));
    }
    Ok(entries)
}

/// Translates a frontend's rules; `backends` are the defined backend names, in order, and a
/// rule's `use-backend` becomes an index into them.
pub fn compile_rules(
    rules: &[RouteRule],
    backends: &[&str],
) -> Result<Vec<route::Rule>, Vec<(usize, RouteProblem)>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match compile_rule(r, backends) {
            Ok(rule) => out.push(rule),
            Err(ps) => problems.extend(ps.into_iter().map(|p| (i, p))),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn compile_rule(r: &RouteRule, backends: &[&str]) -> Result<route::Rule, Vec<RouteProblem>> {
    let mut problems = Vec::new();
    let action = match (&r.use_backend, r.action) {
        (Some(b), None) => match backends.iter().position(|n| n == b) {
            Some(i) => Some(RouteAction::UseBackend(i)),
            None => {
                problems.push(problem(
                    "use-backend",
                    format!("unknown backend \"{b}\""),
                    format!("write one of the defined backends: {}", backends.join(", ")),
                ));
                None
            }
        },
        (None, Some(RuleAction::Reject)) => Some(RouteAction::Reject),
        (None, Some(RuleAction::Accept)) => Some(RouteAction::Accept),
        _ => {
            problems.push(problem(
                "action",
                "a rule needs exactly one of use-backend and action",
                "write use-backend = \"api\", or action = \"reject\" or \"accept\"",
            ));
            None
        }
    };
    let mut when = Condition::Always;
    if let Some(m) = &r.when {
        when = when.and(m.condition("if", &mut problems));
    }
    if let Some(m) = &r.unless {
        when = when.and(Condition::Not(Box::new(
            m.condition("unless", &mut problems),
        )));
    }
    match action {
        Some(action) if problems.is_empty() => Ok(route::Rule {
            when,
            action,
            label: r.name.clone(),
        }),
        _ => Err(problems),
    }
}

impl Match {
    /// The condition this table writes; problems are added under key `at`.
    pub fn condition(&self, at: &str, problems: &mut Vec<RouteProblem>) -> Condition {
        let mut all = Vec::new();
        let key = |k: &str| format!("{at}.{k}");
        self.name_tests(at, problems, &mut all);
        if self.no_server_name {
            all.push(Condition::Test(Test::NoServerName));
        }
        let nets = |list: &[String], file: &Option<String>, k: &str, ps: &mut Vec<RouteProblem>| {
            let mut entries = list.to_vec();
            if let Some(f) = file {
                match read_list_file(f) {
                    Ok(more) => entries.extend(more),
                    Err(e) => ps.push(problem(
                        &key(&format!("{k}-file")),
                        e,
                        "write the path of a file with one network a line, e.g. 10.0.0.0/8",
                    )),
                }
            }
            let mut out = Vec::new();
            for e in &entries {
                match e.parse::<Cidr>() {
                    Ok(c) => out.push(c),
                    Err(err) => ps.push(problem(
                        &key(k),
                        err.to_string(),
                        "write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32",
                    )),
                }
            }
            if list.is_empty() && file.is_none() {
                None
            } else {
                Some(out)
            }
        };
        if let Some(v) = nets(&self.source, &self.source_file, "source", problems) {
            all.push(Condition::Test(Test::Source(v)));
        }
        if let Some(v) = nets(
            &self.destination,
            &self.destination_file,
            "destination",
            problems,
        ) {
            all.push(Condition::Test(Test::Destination(v)));
        }
        self.hello_tests(at, problems, &mut all);
        for m in &self.all {
            all.push(m.condition(&key("all"), problems));
        }
        if !self.any.is_empty() {
            let any = self
                .any
                .iter()
                .map(|m| m.condition(&key("any"), problems))
                .collect();
            all.push(Condition::Any(any));
        }
        if let Some(m) = &self.not {
            all.push(Condition::Not(Box::new(m.condition(&key("not"), problems))));
        }
        match all.len() {
            0 => {
                problems.push(problem(at, "an empty condition", "write a test, e.g. { server-name = [\"api.example.com\"] }, or leave `if` out to match every connection"));
                Condition::Always
            }
            1 => all.pop().expect("one"),
            _ => Condition::All(all),
        }
    }

    fn name_tests(&self, at: &str, problems: &mut Vec<RouteProblem>, all: &mut Vec<Condition>) {
        let mut names = self.server_name.clone();
        if let Some(f) = &self.server_name_file {
            match read_list_file(f) {
                Ok(more) => names.extend(more),
                Err(e) => problems.push(problem(
                    &format!("{at}.server-name-file"),
                    e,
                    "write the path of a file with one server name a line",
                )),
            }
        }
        if !names.is_empty() || self.server_name_file.is_some() {
            let (wild, exact): (Vec<String>, Vec<String>) =
                names.into_iter().partition(|n| n.starts_with("*."));
            let wild: Vec<String> = wild.into_iter().map(|w| w[2..].to_string()).collect();
            if let Some(bad) = exact
                .iter()
                .chain(&wild)
                .find(|n| n.is_empty() || n.contains('*'))
            {
                problems.push(problem(
                    &format!("{at}.server-name"),
                    format!("invalid server name \"{bad}\""),
                    "write a name (api.example.com) or a wildcard in front (*.example.com)",
                ));
            }
            let test = |method, values: Vec<String>| {
                Condition::Test(Test::ServerName(NameMatch {
                    method,
                    ignore_case: true,
                    values,
                }))
            };
            let mut either = Vec::new();
            if !exact.is_empty() {
                either.push(test(NameMethod::Exact, exact));
            }
            if !wild.is_empty() {
                either.push(test(NameMethod::Wildcard, wild));
            }
            all.push(if either.len() == 1 {
                either.pop().expect("one")
            } else {
                Condition::Any(either)
            });
        }
        if let Some(spec) = &self.name_match {
            let mut values = spec.values.clone();
            if let Some(f) = &spec.file {
                match read_list_file(f) {
                    Ok(more) => values.extend(more),
                    Err(e) => problems.push(problem(
                        &format!("{at}.name-match.file"),
                        e,
                        "write the path of a file with one value a line",
                    )),
                }
            }
            if values.is_empty() && spec.file.is_none() {
                problems.push(problem(
                    &format!("{at}.name-match"),
                    "no value to compare with",
                    "write values = [\"api.\"]",
                ));
            }
            let method = match spec.method {
                NameMethodName::Regex => {
                    match NameRegex::new(values, spec.ignore_case) {
                        Ok(r) => all.push(Condition::Test(Test::ServerNameRegex(r))),
                        Err(e) => {
                            all.push(Condition::Any(Vec::new()));
                            problems.push(problem(
                            &format!("{at}.name-match.values"),
                            e.to_string(),
                            "write a regular expression in Rust regex syntax, e.g. \"^api[0-9]+\\\\.example\\\\.com$\" (escape a literal dot as \\\\.)",
                        ));
                        }
                    }
                    return;
                }
                NameMethodName::Exact => NameMethod::Exact,
                NameMethodName::Wildcard => NameMethod::Wildcard,
                NameMethodName::Prefix => NameMethod::Prefix,
                NameMethodName::Suffix => NameMethod::Suffix,
                NameMethodName::Contains => NameMethod::Substring,
                NameMethodName::Domain => NameMethod::Domain,
            };
            all.push(Condition::Test(Test::ServerName(NameMatch {
                method,
                ignore_case: spec.ignore_case,
                values,
            })));
        }
    }

    fn hello_tests(&self, at: &str, problems: &mut Vec<RouteProblem>, all: &mut Vec<Condition>) {
        if !self.destination_port.is_empty() {
            let mut ranges = Vec::new();
            for p in &self.destination_port {
                match p.range() {
                    Some(r) => ranges.push(r),
                    None => problems.push(problem(
                        &format!("{at}.destination-port"),
                        format!("invalid port or range {p:?}"),
                        "write 443 or \"8000-8100\"",
                    )),
                }
            }
            all.push(Condition::Test(Test::DestinationPort(ranges)));
        }
        if !self.tls_version.is_empty() {
            let mut vs = Vec::new();
            for v in &self.tls_version {
                match tls_version(v) {
                    Some(v) => vs.push(v),
                    None => problems.push(problem(
                        &format!("{at}.tls-version"),
                        format!("unknown TLS version \"{v}\""),
                        "write \"1.0\", \"1.1\", \"1.2\" or \"1.3\"",
                    )),
                }
            }
            all.push(Condition::Test(Test::TlsVersion(vs)));
        }
        if !self.hello_version.is_empty() {
            let mut ranges = Vec::new();
            for v in &self.hello_version {
                match dotted_range(v) {
                    Some(r) => ranges.push(r),
                    None => problems.push(problem(
                        &format!("{at}.hello-version"),
                        format!("invalid version \"{v}\""),
                        "write MAJOR.MINOR or a range, e.g. \"3.3\" or \"3.1:3.3\"",
                    )),
                }
            }
            all.push(Condition::Test(Test::HelloVersion(ranges)));
        }
        if !self.alpn.is_empty() {
            let protos = self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
            all.push(Condition::Test(Test::Alpn(protos)));
        }
        let flag = |v: bool, t: Test| {
            let c = Condition::Test(t);
            if v {
                c
            } else {
                Condition::Not(Box::new(c))
            }
        };
        if let Some(v) = self.client_hello {
            all.push(flag(v, Test::ClientHello));
        }
        if let Some(v) = self.not_tls {
            all.push(flag(v, Test::NotTls));
        }
    }
}

impl Match {
    /// Whether a `destination` address test appears anywhere in the condition.
    pub fn mentions_destination(&self) -> bool {
        !self.destination.is_empty()
            || self.destination_file.is_some()
            || self
                .any
                .iter()
                .chain(&self.all)
                .any(Match::mentions_destination)
            || self.not.as_deref().is_some_and(Match::mentions_destination)
    }
}

impl PortSpec {
    /// The inclusive range, if well written.
    pub fn range(&self) -> Option<(u16, u16)> {
        match self {
            PortSpec::Port(p) => Some((*p, *p)),
            PortSpec::Range(s) => {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                (a <= b).then_some((a, b))
            }
        }
    }
}

/// `"1.2"` → TLS 1.2.
fn tls_version(v: &str) -> Option<ProtocolVersion> {
    Some(
        match v
            .trim()
            .trim_start_matches("TLSv")
            .trim_start_matches("tls")
        {
            "1.0" | "1" => ProtocolVersion::TLS1_0,
            "1.1" => ProtocolVersion::TLS1_1,
            "1.2" => ProtocolVersion::TLS1_2,
            "1.3" => ProtocolVersion::TLS1_3,
            _ => return None,
        },
    )
}

/// `"3.3"` → (0x0303, 0x0303); `"3.1:3.3"` a range; an open end (`"3.1:"`) reaches the limit.
pub fn dotted_range(v: &str) -> Option<(u16, u16)> {
    let one = |s: &str| -> Option<u16> {
        let (maj, min) = s.trim().split_once('.')?;
        let (maj, min): (u8, u8) = (maj.parse().ok()?, min.parse().ok()?);
        Some(u16::from(maj) << 8 | u16::from(min))
    };
    match v.split_once(':') {
        None => one(v).map(|x| (x, x)),
        Some((a, b)) => {
            let lo = if a.trim().is_empty() { 0 } else { one(a)? };
            let hi = if b.trim().is_empty() {
                u16::MAX
            } else {
                one(b)?
            };
            (lo <= hi).then_some((lo, hi))
        }
    }
}

#[cfg(test)]
mod tests;
