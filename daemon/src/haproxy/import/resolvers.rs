//! `resolvers NAME` sections (HAProxy 5.3.2): imported into `[[resolvers]]`, with their
//! name servers (`nameserver`, `parse-resolv-conf`), retries, timeouts and hold periods.

use std::time::Duration;

use super::sections::Section;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::resolvers::{Nameserver, Resolvers};

impl Importer<'_> {
    /// Imports one `resolvers NAME` section.
    pub(super) fn resolvers(&mut self, s: &Section) {
        let i = self.config.resolvers.len();
        self.origins.note(&format!("resolvers[{i}]"), s.header.line);
        let mut r = Resolvers::new(s.header.word(1), Vec::new());
        for d in &s.body {
            match d.keyword() {
                "nameserver" => {
                    let j = r.nameservers.len();
                    if let Some(ns) = self.nameserver(d) {
                        self.origins
                            .note(&format!("resolvers[{i}].nameserver[{j}]"), d.line);
                        r.nameservers.push(ns);
                    }
                }
                "parse-resolv-conf" => {
                    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                    for (k, addr) in resolv_conf_nameservers(&text).into_iter().enumerate() {
                        self.origins.note(
                            &format!("resolvers[{i}].nameserver[{}]", r.nameservers.len()),
                            d.line,
                        );
                        r.nameservers.push(Nameserver {
                            name: format!("resolvconf{}", k + 1),
                            address: addr,
                        });
                    }
                }
                "resolve_retries" => {
                    r.resolve_retries = self.number(d, 1, "resolve_retries 3").unwrap_or(3);
                }
                "accepted_payload_size" => {
                    let n: Option<u32> = self.number(d, 1, "accepted_payload_size 8192");
                    r.accepted_payload_size = n.map_or(512, |n| n.clamp(512, 65535) as u16);
                }
                "timeout" => self.resolvers_timeout(d, &mut r),
                "hold" => self.hold(d, &mut r),
                _ => self.unsupported(d, "resolvers"),
            }
        }
        self.config.resolvers.push(r);
    }

    /// `nameserver NAME ADDR[:PORT]` (UDP; port 53 when none is written).
    fn nameserver(&mut self, d: &Directive) -> Option<Nameserver> {
        let (name, addr) = (d.word(1), d.word(2));
        if addr.starts_with("tcp@") || addr.starts_with("tcp4@") || addr.starts_with("tcp6@") {
            self.error(
                d.line,
                format!("`{}`: name servers over TCP are not supported", d.text()),
                "tether asks name servers over UDP",
                format!(
                    "nameserver {name} {}",
                    addr.split_once('@').map_or(addr, |x| x.1)
                ),
            );
            return None;
        }
        let addr = addr.strip_prefix("udp@").unwrap_or(addr);
        let address = match addr.parse::<std::net::SocketAddr>() {
            Ok(a) => a.to_string(),
            Err(_) => match addr.parse::<std::net::IpAddr>() {
                Ok(ip) => std::net::SocketAddr::new(ip, 53).to_string(),
                Err(_) => {
                    self.error(
                        d.line,
                        format!("`{}`: \"{addr}\" is not IP[:PORT]", d.text()),
                        "HAProxy rejects it",
                        format!(
                            "nameserver {} 127.0.0.1:53",
                            if name.is_empty() { "dns1" } else { name }
                        ),
                    );
                    return None;
                }
            },
        };
        Some(Nameserver {
            name: name.to_string(),
            address,
        })
    }

    /// `timeout resolve|retry TIME`.
    fn resolvers_timeout(&mut self, d: &Directive, r: &mut Resolvers) {
        let Some(t) = self.duration(d, 2) else { return };
        match d.word(1) {
            "resolve" => r.timeout_resolve = t,
            "retry" => r.timeout_retry = t,
            _ => self.unsupported(d, "resolvers"),
        }
    }

    /// `hold nx|refused|timeout|other|valid|obsolete TIME`.
    fn hold(&mut self, d: &Directive, r: &mut Resolvers) {
        let Some(t) = self.duration(d, 2) else { return };
        let slot: &mut Duration = match d.word(1) {
            "nx" => &mut r.hold.nx,
            "refused" => &mut r.hold.refused,
            "timeout" => &mut r.hold.timeout,
            "other" => &mut r.hold.other,
            "valid" => &mut r.hold.valid,
            "obsolete" => &mut r.hold.obsolete,
            _ => {
                self.unsupported(d, "resolvers");
                return;
            }
        };
        *slot = t;
    }
}

/// The `nameserver` addresses of a resolv.conf, as `IP:53`.
fn resolv_conf_nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use super::resolv_conf_nameservers;
    use std::time::Duration;
    use tether_core::config::resolvers::{Family, InitAddr};

    const CFG: &str = "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n  nameserver ns2 10.0.0.53\n  resolve_retries 2\n  timeout resolve 500ms\n  timeout retry 200ms\n  hold valid 1s\n  hold nx 2s\n  accepted_payload_size 8192\n\
        frontend f\n  bind 127.0.0.1:9443\n  default_backend app\n\
        backend app\n  server s1 app.test:8080 resolvers dns resolve-prefer ipv4 init-addr last,libc,none\n";

    #[test]
    fn a_resolvers_section_and_its_servers_import() {
        let im = import_text(CFG);
        assert!(errors(&im).is_empty(), "{:?}", errors(&im));
        let r = &im.config.resolvers[0];
        assert_eq!(r.name, "dns");
        let addrs: Vec<&str> = r.nameservers.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:5353", "10.0.0.53:53"]);
        assert_eq!(r.resolve_retries, 2);
        assert_eq!(r.timeout_resolve, Duration::from_millis(500));
        assert_eq!(r.timeout_retry, Duration::from_millis(200));
        assert_eq!(
            (r.hold.valid, r.hold.nx),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
        assert_eq!(r.accepted_payload_size, 8192);
        let s = &im.config.backends[0].servers[0];
        assert_eq!(s.resolvers.as_deref(), Some("dns"));
        assert_eq!(s.resolve_prefer, Some(Family::Ipv4));
        assert_eq!(
            s.init_addr,
            Some(vec![InitAddr::Last, InitAddr::Libc, InitAddr::None])
        );
    }

    #[test]
    fn an_unknown_resolvers_name_is_an_error_on_the_server_line() {
        let im = import_text(&CFG.replace(
            "resolvers dns resolve-prefer",
            "resolvers nope resolve-prefer",
        ));
        let e = errors(&im);
        assert!(
            e.iter()
                .any(|f| f.line == 14 && f.what.contains("\"nope\" is not defined")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_init_addr_and_tcp_nameservers_are_errors() {
        let im = import_text(&CFG.replace("last,libc,none", "last,bogus"));
        assert!(
            errors(&im).iter().any(|f| f.what.contains("init-addr")),
            "{:?}",
            errors(&im)
        );
        let im = import_text(&CFG.replace("10.0.0.53", "tcp@10.0.0.53:53"));
        assert!(errors(&im)
            .iter()
            .any(|f| f.line == 3 && f.what.contains("TCP")));
    }

    #[test]
    fn resolv_conf_lines_give_nameservers() {
        let text = "# c\nsearch x\nnameserver 192.0.2.1\nnameserver ::1\nnameserver bad\n";
        assert_eq!(resolv_conf_nameservers(text), ["192.0.2.1:53", "[::1]:53"]);
    }
}
