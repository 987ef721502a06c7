//! Advice on a config that loads: what will defeat affinity in practice. Backends driven by
//! HAProxy rules get the rule analysis of [`crate::haproxy::rules`].

use crate::finding::{Finding, Severity};
use crate::haproxy::rules::{rule_findings, RuleLines};
use tether_core::config::{AffinityKey, Backend, Config, Sample};

fn find_line(text: &str, from: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| pred(l.trim()))
        .map(|(i, _)| i + 1)
}

/// A stats password written in the config itself: it works, but it should live elsewhere.
fn clear_stats_password(file: &str, text: &str, config: &Config) -> Option<Finding> {
    let auth = config.stats.as_ref()?.auth.as_ref()?;
    auth.password.as_ref()?;
    let line = find_line(text, 1, |l| {
        l.starts_with("password ") || l.starts_with("password=") || l.contains(" password =")
    })
    .unwrap_or(0);
    Some(Finding::new(
        Severity::Warning,
        file,
        line,
        format!(
            "stats password for `{}` written in clear in the config",
            auth.user
        ),
        "tether serves the page with it, but anyone who can read the config (backups, tickets) \
         can reach the admin page and drain or disable servers",
        format!(
            "write password-file = \"/etc/tether/stats.pass\" (mode 0600) instead of password \
             under [stats.auth] user = \"{}\", and change this password",
            auth.user
        ),
    ))
}

/// What a TLS 1.3 client needs that session IDs, TLS 1.2 tickets and PSK identities do not
/// give: the one advice both config kinds share.
const TICKET_KEY_WHY: &str = "TLS 1.3 clients send a random legacy_session_id and resume with \
    tickets that browsers, curl, rustls and OpenSSL use once each, so neither the session ID nor \
    the PSK identity ever matches again; each ticket starts with its server's 16-byte key name \
    (OpenSSL, BoringSSL, rustls, and nginx, Apache, HAProxy, Envoy on top of them), which tether \
    learns once per server from the accepted resumptions";

/// Points a backend whose affinity cannot place TLS 1.3 resumptions at `ticket-key`.
fn ticket_key_advice(file: &str, line: usize, b: &Backend, fix: &str) -> Finding {
    Finding::new(
        Severity::Info,
        file,
        line,
        format!(
            "backend {}: TLS 1.3 clients never resume through this affinity",
            b.name
        ),
        TICKET_KEY_WHY,
        fix,
    )
}

/// Advice for an imported haproxy.cfg that loaded: a backend sticking on the ClientHello
/// session ID (`payload_lv(43,1)`) is pointed at `ticket-key` for its TLS 1.3 clients.
pub fn advise_haproxy(file: &str, text: &str, config: &Config) -> Vec<Finding> {
    let peers = super::peers::peers_findings(file, text, config);
    let session_id = Sample::PayloadLv {
        offset: 43,
        len_size: 1,
    };
    config
        .backends
        .iter()
        .filter(|b| {
            b.haproxy
                .as_ref()
                .is_some_and(|h| h.stick.iter().any(|r| r.sample == session_id))
        })
        .map(|b| {
            let header = find_line(text, 1, |l| {
                let mut w = l.split_whitespace();
                matches!(w.next(), Some("backend" | "listen")) && w.next() == Some(b.name.as_str())
            })
            .unwrap_or(0);
            let line = find_line(text, header, |l| {
                l.starts_with("stick") && l.contains("payload_lv(43,1)")
            })
            .unwrap_or(header);
            ticket_key_advice(
                file,
                line,
                b,
                "run it with tether and the ticket key names: `tether run --haproxy haproxy.cfg` \
                 then write affinity = [\"session-id\", \"ticket\", \"ticket-key\"] in the \
                 converted config (`tether convert`), or `tether run --affinity \
                 session-id,ticket,ticket-key` for a quick start",
            )
        })
        .chain(peers)
        .collect()
}

/// Who can reach the stats page: Basic credentials in clear off loopback, admin actions that
/// stay closed without credentials.
fn stats_exposure(file: &str, text: &str, config: &Config) -> Vec<Finding> {
    let Some(stats) = &config.stats else {
        return Vec::new();
    };
    let section = find_line(text, 1, |l| l == "[stats]").unwrap_or(0);
    let bind = find_line(text, section, |l| l.starts_with("bind")).unwrap_or(section);
    let mut out = Vec::new();
    if stats.cleartext_auth_off_loopback() {
        out.push(Finding::new(
            Severity::Warning,
            file,
            bind,
            format!("stats Basic auth over plain HTTP on {}", stats.bind),
            "the password crosses the network in clear on every request (Base64 is not \
             encryption)",
            "add [stats.tls] cert = \"/etc/tether/stats.pem\", or bind the page to 127.0.0.1",
        ));
    }
    if stats.admin && stats.auth.is_none() && !stats.admin_without_auth {
        out.push(Finding::new(
            Severity::Warning,
            file,
            section,
            "stats admin = true without [stats.auth]: admin actions stay closed",
            "without credentials any web page the operator opens could post admin actions",
            "add [stats.auth] with a password-file, or admin-without-auth = true if you accept \
             the risk",
        ));
    }
    out
}

/// Advice for a native config that loaded without errors.
pub fn advise(file: &str, text: &str, config: &Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = clear_stats_password(file, text, config)
        .into_iter()
        .collect();
    let line_of = |path: &str| tether_core::config::key_line(text, path);
    out.extend(super::routes::route_findings(file, config, &line_of));
    out.extend(stats_exposure(file, text, config));
    out.extend(super::peers::peers_findings(file, text, config));
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
        let tls13_blind = !has(AffinityKey::TicketKey) && !has(AffinityKey::Source);
        if tls13_blind && (has(AffinityKey::SessionId) || has(AffinityKey::Psk)) {
            out.push(ticket_key_advice(
                file,
                affinity_line,
                b,
                "add \"ticket-key\" to the chain, e.g. affinity = [\"session-id\", \"ticket\", \
                 \"ticket-key\"]",
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
