//! What a backend's HAProxy stick and content rules will really do: rules that never fire, keys
//! that never match again, keys that tickets bypass. Shared by the haproxy.cfg importer (which
//! knows the exact line of each rule) and `check` on native configs carrying
//! `[backend.haproxy]` rules.

use crate::finding::{Finding, Severity};
use tether_core::config::{Backend, Condition, HaproxyRules, Sample, StickAction, StickRule};

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
    for (i, r) in rules.stick.iter().enumerate() {
        stick_rule_findings(file, b, rules, r, line_of(i), &mut out);
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
            format!(
                "TLS session tickets bypass the session-ID affinity of backend {}",
                b.name
            ),
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

/// The findings about one stick rule of backend `b`, written at `line`.
fn stick_rule_findings(
    file: &str,
    b: &Backend,
    rules: &HaproxyRules,
    r: &StickRule,
    line: usize,
    out: &mut Vec<Finding>,
) {
    let name = &b.name;
    if r.action == StickAction::StoreResponse && rules.response_inspect_delay.is_none() {
        out.push(Finding::new(
            Severity::Warning,
            file,
            line,
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
            line,
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
            line,
            "stick rule on the request side conditioned on a ServerHello never fires".to_string(),
            "request rules see the client's bytes, never the server's ServerHello",
            "use `stick store-response ... if serverhello` for server-side keys",
        ));
    }
    let reads_request = r.action != StickAction::StoreResponse && r.sample != Sample::Src;
    if reads_request && rules.request_inspect_delay.is_none() {
        out.push(Finding::new(
            Severity::Warning,
            file,
            line,
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
