//! `tether check` on a peers section: a peers port reachable beyond private networks (the
//! protocol has neither authentication nor encryption), and what the other peers must agree on
//! (server names, or ids where no name is sent; binary keys of the same length).

use std::net::{IpAddr, SocketAddr};

use crate::finding::{Finding, Severity};
use tether_core::config::Config;

/// Findings on the peers section of `config` (from a TOML or an haproxy.cfg `text`).
pub fn peers_findings(file: &str, text: &str, config: &Config) -> Vec<Finding> {
    let Some(p) = &config.peers else {
        return Vec::new();
    };
    let line_of = |pred: &dyn Fn(&str) -> bool| {
        text.lines()
            .position(|l| pred(l.trim()))
            .map_or(0, |i| i + 1)
    };
    let section_line = line_of(&|l: &str| l == "[peers]" || l.starts_with("peers "));
    let mut out = Vec::new();
    if let Some(bind) = &p.bind {
        if !is_private(bind) {
            let line = line_of(&|l: &str| {
                l.contains(bind.as_str()) && (l.starts_with("bind") || l.starts_with("peer"))
            });
            out.push(Finding::new(
                Severity::Warning,
                file,
                if line == 0 { section_line } else { line },
                format!(
                    "peers {} listens on {bind}, beyond loopback and private networks",
                    p.name
                ),
                "the peers protocol has no authentication and no encryption: whoever connects \
                 with a listed peer name can rewrite which server every session sticks to",
                "bind the peers port to a private or loopback address (e.g. 10.0.0.1:10000) and \
                 filter it to the other balancers",
            ));
        }
    }
    for b in config
        .backends
        .iter()
        .filter(|b| b.stick_table.peers.as_deref() == Some(p.name.as_str()))
    {
        let servers: Vec<String> = b
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}={}", s.name, i + 1))
            .collect();
        out.push(Finding::new(
            Severity::Info,
            file,
            section_line,
            format!(
                "backend {} shares its table with peers {}: servers {}",
                b.name,
                p.name,
                servers.join(", ")
            ),
            "peers map entries by server name (HAProxy 2.6 and tether send it), else by id: \
             every balancer must name (and number) these servers alike, or sessions move",
            "keep the server lines identical (names and order) on every peer",
        ));
    }
    out
}

/// Loopback, RFC 1918, link-local, unique-local; host names count as private only when they
/// say `localhost`.
fn is_private(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match addr
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| host.parse::<IpAddr>())
    {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => host == "localhost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_text, ConfigKind};

    const CFG: &str = "global\n  localpeer lb1\npeers mesh\n  peer lb1 {BIND}\n  peer lb2 10.0.0.2:10000\n\
        frontend f\n  bind 127.0.0.1:9443\n  default_backend app\n\
        backend app\n  stick-table type binary len 32 size 1k expire 1m peers mesh\n  stick on src\n  server s1 127.0.0.1:8443\n  server s2 127.0.0.1:8444\n";

    #[test]
    fn a_public_peers_bind_is_a_warning_a_private_one_is_not() {
        let public = check_text(
            "h.cfg",
            ConfigKind::Haproxy,
            &CFG.replace("{BIND}", "0.0.0.0:10000"),
        );
        let w: Vec<_> = public
            .findings
            .iter()
            .filter(|f| f.what.contains("beyond loopback"))
            .collect();
        assert_eq!(w.len(), 1, "{public}");
        assert_eq!(w[0].line, 4);
        let private = check_text(
            "h.cfg",
            ConfigKind::Haproxy,
            &CFG.replace("{BIND}", "10.0.0.1:10000"),
        );
        assert!(
            !private
                .findings
                .iter()
                .any(|f| f.what.contains("beyond loopback")),
            "{private}"
        );
        assert!(
            private
                .findings
                .iter()
                .any(|f| f.what.contains("servers s1=1, s2=2")),
            "{private}"
        );
    }

    #[test]
    fn private_ranges() {
        for a in [
            "127.0.0.1:1",
            "10.1.2.3:1",
            "192.168.0.1:1",
            "[fd00::1]:1",
            "[::1]:1",
            "localhost:1",
        ] {
            assert!(is_private(a), "{a}");
        }
        for a in ["0.0.0.0:1", "8.8.8.8:1", "[::]:1", "example.com:1"] {
            assert!(!is_private(a), "{a}");
        }
    }
}
