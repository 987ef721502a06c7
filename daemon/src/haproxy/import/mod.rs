//! haproxy.cfg → native [`Config`], faithful to HAProxy 2.6, with a finding for everything that
//! is rejected, ignored or behaves differently than it reads.
//!
//! Each proxy (`frontend`, `backend`, `listen`) first replays the directives of the last
//! `defaults` section, then its own, in order, as HAProxy does. Backends keep HAProxy's stick and
//! content rules (`[backend.haproxy]`), so quirks such as a `stick store-response` that never
//! fires without `tcp-response inspect-delay` survive the import. Process-only directives
//! (chroot, user, pidfile...) are warnings and ignored; anything else tether does
//! not implement is an error naming its line. Nothing is dropped silently.
//!
//! One module per section or keyword family: `sections.rs` cuts the file, `global.rs` and
//! `stats.rs` read those sections, `proxy.rs` replays a proxy's directives and hands each to
//! `scope.rs` (does it apply here?) and then to its family: `frontend.rs` (bind), `timeouts.rs`,
//! `options.rs` (redispatch, persist, retries), `balance.rs`, `servers.rs` (`check_tls.rs` for
//! checks over TLS), `stick.rs`, `acl.rs`, `content.rs` (tcp-request/response); `backend.rs`
//! closes the server side. [`origins`]
//! remembers the line of each part so later checks of the native config can point back into
//! the file.

mod acl;
mod backend;
mod balance;
mod check_tls;
mod checks;
mod content;
mod frontend;
mod global;
mod keywords;
mod log;
mod monitor;
mod options;
pub mod origins;
mod peers;
mod proxy;
mod resolvers;
mod routing;
mod scope;
mod sections;
mod servers;
mod stats;
mod stats_socket;
mod stick;
#[cfg(test)]
mod test_routes;
mod timeouts;

use super::lexer::{split_lines, Directive};
use crate::finding::{Finding, Severity};
use origins::Origins;
use sections::Kind;
use std::collections::{BTreeMap, BTreeSet};
use tether_core::config::{parse_duration, Config};

/// What an import produced: the best-effort config and every finding.
#[derive(Debug, Clone)]
pub struct Import {
    /// The equivalent native config (meaningful only without error findings).
    pub config: Config,
    /// Everything rejected, ignored or suspicious, in file order.
    pub findings: Vec<Finding>,
    /// The haproxy.cfg line of each part of `config`.
    pub origins: Origins,
}

impl Import {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// The import in progress: the config built so far and what has been found.
struct Importer<'a> {
    file: &'a str,
    findings: Vec<Finding>,
    /// HTTP-only directives inherited from `defaults` by tcp proxies: line → (text, proxies).
    inherited_http: BTreeMap<usize, (String, Vec<String>)>,
    /// Inherited directives already reported as ignored.
    reported: BTreeSet<usize>,
    /// Lines of `defaults` whose findings were reported (with the first proxy replaying them).
    defaults_reported: BTreeSet<usize>,
    config: Config,
    origins: Origins,
    /// Each frontend's route rules (in `config.frontends` order), composed at the end.
    front_routes: Vec<routing::FrontRoutes>,
    /// Each backend's `tcp-request content` rules, folded into the frontends that reach it.
    back_filters: BTreeMap<String, routing::BackFilters>,
    /// The peers section and `localpeer`, completed after all sections.
    peers: peers::PendingPeers,
    /// `ssl-server-verify` and `ca-base` from `global`, for the servers' check TLS.
    global_tls: check_tls::GlobalTls,
}

/// Imports a haproxy.cfg; never fails, the findings say what is wrong.
pub fn import(file: &str, text: &str) -> Import {
    let mut im = Importer {
        file,
        findings: Vec::new(),
        inherited_http: BTreeMap::new(),
        reported: BTreeSet::new(),
        defaults_reported: BTreeSet::new(),
        config: Config::default(),
        origins: Origins::default(),
        front_routes: Vec::new(),
        back_filters: BTreeMap::new(),
        peers: peers::PendingPeers::default(),
        global_tls: check_tls::GlobalTls::default(),
    };
    let (directives, lex_errors) = split_lines(text);
    for e in lex_errors {
        im.error(
            e.line,
            format!("cannot read this line: {}", e.message),
            "HAProxy rejects it too",
            "close the quote or escape the character with \\",
        );
    }
    let sections = im.sections(directives);
    let mut defaults: Vec<Directive> = Vec::new();
    for s in sections {
        match s.kind {
            Kind::Global => im.global(&s),
            Kind::Defaults => defaults = s.body,
            Kind::Frontend | Kind::Backend | Kind::Listen => im.proxy(&s, &defaults),
            Kind::Peers => im.peers(&s),
            Kind::Resolvers => im.resolvers(&s),
        }
    }
    im.finish_peers();
    im.report_inherited_http();
    im.compose_routes();
    im.references();
    let mut findings = im.findings;
    findings.sort_by_key(|f| (f.line, f.severity));
    Import {
        config: im.config,
        origins: im.origins,
        findings,
    }
}

