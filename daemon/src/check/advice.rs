//! Advice on a config that loads: what will defeat affinity in practice.
//!
//! The HAProxy-rule analysis here is shared by the haproxy.cfg importer (which knows the exact
//! line of each rule) and native TOML configs carrying `[backend.haproxy]` rules.

use super::{Finding, Severity};
use tether_core::config::{
    AffinityKey, Backend, Condition, Config, Sample, StickAction, StickRule,
};

/// Where the pieces of one backend's HAProxy rules are written.
#[derive(Debug, Clone, Default)]
pub struct RuleLines {
    /// The backend header.
    pub backend: usize,
    /// The stick-table line.
    pub stick_table: usize,
    /// Each stick rule, in order.
    pub stick: Vec<usize>,
    /// The last request-side rule line (where a missing `tcp-request inspect-delay` goes).
    pub request_rules: usize,
}

const SESSION_ID: Sample = Sample::PayloadLv {
    offset: 43,
    len_size: 1,
};

fn stores_on_request(r: &StickRule) -> bool {
    matches!(r.action, StickAction::On | StickAction::StoreRequest)
}

/// Findings about a backend driven by HAProxy rules: rules that never fire, keys that never
/// match, keys that tickets bypass.
pub fn rule_findings(file: &str, b: &Backend, lines: &RuleLines) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(rules) = &b.haproxy else {
        return out;
    };
    let line_of = |i: usize| lines.stick.get(i).copied().unwrap_or(lines.backend);
    let name = &b.name;
    for (i, r) in rules.stick.iter().enumerate() {
        if r.action == StickAction::StoreResponse && rules.response_inspect_delay.is_none() {
            out.push(Finding::new(
                Severity::Warning,
                file,
                line_of(i),
                format!("`stick store-response` in backend {name} never stores anything"),
                "without `tcp-response inspect-delay`, HAProxy (2.2 and later) evaluates the \
                 response rules once, when the server connection opens, on an empty buffer: \
                 the ServerHello is not there yet, so the rule never fires and the session IDs \
                 the servers issue are never learned. The table only learns from client \
                 requests, so affinity is learned backwards: a new handshake carries an empty \
                 session ID (nothing stored), the first resumption attempt stores its ID → \
                 whatever server roundrobin picked, which usually does not hold the session, does \
                 a full handshake and issues a new ID that is never learned either",
                format!(
                    "add `tcp-response inspect-delay 5s` to backend {name}; with tether, replace \
                     the stick rules by a native chain that learns from the ServerHello: \
                     affinity = [\"session-id\", \"ticket\", \"psk\", \"source\"]"
                ),
            ));
        }
        if stores_on_request(r) && r.sample == SESSION_ID && r.when != Condition::ServerHello {
            out.push(Finding::new(
                Severity::Warning,
                file,
                line_of(i),
                format!(
                    "backend {name} stores the ClientHello session ID (payload_lv(43,1)) from \
                     every client, including TLS 1.3 ones"
                ),
                format!(
                    "TLS 1.3 clients send 32 fresh random bytes as legacy_session_id on every \
                     connection (middlebox compatibility); each one becomes a table entry that \
                     never matches again, fills the table (size {} entries) and pushes out the \
                     entries that would have matched",
                    b.stick_table.size
                ),
                "learn session IDs from the server instead (`stick store-response \
                 payload_lv(43,1) if serverhello` plus `tcp-response inspect-delay 5s`) and use \
                 `stick match` on requests; with tether write affinity = [\"session-id\", \
                 \"ticket\", \"psk\", \"source\"], which never stores TLS 1.3 session IDs",
            ));
        }
        if stores_on_request(r) && r.when == Condition::ServerHello {
            out.push(Finding::new(
                Severity::Warning,
                file,
                line_of(i),
                "stick rule on the request side conditioned on a ServerHello never fires"
                    .to_string(),
                "request rules see the client's bytes, never the server's ServerHello",
                "use `stick store-response ... if serverhello` for server-side keys",
            ));
        }
        let reads_request = r.action != StickAction::StoreResponse && r.sample != Sample::Src;
        if reads_request && rules.request_inspect_delay.is_none() {
            out.push(Finding::new(
                Severity::Warning,
                file,
                line_of(i),
                format!(
                    "`stick {:?}` reads the request payload but backend {name} never waits for it",
                    r.action
                ),
                "without `tcp-request inspect-delay` the rules run at once on whatever has \
                 arrived, usually nothing, so the key is missing and the connection is balanced",
                format!("add `tcp-request inspect-delay 5s` to backend {name}"),
            ));
        }
    }
    let uses_session_id = rules.stick.iter().any(|r| r.sample == SESSION_ID);
    let only_session_id = rules.stick.iter().all(|r| r.sample == SESSION_ID);
    if uses_session_id && only_session_id {
        let line = rules
            .stick
            .iter()
            .position(|r| r.sample == SESSION_ID)
            .map(line_of)
            .unwrap_or(lines.backend);
        out.push(Finding::new(
            Severity::Warning,
            file,
            line,
            format!("TLS session tickets bypass the session-ID affinity of backend {name}"),
            "a TLS 1.2 server that issues a ticket sends an empty session ID in its ServerHello, \
             and the client resumes by presenting the ticket (its session ID is then random or \
             SHA-256 of the ticket); TLS 1.3 resumes with PSK identities only. Session-ID \
             stickiness therefore misses most resumptions of modern clients and servers",
            "with tether write affinity = [\"session-id\", \"ticket\", \"psk\", \"source\"] \
             (tickets are read from the cleartext TLS 1.2 NewSessionTicket, PSK identities from \
             the ClientHello); with HAProxy, stick on the client address instead: \
             `stick-table type ip size 60k expire 60m` and `stick on src`",
        ));
    }
    out
}

