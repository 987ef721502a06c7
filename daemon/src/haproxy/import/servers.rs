//! `server` lines: the address (HAProxy refuses a server without one, or with a keyword in its
//! place) and the options tether honours (check, weight, inter, rise, fall, maxconn, maxqueue,
//! backup).

use super::keywords::{is_server_option, server_options, Opt};
use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::resolvers::{Family, InitAddr};
use tether_core::config::{
    parse_duration, AgentCheck, OnMarkedDown, OnMarkedUp, SendProxy, Server, UnixAddress,
};

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
        self.name_chars(d.line, "server", name);
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
        self.check_tls_complete(d, &server);
        let own = &d.words[params_from.min(d.words.len())..];
        server.agent = self.agent_check(d, name, &[defaults, own].concat());
        self.track_without_check(d, &mut server);
        Some(server)
    }

    /// Checks the address word; returns where the options start (2 when the address is
    /// missing and word 2 is already an option).
    fn server_address(&mut self, d: &Directive, ordinal: usize, server: &mut Server) -> usize {
        let (name, addr) = (d.word(1), d.word(2));
        let mut params_from = 3;
        if addr.is_empty() || is_server_option(addr) {
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
        } else if let Some(unix) = UnixAddress::parse(addr) {
            if let Some(problem) = unix.problem() {
                self.error(
                    d.line,
                    format!("server {name} unix socket address `{addr}`: {problem}"),
                    "HAProxy refuses it too",
                    format!("server {name} unix@/run/app.sock"),
                );
            }
        } else if addr.contains('@') {
            self.error(
                d.line,
                format!("server {name} address `{addr}`: tether knows no such address family"),
                "tether connects to servers over TCP (`HOST:PORT`, `ipv4@`/`ipv6@` written \
                 without the prefix) or unix stream sockets (`unix@PATH`, `abns@NAME`)",
                format!("server {name} unix@/run/app.sock, or server {name} 10.0.0.1:443"),
            );
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
        let words = &d.words[from.min(d.words.len())..];
        for o in server_options(words) {
            match o.name {
                "check" => server.check = true,
                "no-check" => server.check = false,
                "backup" => server.backup = true,
                "disabled" => server.disabled = true,
                "enabled" => server.disabled = false,
                "send-proxy" => server.send_proxy = Some(SendProxy::V1),
                "send-proxy-v2" => server.send_proxy = Some(SendProxy::V2),
                "no-send-proxy" | "no-send-proxy-v2" => server.send_proxy = None,
                "check-send-proxy" => server.check_send_proxy = true,
                "no-check-send-proxy" => server.check_send_proxy = false,
                "port" => server.check_port = self.option_number(d, &o, "port 8008"),
                "addr" => server.check_addr = Some(o.value.to_string()),
                "fastinter" => server.fastinter = self.option_duration(d, &o),
                "downinter" => server.downinter = self.option_duration(d, &o),
                "inter" => server.inter = self.option_duration(d, &o),
                "slowstart" => server.slowstart = self.option_duration(d, &o),
                "weight" => {
                    server.weight = self.option_number(d, &o, "weight 1").unwrap_or(1);
                }
                "rise" => server.rise = self.option_number(d, &o, "rise 2"),
                "fall" => server.fall = self.option_number(d, &o, "fall 3"),
                "maxconn" => server.maxconn = self.option_number(d, &o, "maxconn 100"),
                "maxqueue" => server.maxqueue = self.option_number(d, &o, "maxqueue 100"),
                "id" => server.id = self.option_number(d, &o, "id 1"),
                "minconn" => self.no_dynamic_maxconn(d, &o),
                "on-marked-down" => {
                    server.on_marked_down = self
                        .option_word(d, &o, "shutdown-sessions")
                        .then_some(OnMarkedDown::ShutdownSessions);
                }
                "agent-check" | "no-agent-check" | "agent-addr" | "agent-send" => {}
                "no-agent-send" => {}
                "agent-port" => {
                    self.option_number::<u16>(d, &o, "agent-port 5555");
                }
                "agent-inter" => {
                    self.option_duration(d, &o);
                }
                "track" => server.track = Some(o.value.to_string()),
                "on-marked-up" => {
                    server.on_marked_up = self
                        .option_word(d, &o, "shutdown-backup-sessions")
                        .then_some(OnMarkedUp::ShutdownBackupSessions);
                }
                "resolvers" => server.resolvers = Some(o.value.to_string()),
                "resolve-prefer" => self.resolve_prefer(d, &o, server),
                "init-addr" => self.init_addr(d, &o, server),
                _ if self.server_tls_option(d, &o, server) => {}
                _ => self.unsupported_server_option(d, &o),
            }
        }
    }

    /// `agent-check` with `agent-port`, `agent-addr`, `agent-inter`, `agent-send` from the
    /// server's `words` (`default-server` options first). As HAProxy: the agent is asked only
    /// with `agent-check`; without `agent-port` it uses the check `port`, and without either
    /// HAProxy refuses the server.
    fn agent_check(&mut self, d: &Directive, name: &str, words: &[String]) -> Option<AgentCheck> {
        let (mut on, mut port, mut check_port) = (false, None, None);
        let mut agent = AgentCheck {
            port: 0,
            addr: None,
            inter: None,
            send: None,
        };
        for o in server_options(words) {
            match o.name {
                "agent-check" => on = true,
                "no-agent-check" => on = false,
                "agent-port" => port = o.value.parse::<u16>().ok(),
                "port" => check_port = o.value.parse::<u16>().ok(),
                "agent-addr" => agent.addr = Some(o.value.to_string()),
                "agent-inter" => agent.inter = parse_duration(o.value).ok(),
                "agent-send" => agent.send = Some(o.value.to_string()),
                "no-agent-send" => agent.send = None,
                _ => {}
            }
        }
        if !on {
            return None;
        }
        match port.or(check_port) {
            Some(p) => agent.port = p,
            None => {
                self.error(
                    d.line,
                    format!("server {name} has agent-check but no agent port"),
                    "HAProxy refuses it: \"does not have agent port. Agent check has been disabled.\"",
                    "add `agent-port N`, the port the agent listens on",
                );
                return None;
            }
        }
        Some(agent)
    }

    /// `track` with `check` on the same server: HAProxy refuses both ("unable to enable checks
    /// and tracking at the same time!"); reported here in HAProxy's terms, once.
    fn track_without_check(&mut self, d: &Directive, server: &mut Server) {
        if server.track.is_some() && server.check {
            self.error(
                d.line,
                format!("server {} has both `check` and `track`", server.name),
                "HAProxy refuses it: \"unable to enable checks and tracking at the same time!\"",
                "remove `check`: a tracking server takes its state from the tracked server's checks",
            );
            server.check = false;
        }
    }

    /// `resolve-prefer ipv4|ipv6`.
    fn resolve_prefer(&mut self, d: &Directive, o: &Opt<'_>, server: &mut Server) {
        server.resolve_prefer = match o.value {
            "ipv4" => Some(Family::Ipv4),
            "ipv6" => Some(Family::Ipv6),
            v => {
                self.error(
                    d.line,
                    format!("`resolve-prefer` expects ipv4 or ipv6 but got \"{v}\""),
                    "HAProxy rejects it",
                    "write `resolve-prefer ipv4`",
                );
                return;
            }
        };
    }

    /// `init-addr METHOD[,METHOD...]`: `last`, `libc`, `none` or an IP, tried in order.
    fn init_addr(&mut self, d: &Directive, o: &Opt<'_>, server: &mut Server) {
        let methods: Result<Vec<InitAddr>, String> = o
            .value
            .split(',')
            .map(|m| InitAddr::try_from(m.to_string()))
            .collect();
        match methods {
            Ok(m) => server.init_addr = Some(m),
            Err(e) => self.error(
                d.line,
                format!("`{}`: {e}", o.text()),
                "HAProxy rejects it",
                "write e.g. `init-addr last,libc,none`",
            ),
        }
    }

    /// `minconn N`: HAProxy's dynamic maxconn (scaled up to `maxconn` as the backend nears
    /// `fullconn`), which tether does not do; the fix keeps a fixed limit.
    fn no_dynamic_maxconn(&mut self, d: &Directive, o: &Opt<'_>) {
        self.error(
            d.line,
            format!("unsupported server option `{}`", o.text()),
            "tether has no dynamic maxconn: a server's limit does not grow with the backend's \
             load (`minconn` + `fullconn`)",
            "give the server a fixed limit with `maxconn N` (the limit at full load), or keep \
             this backend on HAProxy",
        );
    }

    /// `fullconn N`: the backend load at which servers reach their `maxconn` from `minconn`.
    /// Without `minconn` (which tether reports) HAProxy gives it no effect, nor does tether.
    pub(super) fn fullconn(&mut self, d: &Directive) {
        if self.number::<u32>(d, 1, "fullconn 1000").is_some() {
            self.inherited_ignored(
                d,
                "it only scales servers' `minconn`, which tether does not implement; without \
                 `minconn` HAProxy ignores it too",
            );
        }
    }

    /// A server option tether does not implement, reported with its value; the fix never
    /// offers the line without it, since that would change what the server gets.
    fn unsupported_server_option(&mut self, d: &Directive, o: &Opt<'_>) {
        self.error(
            d.line,
            format!("unsupported server option `{}`", o.text()),
            "tether understands check, id, weight, inter, fastinter, downinter, rise, fall, port, \
             addr, maxconn, maxqueue, backup, disabled, slowstart, send-proxy, send-proxy-v2, \
             check-send-proxy, check-ssl, verify, ca-file, check-sni, verifyhost, on-marked-down, on-marked-up, \
             agent-check (agent-port, agent-addr, agent-inter, agent-send), track, resolvers, \
             resolve-prefer and init-addr",
            format!(
                "tether has no equivalent of `{}`: keep this backend on HAProxy, or remove the \
                 option if the servers do not need it",
                o.text()
            ),
        );
    }

    /// Whether option `o`'s value is `only`, its one action (HAProxy refuses any other).
    fn option_word(&mut self, d: &Directive, o: &Opt<'_>, only: &str) -> bool {
        if o.value == only {
            return true;
        }
        self.error(
            d.line,
            format!("`{}` expects `{only}` but got \"{}\"", o.name, o.value),
            "HAProxy rejects it",
            format!("write `{} {only}`", o.name),
        );
        false
    }

    /// The whole-number value of option `o` (an error when it is not one).
    fn option_number<T: std::str::FromStr>(
        &mut self,
        d: &Directive,
        o: &Opt<'_>,
        example: &str,
    ) -> Option<T> {
        let parsed = o.value.parse().ok();
        if parsed.is_none() {
            self.error(
                d.line,
                format!("`{}`: \"{}\" is not a whole number", d.text(), o.value),
                "HAProxy rejects it",
                format!("write e.g. `{example}`"),
            );
        }
        parsed
    }

    /// The duration value of option `o` (an error when it is not one).
    fn option_duration(&mut self, d: &Directive, o: &Opt<'_>) -> Option<std::time::Duration> {
        self.duration_of(d, o.value)
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

    /// Issue 19 defect 3: `send-proxy-v2` was dropped by the suggested fix; it is honoured now.
    #[test]
    fn send_proxy_is_kept_on_the_server() {
        use tether_core::config::SendProxy;
        let im = servers(
            "  default-server send-proxy\n  server a 10.0.0.1:443 check send-proxy-v2\n  \
             server b 10.0.0.2:443\n  server c 10.0.0.3:443 no-send-proxy\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        assert_eq!(s[0].send_proxy, Some(SendProxy::V2));
        assert_eq!(s[1].send_proxy, Some(SendProxy::V1), "from default-server");
        assert_eq!(s[2].send_proxy, None);
    }

    /// `check-send-proxy` (and its `no-`) import, from `default-server` too; checks of a
    /// `send-proxy` server send the header unless `port`/`addr` move them (HAProxy 2.6).
    #[test]
    fn check_send_proxy_is_imported_and_send_proxy_implies_it_on_the_own_address() {
        let im = servers(
            "  default-server check-send-proxy
  server a 10.0.0.1:443 check
               server b 10.0.0.2:443 check no-check-send-proxy
               server c 10.0.0.3:443 check no-check-send-proxy send-proxy
               server d 10.0.0.4:443 check no-check-send-proxy send-proxy port 8008
",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        let sends: Vec<bool> = s.iter().map(|s| s.checks_send_proxy()).collect();
        assert_eq!(sends, [true, false, true, false]);
    }

    /// `slowstart` (k8s control-plane configs) imports, from `default-server` too.
    #[test]
    fn slowstart_is_imported_and_inherited() {
        use std::time::Duration;
        let im = servers(
            "  default-server slowstart 60s\n  server a 10.0.0.1:443 check slowstart 10s\n  \
             server b 10.0.0.2:443 check\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        assert_eq!(s[0].slowstart, Some(Duration::from_secs(10)));
        assert_eq!(
            s[1].slowstart,
            Some(Duration::from_secs(60)),
            "from default-server"
        );
    }

    /// `on-marked-down shutdown-sessions` (Patroni) and `on-marked-up shutdown-backup-sessions`
    /// import, from `default-server` too; any other action is HAProxy's error.
    #[test]
    fn on_marked_down_and_up_are_imported_and_inherited() {
        use tether_core::config::{OnMarkedDown, OnMarkedUp};
        let im = servers(
            "  default-server on-marked-down shutdown-sessions\n  \
             server a 10.0.0.1:443 check on-marked-up shutdown-backup-sessions\n  \
             server b 10.0.0.2:443 check backup\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        assert_eq!(s[0].on_marked_down, Some(OnMarkedDown::ShutdownSessions));
        assert_eq!(s[0].on_marked_up, Some(OnMarkedUp::ShutdownBackupSessions));
        assert_eq!(s[1].on_marked_down, Some(OnMarkedDown::ShutdownSessions));
        assert_eq!(s[1].on_marked_up, None);
        let bad = servers("  server a 10.0.0.1:443 on-marked-down mark-up on-marked-up\n");
        let what: Vec<String> = errors(&bad).iter().map(|f| f.what.clone()).collect();
        assert_eq!(
            what,
            [
                "`on-marked-down` expects `shutdown-sessions` but got \"mark-up\"",
                "`on-marked-up` expects `shutdown-backup-sessions` but got \"\"",
            ]
        );
        assert_eq!(bad.config.backends[0].servers[0].on_marked_down, None);
    }

    /// Issue 19 defect 4: option values (`none`, `8008`) were reported as unknown options, and
    /// fixes offered the line without the option (changing what the server gets).
    #[test]
    fn option_values_stay_with_their_option_and_fixes_never_drop_them() {
        let im =
            servers("  server a 10.0.0.1:443 check port 8008 ssl verify none pool-max-conn 9\n");
        let e = errors(&im);
        let what: Vec<&str> = e.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "unsupported server option `ssl`",
                "unsupported server option `pool-max-conn 9`"
            ]
        );
        for f in &e {
            assert!(
                f.fix.starts_with("tether has no equivalent of"),
                "{}",
                f.fix
            );
            assert!(!f.fix.contains("server a 10.0.0.1:443"), "{}", f.fix);
        }
        assert_eq!(im.config.backends[0].servers[0].check_port, Some(8008));
    }

    /// Issue 19: unix-socket servers (once "fixed" to `...sock:443`) import as written.
    #[test]
    fn unix_socket_servers_import_as_written() {
        let im = servers(
            "  server a /var/run/app.sock\n  server b unix@/run/b.sock check\n  \
             server c abns@app check\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", errors(&im));
        let addrs: Vec<_> = im.config.backends[0]
            .servers
            .iter()
            .map(|s| s.address.as_str())
            .collect();
        assert_eq!(addrs, ["/var/run/app.sock", "unix@/run/b.sock", "abns@app"]);
        let long = format!(
            "  server a unix@/{}\n  server b sockpair@3\n",
            "x".repeat(120)
        );
        let e = errors(&servers(&long));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].what.contains("bytes"), "{}", e[0].what);
        assert!(!e[1].fix.contains(":443 "), "{}", e[1].fix);
    }

    /// Issue 19 defect 4: a bad `default-server` option was "fixed" to `server  inter check`.
    #[test]
    fn a_default_server_option_is_reported_once_without_a_broken_fix() {
        let im = import_text(
            "defaults\n  default-server inter 3s frobnicate\nbackend b\n  timeout connect 1s\n  \
             timeout server 1s\n  server a 10.0.0.1:443\nbackend c\n  timeout connect 1s\n  \
             timeout server 1s\n  server a 10.0.0.1:443\n",
        );
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].line, e[0].what.as_str()),
            (2, "unsupported server option `frobnicate`")
        );
        assert!(!e[0].fix.contains("server "), "{}", e[0].fix);
    }

    /// `minconn` (dynamic maxconn) is refused with a fix that keeps a limit; `fullconn` alone
    /// does nothing, in HAProxy as in tether, and is said to.
    #[test]
    fn minconn_is_an_error_and_fullconn_alone_a_note() {
        let im = servers("  fullconn 1000\n  server a 10.0.0.1:443 minconn 10 maxconn 100\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{:?}", im.findings);
        assert_eq!(e[0].line, 5);
        assert!(e[0].what.contains("minconn 10"), "{}", e[0]);
        assert!(e[0].fix.contains("maxconn N"), "{}", e[0]);
        let notes: Vec<usize> = im
            .findings
            .iter()
            .filter(|f| f.severity == crate::finding::Severity::Info)
            .map(|f| f.line)
            .collect();
        assert_eq!(notes, [4]);
        assert_eq!(
            errors(&servers("  fullconn lots\n  server a 10.0.0.1:443\n")).len(),
            1
        );
    }

    /// `agent-check` and its options import (from `default-server` too; `port` stands in for
    /// `agent-port`), and `track` with it; both were unsupported before.
    #[test]
    fn agent_check_and_track_import() {
        let im = servers(
            "  default-server agent-inter 5s agent-send \"ping\\n\"\n  \
             server a 10.0.0.1:443 check agent-check agent-port 5555 agent-addr 10.0.0.9\n  \
             server b 10.0.0.2:443 check port 8008 agent-check\n  \
             server c 10.0.0.3:443 track a\n  \
             server d 10.0.0.4:443 agent-port 7\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        let a = s[0].agent.as_ref().unwrap();
        assert_eq!((a.port, a.addr.as_deref()), (5555, Some("10.0.0.9")));
        assert_eq!(
            (a.inter, a.send.as_deref()),
            (Some(Duration::from_secs(5)), Some("ping\n"))
        );
        assert_eq!(s[1].agent.as_ref().unwrap().port, 8008, "the check port");
        assert_eq!(s[2].track.as_deref(), Some("a"));
        assert_eq!(s[3].agent, None, "agent-port alone asks no agent");
    }

    /// HAProxy refuses `agent-check` without a port and `track` with `check`.
    #[test]
    fn agent_without_port_and_track_with_check_are_errors() {
        let im = servers(
            "  server a 10.0.0.1:443 check agent-check\n  server b 10.0.0.2:443 check track a\n",
        );
        let what: Vec<String> = errors(&im).iter().map(|f| f.what.clone()).collect();
        assert_eq!(
            what,
            [
                "server a has agent-check but no agent port",
                "server b has both `check` and `track`"
            ]
        );
        assert!(!im.config.backends[0].servers[1].check);
    }
}