impl Importer<'_> {
    fn finding(
        &mut self,
        severity: Severity,
        line: usize,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(severity, self.file, line, what, why, fix));
    }

    fn error(
        &mut self,
        line: usize,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.finding(Severity::Error, line, what, why, fix);
    }

    fn unsupported(&mut self, d: &Directive, context: &str) {
        self.error(
            d.line,
            format!("unsupported directive `{}` in {context}", d.text()),
            "tether does not implement it and will not guess its meaning",
            "remove it, or replace it by a supported equivalent (see `tether convert` output)",
        );
    }

    fn number<T: std::str::FromStr>(
        &mut self,
        d: &Directive,
        i: usize,
        example: &str,
    ) -> Option<T> {
        match d.word(i).parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    d.line,
                    format!("`{}`: \"{}\" is not a whole number", d.text(), d.word(i)),
                    "HAProxy rejects it",
                    format!("write e.g. `{example}`"),
                );
                None
            }
        }
    }

    fn duration(&mut self, d: &Directive, i: usize) -> Option<std::time::Duration> {
        self.duration_of(d, d.word(i))
    }

    /// `text` (a value in directive `d`) as a duration; an error naming the line when it is not.
    fn duration_of(&mut self, d: &Directive, text: &str) -> Option<std::time::Duration> {
        match parse_duration(text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    d.line,
                    format!("`{}`: {e}", d.text()),
                    "HAProxy rejects it",
                    "write e.g. 10s, 500ms or 1m",
                );
                None
            }
        }
    }

    /// Reports a directive ignored because it was inherited from defaults, once per line.
    fn inherited_ignored(&mut self, d: &Directive, why: &str) {
        if self.reported.insert(d.line) {
            self.finding(
                Severity::Info,
                d.line,
                format!("`{}` is ignored", d.text()),
                why.to_string(),
                "remove it",
            );
        }
    }

    /// Frontends must name a backend that exists.
    fn references(&mut self) {
        let names: Vec<String> = self
            .config
            .backends
            .iter()
            .map(|b| b.name.clone())
            .collect();
        let missing: Vec<(usize, String)> = self
            .config
            .frontends
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.backend.is_empty() && !names.contains(&f.backend))
            .map(|(i, f)| {
                (
                    self.origins.line_of(&format!("frontend[{i}].backend")),
                    format!(
                        "frontend {} uses backend {} which is not defined",
                        f.name, f.backend
                    ),
                )
            })
            .collect();
        for (line, m) in missing {
            self.error(
                line,
                m,
                "HAProxy refuses the config: unknown backend",
                "define `backend NAME` or fix default_backend",
            );
        }
        self.resolvers_references();
    }

    /// Servers naming a `resolvers` section that does not exist.
    fn resolvers_references(&mut self) {
        let mut missing = Vec::new();
        for (i, b) in self.config.backends.iter().enumerate() {
            for (j, s) in b.servers.iter().enumerate() {
                let Some(name) = s.resolvers.as_deref() else {
                    continue;
                };
                if !self.config.resolvers.iter().any(|r| r.name == name) {
                    let line = self.origins.line_of(&format!("backend[{i}].server[{j}]"));
                    missing.push((line, s.name.clone(), name.to_string()));
                }
            }
        }
        for (line, server, name) in missing {
            self.error(
                line,
                format!("server {server}: resolvers \"{name}\" is not defined"),
                "HAProxy refuses the config: unknown resolvers section",
                format!("add `resolvers {name}` with a `nameserver NAME IP:53` line, or name an existing section"),
            );
        }
    }
}

/// Helpers for the tests of the keyword-family modules.
#[cfg(test)]
mod test_support {
    use super::{import, Import};
    use crate::finding::{Finding, Severity};

    /// A backend that satisfies every check, for frontends to point at.
    pub const BACKEND: &str = "backend b\n  timeout connect 1s\n  timeout server 1s\n  \
                               server s1 127.0.0.1:8443\n";

    /// Imports `text` as `t.cfg`.
    pub fn import_text(text: &str) -> Import {
        import("t.cfg", text)
    }

    /// The findings of one severity, in file order.
    fn of(im: &Import, severity: Severity) -> Vec<Finding> {
        im.findings
            .iter()
            .filter(|f| f.severity == severity)
            .cloned()
            .collect()
    }

