//! `frontend`, `backend` and `listen` sections: the directives of the last `defaults` replayed
//! first, then the section's own, each handed to the module of its keyword family.

use super::acl::Acls;
use super::frontend::bind_address;
use super::routing::{FrontRoutes, StageRule};
use super::sections::{Kind, Section};
use super::timeouts::TimeoutsSeen;
use super::Importer;
use crate::haproxy::lexer::Directive;
use crate::haproxy::rules::RuleLines;
use tether_core::config::{Backend, Frontend, HaproxyRules, Redispatch};

/// One proxy section being imported: what it builds and what it has seen so far.
pub(super) struct Draft {
    /// The proxy's name.
    pub(super) name: String,
    /// `frontend`, `backend` or `listen`.
    pub(super) keyword: String,
    /// The line of the section header.
    pub(super) header_line: usize,
    /// Whether it has a listening side (frontend, listen).
    pub(super) front: bool,
    /// Whether it has servers (backend, listen).
    pub(super) back: bool,
    /// The `mode` in force (`tcp` unless set).
    pub(super) mode: String,
    /// Listening addresses, in order.
    pub(super) binds: Vec<String>,
    /// The listening side.
    pub(super) frontend: Frontend,
    /// The server side.
    pub(super) backend: Backend,
    /// HAProxy's stick and content rules, kept as written.
    pub(super) rules: HaproxyRules,
    /// Where the rules are written, for the rule advice.
    pub(super) lines: RuleLines,
    /// ACLs declared so far in this section.
    pub(super) acls: Acls,
    /// The frontend side's route rules (connection, content, use_backend).
    pub(super) routes: FrontRoutes,
    /// A backend's own `tcp-request content` accept/reject rules, as route rules.
    pub(super) back_filters: Vec<StageRule>,
    /// Which of the timeouts HAProxy warns about are set.
    pub(super) timeouts: TimeoutsSeen,
    /// Lines of frontend settings, by key-path suffix (`.bind`), for [`super::Origins`].
    pub(super) front_origins: Vec<(String, usize)>,
    /// Lines of backend settings, by key-path suffix (`.server[0]`), for [`super::Origins`].
    pub(super) back_origins: Vec<(String, usize)>,
    /// `http-check send` / `expect` rules, applied when `option httpchk` is in force.
    pub(super) http_rules: tether_core::config::HttpCheck,
    /// Whether an `http-check send` set the request line.
    pub(super) http_send: bool,
    /// `tcp-check` rules, applied when `option tcp-check` is in force.
    pub(super) tcp_steps: Vec<tether_core::config::TcpStep>,
    /// Server options of `default-server` lines (defaults first), applied before each
    /// server's own.
    pub(super) default_server: Vec<String>,
    /// A line of `defaults` is being replayed.
    pub(super) in_defaults: bool,
    /// Whether `retry-on` (absent: yes) lets failed connects be retried (`conn-failure`).
    pub(super) retry_on_conn_failure: bool,
}

impl Draft {
    fn new(s: &Section, name: String, mode: String, binds: Vec<String>) -> Draft {
        let mut frontend = Frontend::named(&name, if s.kind == Kind::Listen { &name } else { "" });
        frontend.inspect_delay = std::time::Duration::ZERO;
        let mut backend = Backend::named(&name);
        backend.redispatch = Redispatch::Never;
        backend.redispatch_on_refused = false;
        backend.check.passive = false;
        Draft {
            keyword: s.header.keyword().to_string(),
            header_line: s.header.line,
            front: matches!(s.kind, Kind::Frontend | Kind::Listen),
            back: matches!(s.kind, Kind::Backend | Kind::Listen),
            mode,
            binds,
            frontend,
            backend,
            rules: HaproxyRules::default(),
            lines: RuleLines {
                backend: s.header.line,
                ..RuleLines::default()
            },
            acls: Acls::new(),
            routes: FrontRoutes::default(),
            back_filters: Vec::new(),
            timeouts: TimeoutsSeen::default(),
            front_origins: Vec::new(),
            back_origins: Vec::new(),
            http_rules: tether_core::config::HttpCheck::default(),
            http_send: false,
            tcp_steps: Vec::new(),
            default_server: Vec::new(),
            in_defaults: false,
            retry_on_conn_failure: true,
            name,
        }
    }

    /// `frontend NAME`, `listen NAME`...: how messages name the section (`defaults` while its
    /// lines are replayed, as they are reported once, on their own line).
    pub(super) fn context(&self) -> String {
        if self.in_defaults {
            return "defaults".to_string();
        }
        format!("{} {}", self.keyword, self.name)
    }
}

