//! `server` lines: the address (HAProxy refuses a server without one, or with a keyword in its
//! place) and the options tether honours (check, weight, inter, rise, fall, maxconn, maxqueue,
//! backup).

use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::Server;

/// Server options, for spotting an option written where the address belongs.
const KEYWORDS: &[&str] = &[
    "check",
    "weight",
    "inter",
    "rise",
    "fall",
    "maxconn",
    "maxqueue",
    "backup",
    "disabled",
    "port",
    "ssl",
    "send-proxy",
    "send-proxy-v2",
];

impl Importer<'_> {
    /// Adds a server line to proxy `p`.
    pub(super) fn add_server(&mut self, p: &mut Draft, d: &Directive) {
        if let Some(server) = self.server(d, p.backend.servers.len() + 1, &p.default_server) {
            p.back_origins
                .push((format!(".server[{}]", p.backend.servers.len()), d.line));
            p.backend.servers.push(server);
        }
    }

    /// `server NAME ADDRESS [OPTIONS...]`; `ordinal` numbers the example address of a fix.
    fn server(&mut self, d: &Directive, ordinal: usize, defaults: &[String]) -> Option<Server> {
        let name = d.word(1);
        let addr = d.word(2);
        if name.is_empty() {
            self.error(
                d.line,
                "`server` without a name",
                "HAProxy rejects it",
                "server s1 10.0.0.1:443 check",
            );
            return None;
        }
        let mut server = Server::new(name, addr);
        server.check = false;
        let params_from = self.server_address(d, ordinal, &mut server);
        // `default-server` options first (reported on their own line), then the server's own.
        let inherited = Directive {
            line: d.line,
            words: [vec![String::new(); 3], defaults.to_vec()].concat(),
        };
        self.server_options(&inherited, 3, &mut server, false);
        self.server_options(d, params_from, &mut server, true);
        Some(server)
    }

    /// Checks the address word; returns where the options start (2 when the address is
    /// missing and word 2 is already an option).
    fn server_address(&mut self, d: &Directive, ordinal: usize, server: &mut Server) -> usize {
        let (name, addr) = (d.word(1), d.word(2));
        let mut params_from = 3;
        if addr.is_empty() || KEYWORDS.contains(&addr) {
            let rest = d.words[2.min(d.words.len())..].join(" ");
            let example_addr = format!("10.0.0.{}:443", ordinal.min(254));
            let example = if rest.is_empty() {
                format!("server {name} {example_addr}")
            } else {
                format!("server {name} {example_addr} {rest}")
            };
            self.error(
                d.line,
                format!("server {name} has no address"),
                if addr.is_empty() {
                    "HAProxy refuses a server line without an address".to_string()
                } else {
                    format!("HAProxy takes `{addr}` as the address and refuses to start: \"could not resolve address '{addr}'\" (and so no health check is configured either)")
                },
                example,
            );
            server.address = String::new();
            params_from = 2;
        } else if !addr.contains(':') {
            self.error(d.line, format!("server {name} address `{addr}` has no port"), "HAProxy would then connect to the port the client connected to; tether needs the port written", format!("server {name} {addr}:443"));
        }
        params_from
    }

    /// The options from word `from` on.
    fn server_options(&mut self, d: &Directive, from: usize, server: &mut Server, report: bool) {
        let saved = self.findings.len();
        self.server_words(d, from, server);
        if !report {
            self.findings.truncate(saved);
        }
    }

    /// `default-server OPTIONS...`: checked once on its own line, then kept for the servers.
    pub(super) fn default_server(&mut self, p: &mut Draft, d: &Directive) {
        let mut scratch = Server::new("", "");
        let first_time = self.reported.insert(d.line);
        let line = Directive {
            line: d.line,
            words: [vec![String::new(); 2], d.words[1..].to_vec()].concat(),
        };
        self.server_options(&line, 2, &mut scratch, first_time);
        p.default_server.extend(d.words[1..].iter().cloned());
    }

    fn server_words(&mut self, d: &Directive, from: usize, server: &mut Server) {
        let (name, addr) = (d.word(1), d.word(2));
        let mut i = from;
        while i < d.words.len() {
            let w = d.word(i);
            match w {
                "check" => server.check = true,
                "no-check" => server.check = false,
                "port" => {
                    server.check_port = self.number(d, i + 1, "port 8008");
                    i += 1;
                }
                "addr" => {
                    server.check_addr = Some(d.word(i + 1).to_string());
                    i += 1;
                }
                "fastinter" | "downinter" => {
                    let v = self.duration(d, i + 1);
                    if w == "fastinter" {
                        server.fastinter = v;
                    } else {
                        server.downinter = v;
                    }
                    i += 1;
                }
                "backup" => server.backup = true,
                "weight" | "rise" | "fall" | "maxconn" | "maxqueue" => {
                    let n = self.number::<u32>(d, i + 1, "weight 1");
                    match w {
                        "weight" => server.weight = n.unwrap_or(1),
                        "rise" => server.rise = n,
                        "fall" => server.fall = n,
                        "maxconn" => server.maxconn = n,
                        _ => server.maxqueue = n,
                    }
                    i += 1;
                }
                "inter" => {
                    server.inter = self.duration(d, i + 1);
                    i += 1;
                }
                other => {
                    self.error(d.line, format!("unsupported server option `{other}`"), "tether understands check, weight, inter, fastinter, downinter, rise, fall, port, addr, maxconn, maxqueue and backup", format!("server {name} {addr} check"));
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use std::time::Duration;

    fn servers(lines: &str) -> super::super::Import {
        import_text(&format!(
            "backend b\n  timeout connect 1s\n  timeout server 1s\n{lines}"
        ))
    }

    #[test]
    fn every_option_tether_honours_is_read() {
        let im = servers(
            "  server a 10.0.0.1:443 check weight 7 inter 3s rise 4 fall 5 maxconn 6 maxqueue 8\n  \
             server b 10.0.0.2:443 backup\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        assert!(s[0].check && !s[0].backup);
        assert_eq!(s[0].weight, 7);
        assert_eq!(s[0].inter, Some(Duration::from_secs(3)));
        assert_eq!((s[0].rise, s[0].fall), (Some(4), Some(5)));
        assert_eq!((s[0].maxconn, s[0].maxqueue), (Some(6), Some(8)));
        assert!(!s[1].check && s[1].backup, "no `check`, no health check");
        assert_eq!(s[1].address, "10.0.0.2:443");
    }

    #[test]
    fn a_keyword_in_place_of_the_address_is_read_as_haproxy_does() {
        let im = servers("  server a check weight 2\n  server b\n  server c host\n");
        let e = errors(&im);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].why.contains("could not resolve address 'check'"));
        assert_eq!(e[0].fix, "server a 10.0.0.1:443 check weight 2");
        assert_eq!(e[1].fix, "server b 10.0.0.2:443");
        assert!(e[2].what.contains("has no port"));
        let s = &im.config.backends[0].servers[0];
        assert_eq!(s.address, "");
        assert!(s.check, "the options after the missing address still count");
        assert_eq!(s.weight, 2);
    }

    #[test]
    fn unsupported_options_and_bad_numbers_are_errors() {
        let im = servers("  server a 10.0.0.1:443 ssl weight heavy\n");
        let what: Vec<String> = errors(&im).iter().map(|f| f.what.clone()).collect();
        assert_eq!(
            what,
            [
                "unsupported server option `ssl`",
                "`server a 10.0.0.1:443 ssl weight heavy`: \"heavy\" is not a whole number",
            ]
        );
        assert_eq!(im.config.backends[0].servers[0].weight, 1);
    }
}