    /// The error findings.
    pub fn errors(im: &Import) -> Vec<Finding> {
        of(im, Severity::Error)
    }

    /// The warning findings.
    pub fn warnings(im: &Import) -> Vec<Finding> {
        of(im, Severity::Warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::config::{BalanceAlgorithm, Condition, Redispatch, StickKeyType};

    const SMALL: &str = "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
        timeout client 30s\n  timeout server 30s\n  option redispatch\nfrontend f\n  bind *:9443 \
        accept-proxy\n  default_backend b\nbackend b\n  balance leastconn\n  stick-table type ip \
        size 1m expire 30m\n  stick on src\n  server s1 127.0.0.1:8443 check weight 10 inter 1s\n  \
        server s2 127.0.0.1:8444 backup\n";

    proptest::proptest! {
        /// Arbitrary lines made of real keywords never panic the importer, and every finding
        /// points at a line of the input (or 0 for the file as a whole).
        #[test]
        fn import_never_panics(lines in proptest::collection::vec(
            proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("global".to_string()),
                proptest::strategy::Just("backend".to_string()),
                proptest::strategy::Just("frontend".to_string()),
                proptest::strategy::Just("listen".to_string()),
                proptest::strategy::Just("server".to_string()),
                proptest::strategy::Just("stick".to_string()),
                proptest::strategy::Just("on".to_string()),
                proptest::strategy::Just("if".to_string()),
                proptest::strategy::Just("acl".to_string()),
                proptest::strategy::Just("stats".to_string()),
                proptest::strategy::Just("stick-table".to_string()),
                proptest::strategy::Just("tcp-request".to_string()),
                proptest::strategy::Just("{".to_string()),
                proptest::strategy::Just("}".to_string()),
                "[a-z0-9_.:()*,!-]{0,10}",
                "\\PC{0,6}",
            ], 0..8),
            0..30,
        )) {
            let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
            let im = import("p.cfg", &text);
            let n = text.lines().count();
            for f in &im.findings {
                proptest::prop_assert!(f.line <= n, "{f}");
            }
        }
    }

    #[test]
    fn imports_a_clean_config_without_findings() {
        let im = import("h.cfg", SMALL);
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let c = &im.config;
        assert_eq!(c.global.maxconn, 100);
        assert_eq!(c.frontends[0].bind, ["0.0.0.0:9443"]);
        assert!(c.frontends[0].accept_proxy);
        let b = &c.backends[0];
        assert_eq!(b.balance, BalanceAlgorithm::LeastConn);
        assert_eq!(b.redispatch, Redispatch::Interval(-1));
        assert_eq!(b.stick_table.size, 1 << 20);
        assert_eq!(b.stick_table.key_type, StickKeyType::Ip);
        assert!(b.servers[0].check && !b.servers[1].check && b.servers[1].backup);
        assert_eq!(b.servers[0].weight, 10);
        assert_eq!(b.servers[0].inter, Some(std::time::Duration::from_secs(1)));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_directive_is_an_error_on_its_line() {
        let im = import(
            "h.cfg",
            &SMALL.replace("  balance leastconn\n", "  frobnicate 3\n"),
        );
        let e: Vec<_> = im
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert_eq!(e.len(), 1, "{:?}", im.findings);
        assert_eq!(e[0].line, 13);
        assert!(e[0].what.contains("frobnicate"));
    }

    #[test]
    fn content_rules_and_conditions_are_kept() {
        let text = SMALL.replace(
            "  stick on src\n",
            "  acl hello req_ssl_hello_type 1\n  acl sni req.ssl_sni -i a.example b.example\n  \
             tcp-request inspect-delay 5s\n  tcp-request content reject unless hello\n  \
             tcp-request content accept if { req_ssl_hello_type 1 }\n  stick match src if !sni\n",
        );
        let im = import("h.cfg", &text);
        assert!(!im.has_errors(), "{:?}", im.findings);
        let r = im.config.backends[0].haproxy.clone().unwrap();
        assert_eq!(
            r.request_inspect_delay,
            Some(std::time::Duration::from_secs(5))
        );
        // The reject is a route rule of the frontend now; the accept stays for the stick rules.
        assert_eq!(r.request_content.len(), 1);
        assert_eq!(r.request_content[0].when, Condition::ClientHello);
        assert_eq!(
            im.config.frontends[0].routes.len(),
            2,
            "reject unless hello; accept if hello"
        );
        assert_eq!(
            r.stick[0].when,
            Condition::Not(Box::new(Condition::Sni(vec![
                "a.example".into(),
                "b.example".into()
            ])))
        );
    }
}