/// The `mode` in force after replaying `all` in order (`tcp` when none is written).
fn mode_of(all: &[(bool, &Directive)]) -> String {
    all.iter()
        .rev()
        .find(|(_, d)| d.keyword() == "mode")
        .map(|(_, d)| d.word(1).to_string())
        .unwrap_or_else(|| "tcp".to_string())
}

impl Importer<'_> {
    /// Imports a `frontend`, `backend` or `listen` section (a `listen` with `stats` directives
    /// is the stats page).
    pub(super) fn proxy(&mut self, s: &Section, defaults: &[Directive]) {
        let Some(name) = self.proxy_name(s) else {
            return;
        };
        let binds = self.header_address(s, &name);
        if s.kind == Kind::Listen && s.body.iter().any(|d| d.keyword() == "stats") {
            self.stats(s, &name, binds);
            return;
        }
        let all: Vec<(bool, &Directive)> = defaults
            .iter()
            .map(|d| (true, d))
            .chain(s.body.iter().map(|d| (false, d)))
            .collect();
        let mode = mode_of(&all);
        if mode != "tcp" {
            return self.out_of_scope(s, &name, &mode);
        }
        let mut p = Draft::new(s, name, mode, binds);
        for (inherited, d) in all {
            if self.applies(&p, inherited, d) {
                self.inherited_directive(&mut p, inherited, d);
            }
        }
        if p.front {
            self.finish_frontend(&mut p);
        }
        if p.back {
            self.finish_checks(&mut p);
            self.finish_backend(s, p);
        }
    }

    /// A proxy in another mode than `tcp`: one error for the whole section, none for its lines
    /// (an HTTP proxy's `http-request` rules are its mode's, not separate faults), and never the
    /// advice to switch it to `mode tcp`, which would change what it does.
    fn out_of_scope(&mut self, s: &Section, name: &str, mode: &str) {
        let kind = s.header.keyword();
        self.error(
            s.header.line,
            format!("{kind} {name} is in `mode {mode}`: out of tether's scope"),
            "tether balances TCP (TLS passthrough) connections; an HTTP proxy's rules work on \
             requests it never decodes, so this section is not imported (its lines are not \
             checked)",
            format!(
                "keep {kind} {name} on HAProxy (or another L7 proxy: nginx, Envoy) and move \
                 the `mode tcp` sections to tether; they do not depend on it"
            ),
        );
    }

    /// The section's name, or an error when it has none.
    fn proxy_name(&mut self, s: &Section) -> Option<String> {
        let name = s.header.word(1).to_string();
        if name.is_empty() {
            self.error(
                s.header.line,
                format!("`{}` has no name", s.header.keyword()),
                "HAProxy rejects it",
                format!("{} app", s.header.keyword()),
            );
            return None;
        }
        self.name_chars(s.header.line, s.header.keyword(), &name);
        Some(name)
    }

    /// HAProxy 2.6 allows only letters, digits, `.`, `-`, `_` and `:` in proxy and server names
    /// (`invalid_char()`), and refuses the file otherwise: so does `check`, rather than pass a
    /// file HAProxy would not start with.
    pub(super) fn name_chars(&mut self, line: usize, kind: &str, name: &str) {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
        if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
            let fixed: String = name
                .chars()
                .map(|c| if allowed(c) { c } else { '_' })
                .collect();
            self.error(
                line,
                format!("character '{bad}' is not permitted in {kind} name '{name}'"),
                "HAProxy 2.6 refuses it (names may hold letters, digits, '.', '-', '_' and ':')",
                format!("{kind} {fixed}"),
            );
        }
    }

    /// An address on the header line (`listen stats *:1936`): HAProxy 2.6 refuses it; tether
    /// reports it and still listens there, so the rest of the section is checked.
    fn header_address(&mut self, s: &Section, name: &str) -> Vec<String> {
        if s.header.words.len() <= 2 {
            return Vec::new();
        }
        let addr = s.header.word(2).to_string();
        self.error(
            s.header.line,
            format!(
                "address `{addr}` on the `{} {name}` line",
                s.header.keyword()
            ),
            "HAProxy 2.6 rejects it: \"please use the 'bind' keyword for listening \
             addresses.\", and because the section is then not created, every following \
             line of it fails with \"'listen' or 'defaults' expected.\"",
            format!("{} {name}\n    bind {addr}", s.header.keyword()),
        );
        vec![bind_address(&addr)]
    }

    /// Applies `d` to `p`; a line of `defaults` (`inherited`) is reported the first time a
    /// proxy replays it, as a line of `defaults`, and silently applied to the proxies after.
    fn inherited_directive(&mut self, p: &mut Draft, inherited: bool, d: &Directive) {
        if !inherited {
            return self.directive(p, d);
        }
        let before = self.findings.len();
        p.in_defaults = true;
        self.directive(p, d);
        p.in_defaults = false;
        if !self.defaults_reported.insert(d.line) {
            self.findings.truncate(before);
        }
    }

    /// One directive that applies to proxy `p`, handed to its keyword family.
    fn directive(&mut self, p: &mut Draft, d: &Directive) {
        match d.keyword() {
            "mode" => {}
            "bind" => self.bind(p, d),
            "use_backend" => self.use_backend(p, d),
            "default_backend" => {
                p.frontend.backend = d.word(1).to_string();
                p.front_origins.push((".backend".into(), d.line));
            }
            "maxconn" => p.frontend.maxconn = self.number(d, 1, "maxconn 6000"),
            "log" if d.word(1) == "global" => self.inherited_ignored(
                d,
                "tether sends every connection's log line to the global `log` targets (and stderr)",
            ),
            "option" => self.option(p, d),
            "no" if d.word(1) == "option" && super::options::NEGATABLE.contains(&d.word(2)) => {
                self.no_option(p, d)
            }
            "retries" => self.retries(p, d),
            "log-format" => self.log_format(d),
            "retry-on" => self.retry_on(p, d),
            "fullconn" => self.fullconn(d),
            "timeout" => self.timeout(p, d),
            "balance" => self.balance(p, d),
            "hash-balance-factor" => self.hash_balance_factor(p, d),
            "hash-type" => self.hash_type(d),
            "stick-table" => {
                p.lines.stick_table = d.line;
                p.back_origins.push((".stick-table".into(), d.line));
                self.stick_table(d, &mut p.backend);
            }
            "acl" => self.acl(d, &mut p.acls),
            "tcp-request" | "tcp-response" => self.content_rule(p, d),
            "stick" => self.stick(p, d),
            "server" => self.add_server(p, d),
            "default-server" => self.default_server(p, d),
            "http-check" => self.http_check(p, d),
            "tcp-check" => self.tcp_check(p, d),
            _ => self.unsupported(d, &p.context()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};

    /// Issue 19 defect 4: each unsupported `defaults` line was reported once per proxy (77
    /// errors for one file).
    #[test]
    fn a_defaults_line_is_reported_once_on_its_line() {
        let im = import_text(
            "defaults\n  timeout client 1m\n  timeout connect 1s\n  timeout server 1s\n  \
             frobnicate 3\nfrontend a\n  bind :9443\n  default_backend b\nfrontend c\n  \
             bind :9444\n  default_backend b\nbackend b\n  server s1 127.0.0.1:8443\n",
        );
        let e: Vec<(usize, String)> = errors(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(
            e,
            [(
                5,
                "unsupported directive `frobnicate 3` in defaults".to_string()
            )]
        );
    }

    /// Issue 19: an HTTP proxy beside the TCP ones is one error on its header line, none for
    /// its `http-request` rules or options, and the TCP sections still import cleanly.
    #[test]
    fn an_http_proxy_is_one_finding_without_cascade() {
        let im = import_text(
            "defaults\n  timeout client 1m\n  timeout connect 1s\n  timeout server 1s\n\
             frontend web\n  mode http\n  bind :8080\n  http-request set-header X-A b\n  \
             option forwardfor\n  default_backend webbe\n\
             backend webbe\n  mode http\n  http-request deny if { path /x }\n  \
             server w1 127.0.0.1:9000\n\
             listen db\n  mode tcp\n  bind :5000\n  server d1 127.0.0.1:5432\n",
        );
        let e = errors(&im);
        let lines: Vec<usize> = e.iter().map(|f| f.line).collect();
        assert_eq!(lines, [5, 11], "{e:#?}");
        for f in &e {
            assert!(f.what.contains("`mode http`"), "{f:?}");
            assert!(
                !f.fix.contains("add `mode tcp`"),
                "a fix that changes meaning: {f:?}"
            );
        }
    }

    /// `haproxy -c` refuses markup and quotes in names: so does the import, on the line.
    #[test]
    fn names_haproxy_refuses_are_errors_on_their_line() {
        let im = import_text(
            "defaults\n  timeout client 1m\n  timeout connect 1s\n  timeout server 1s\n\
             frontend fe<x>\n  bind :9443\n  default_backend b.ok-1:x\n\
             backend b.ok-1:x\n  server s<1> 127.0.0.1:8443\n  server s_2 127.0.0.1:8444\n",
        );
        let e = errors(&im);
        let lines: Vec<usize> = e.iter().map(|f| f.line).collect();
        assert_eq!(lines, [5, 9], "{e:#?}");
        assert!(
            e[0].what.contains("'<'") && e[0].fix == "frontend fe_x_",
            "{e:?}"
        );
        assert!(e[1].what.contains("server name 's<1>'"), "{e:?}");
    }
}