fn find_line(text: &str, from: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| pred(l.trim()))
        .map(|(i, _)| i + 1)
}

/// Advice for a native config that loaded without errors.
pub fn advise(file: &str, text: &str, config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in &config.backends {
        let name_line = find_line(text, 1, |l| {
            l.replace(' ', "") == format!("name=\"{}\"", b.name)
        })
        .unwrap_or(0);
        let affinity_line =
            find_line(text, name_line, |l| l.starts_with("affinity")).unwrap_or(name_line);
        if b.haproxy.is_some() {
            let rules_line = find_line(text, name_line, |l| l.starts_with("[backend.haproxy]"))
                .unwrap_or(name_line);
            let lines = RuleLines {
                backend: rules_line,
                stick_table: rules_line,
                stick: Vec::new(),
                request_rules: rules_line,
            };
            out.extend(rule_findings(file, b, &lines));
        }
        let Some(chain) = b.effective_affinity() else {
            continue;
        };
        let has = |k| chain.contains(&k);
        if chain.is_empty() {
            out.push(Finding::new(
                Severity::Info,
                file,
                affinity_line,
                format!("backend {} has no affinity", b.name),
                "every connection is balanced; TLS resumption only works if the servers share \
                 session state",
                "affinity = [\"session-id\", \"ticket\", \"psk\", \"source\"]",
            ));
            continue;
        }
        if has(AffinityKey::SessionId) && !has(AffinityKey::Ticket) {
            out.push(Finding::new(
                Severity::Warning,
                file,
                affinity_line,
                format!("backend {}: session-id affinity without ticket", b.name),
                "TLS 1.2 servers that issue tickets send an empty session ID; clients resume with \
                 the ticket, which this chain ignores, so those resumptions are balanced anywhere",
                "add \"ticket\" after \"session-id\": affinity = [\"session-id\", \"ticket\", \
                 \"psk\", \"source\"]",
            ));
        }
        if (has(AffinityKey::SessionId) || has(AffinityKey::Ticket)) && !has(AffinityKey::Psk) {
            out.push(Finding::new(
                Severity::Info,
                file,
                affinity_line,
                format!("backend {}: no psk in the affinity chain", b.name),
                "TLS 1.3 resumes only with PSK identities; session IDs and TLS 1.2 tickets never \
                 help a TLS 1.3 client",
                "add \"psk\" to the chain, e.g. affinity = [\"session-id\", \"ticket\", \"psk\", \
                 \"source\"]",
            ));
        }
        if let Some(pos) = chain
            .iter()
            .position(|k| matches!(k, AffinityKey::Source | AffinityKey::Sni))
        {
            if pos + 1 < chain.len() {
                out.push(Finding::new(
                    Severity::Warning,
                    file,
                    affinity_line,
                    format!(
                        "backend {}: keys after {:?} are never used",
                        b.name, chain[pos]
                    ),
                    "source and sni always produce a key, so the chain stops there",
                    "put \"source\" or \"sni\" last",
                ));
            }
        }
    }
    out
}
