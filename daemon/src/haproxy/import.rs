//! haproxy.cfg → native [`Config`], faithful to HAProxy 2.6, with a finding for everything that
//! is rejected, ignored or behaves differently than it reads.
//!
//! Each proxy (`frontend`, `backend`, `listen`) first replays the directives of the last
//! `defaults` section, then its own, in order, as HAProxy does. Backends keep HAProxy's stick and
//! content rules (`[backend.haproxy]`), so quirks such as a `stick store-response` that never
//! fires without `tcp-response inspect-delay` survive the import. Process-only directives
//! (chroot, user, pidfile, log targets...) are warnings and ignored; anything else tether does
//! not implement is an error naming its line. Nothing is dropped silently.

use super::lexer::{split_lines, Directive};
use crate::check::advice::{rule_findings, RuleLines};
use crate::check::{Finding, Severity};
use std::collections::BTreeMap;
use tether_core::config::{
    parse_duration, parse_size, Backend, BalanceAlgorithm, Condition, Config, ContentAction,
    ContentRule, Frontend, HaproxyRules, HashKey, LogFormat, Redispatch, Sample, Server, Stats,
    StatsAuth, StickAction, StickKeyType, StickRule,
};

/// What an import produced: the best-effort config and every finding.
#[derive(Debug, Clone)]
pub struct Import {
    /// The equivalent native config (meaningful only without error findings).
    pub config: Config,
    /// Everything rejected, ignored or suspicious, in file order.
    pub findings: Vec<Finding>,
}

impl Import {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
}

struct Section {
    kind: Kind,
    header: Directive,
    body: Vec<Directive>,
}

/// Global directives that only concern the HAProxy process; tether ignores them.
const PROCESS_ONLY: &[&str] = &[
    "chroot",
    "user",
    "group",
    "uid",
    "gid",
    "daemon",
    "nbthread",
    "nbproc",
    "master-worker",
    "ulimit-n",
    "cpu-map",
    "node",
    "description",
    "setenv",
    "presetenv",
    "unsetenv",
    "resetenv",
    "maxsslconn",
    "spread-checks",
    "ca-base",
    "crt-base",
    "ssl-server-verify",
    "pidfile",
    "lua-load",
    "quiet",
    "expose-experimental-directives",
    "localpeer",
    "log-send-hostname",
    "log-tag",
    "server-state-file",
    "server-state-base",
];

/// Options and timeouts that only mean something in `mode http`.
const HTTP_ONLY_OPTIONS: &[&str] = &[
    "httplog",
    "http-server-close",
    "forwardfor",
    "httpclose",
    "http-keep-alive",
    "http-buffer-request",
    "http-pretend-keepalive",
    "http-use-htx",
    "http-no-delay",
    "originalto",
    "abortonclose",
    "http-ignore-probes",
    "httpchk",
    "http-restrict-req-hdr-names",
];
const HTTP_ONLY_TIMEOUTS: &[&str] = &["http-request", "http-keep-alive"];

struct Importer<'a> {
    file: &'a str,
    findings: Vec<Finding>,
    /// HTTP-only directives inherited from `defaults` by tcp proxies: line → (text, proxies).
    inherited_http: BTreeMap<usize, (String, Vec<String>)>,
    /// Inherited directives already reported as ignored.
    reported: std::collections::BTreeSet<usize>,
    config: Config,
}

/// Imports a haproxy.cfg; never fails, the findings say what is wrong.
pub fn import(file: &str, text: &str) -> Import {
    let mut im = Importer {
        file,
        findings: Vec::new(),
        inherited_http: BTreeMap::new(),
        reported: Default::default(),
        config: Config::default(),
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
        }
    }
    for (line, (text, proxies)) in std::mem::take(&mut im.inherited_http) {
        im.finding(
            Severity::Warning,
            line,
            format!(
                "`{text}` in defaults has no effect on the tcp proxies {}",
                proxies.join(", ")
            ),
            "it is an HTTP-mode setting; in `mode tcp` HAProxy ignores it, so it suggests \
             behaviour that does not happen (tether is a TCP balancer and ignores it too)",
            "remove it from defaults, or set `mode tcp` in defaults and keep HTTP settings in the \
             HTTP proxies that need them",
        );
    }
    im.references();
    let mut findings = im.findings;
    findings.sort_by_key(|f| (f.line, f.severity));
    Import {
        config: im.config,
        findings,
    }
}

fn bind_address(text: &str) -> String {
    if let Some(port) = text.strip_prefix("*:").or_else(|| text.strip_prefix(':')) {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = text.strip_prefix(":::") {
        format!("[::]:{port}")
    } else {
        text.to_string()
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

    fn sections(&mut self, directives: Vec<Directive>) -> Vec<Section> {
        let mut out: Vec<Section> = Vec::new();
        let mut skipping = false;
        for d in directives {
            let kind = match d.keyword() {
                "global" => Some(Kind::Global),
                "defaults" => Some(Kind::Defaults),
                "frontend" => Some(Kind::Frontend),
                "backend" => Some(Kind::Backend),
                "listen" => Some(Kind::Listen),
                "peers" | "resolvers" | "userlist" | "mailers" | "program" | "cache" | "ring"
                | "http-errors" | "crt-store" => {
                    self.error(
                        d.line,
                        format!("unsupported section `{}`", d.text()),
                        "tether has no equivalent; the whole section is skipped",
                        "remove the section",
                    );
                    skipping = true;
                    continue;
                }
                _ => None,
            };
            match kind {
                Some(kind) => {
                    skipping = false;
                    out.push(Section {
                        kind,
                        header: d,
                        body: Vec::new(),
                    });
                }
                None if skipping => {}
                None => match out.last_mut() {
                    Some(s) => s.body.push(d),
                    None => self.error(
                        d.line,
                        format!("`{}` outside any section", d.text()),
                        "HAProxy rejects directives before the first section",
                        "put it under `global`, `defaults`, `frontend`, `backend` or `listen`",
                    ),
                },
            }
        }
        out
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
        match parse_duration(d.word(i)) {
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

    fn global(&mut self, s: &Section) {
        for d in &s.body {
            match d.keyword() {
                "maxconn" => {
                    if let Some(n) = self.number(d, 1, "maxconn 4000") {
                        self.config.global.maxconn = n;
                    }
                }
                "hard-stop-after" => {
                    if let Some(t) = self.duration(d, 1) {
                        self.config.global.grace = t;
                    }
                }
                "log" => self.global_log(d),
                "pidfile" if d.word(1).ends_with('/') => self.finding(
                    Severity::Warning,
                    d.line,
                    format!("pidfile `{}` is a directory, not a file", d.word(1)),
                    "HAProxy cannot create a pid file at a directory path, so the daemon fails to \
                     start (or its init script cannot find the process). tether writes no pid \
                     file and ignores the directive",
                    "pidfile /var/run/haproxy.pid",
                ),
                "stats" if d.word(1) == "socket" || d.word(1) == "timeout" => self.process_only(d),
                k if PROCESS_ONLY.contains(&k)
                    || k.starts_with("tune.")
                    || k.starts_with("ssl-") =>
                {
                    self.process_only(d)
                }
                _ => self.unsupported(d, "global"),
            }
        }
    }

    fn process_only(&mut self, d: &Directive) {
        self.finding(
            Severity::Warning,
            d.line,
            format!("`{}` is ignored", d.text()),
            "it configures the HAProxy process itself; tether runs under its service manager \
             and has no equivalent",
            "remove it (run tether as an unprivileged user from systemd; admin actions are on \
             the stats page)",
        );
    }

    fn global_log(&mut self, d: &Directive) {
        if d.words.len() < 3 {
            let arg = d.word(1);
            self.error(
                d.line,
                format!("`{}` has no log address", d.text()),
                format!(
                    "`{arg}` is a syslog facility, not a destination. HAProxy 2.6 refuses the \
                     file: \"log : expects <address> and <facility> as arguments\". Without a log \
                     target nothing is logged at all, so you cannot see which server each \
                     connection went to, which is how affinity is verified"
                ),
                format!(
                    "log 127.0.0.1:514 {arg}   (and let rsyslog listen on UDP 514), or `log \
                     stdout format raw local0`; tether logs every connection (server and affinity \
                     outcome) to stderr with log-format = \"tcplog\""
                ),
            );
        } else {
            self.finding(
                Severity::Warning,
                d.line,
                format!("log target `{}` is ignored", d.text()),
                "tether writes its connection log to stderr (tcplog or json), for journald or \
                 a log shipper",
                "remove it; set [global] log-format = \"tcplog\" or \"json\"",
            );
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

    fn proxy(&mut self, s: &Section, defaults: &[Directive]) {
        let name = s.header.word(1).to_string();
        if name.is_empty() {
            self.error(
                s.header.line,
                format!("`{}` has no name", s.header.keyword()),
                "HAProxy rejects it",
                format!("{} app", s.header.keyword()),
            );
            return;
        }
        let is_stats = s.kind == Kind::Listen && s.body.iter().any(|d| d.keyword() == "stats");
        let mut binds: Vec<String> = Vec::new();
        if s.header.words.len() > 2 {
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
            binds.push(bind_address(&addr));
        }
        if is_stats {
            self.stats(s, &name, binds);
            return;
        }
        let front = matches!(s.kind, Kind::Frontend | Kind::Listen);
        let back = matches!(s.kind, Kind::Backend | Kind::Listen);
        let all: Vec<(bool, &Directive)> = defaults
            .iter()
            .map(|d| (true, d))
            .chain(s.body.iter().map(|d| (false, d)))
            .collect();
        let mode = all
            .iter()
            .rev()
            .find(|(_, d)| d.keyword() == "mode")
            .map(|(_, d)| d.word(1).to_string())
            .unwrap_or_else(|| "tcp".to_string());
        if mode != "tcp" {
            self.error(
                s.header.line,
                format!("{} {name} is in `mode {mode}`", s.header.keyword()),
                "tether is a TCP (TLS passthrough) balancer; it cannot run HTTP proxies",
                format!("add `mode tcp` to {} {name}", s.header.keyword()),
            );
        }
        let mut frontend = Frontend::named(&name, if s.kind == Kind::Listen { &name } else { "" });
        frontend.inspect_delay = std::time::Duration::ZERO;
        let mut backend = Backend::named(&name);
        backend.redispatch = Redispatch::Never;
        backend.redispatch_on_refused = false;
        backend.check.passive = false;
        let mut rules = HaproxyRules::default();
        let mut lines = RuleLines {
            backend: s.header.line,
            ..RuleLines::default()
        };
        let mut acls: BTreeMap<String, Condition> = BTreeMap::new();
        let mut has_timeout = (false, false, false);
        for (inherited, d) in all {
            let ctx = format!("{} {name}", s.header.keyword());
            let k = d.keyword();
            // Directives that apply to one side only; inherited ones for the other side vanish.
            let front_only = matches!(k, "bind" | "default_backend" | "use_backend" | "maxconn")
                || (k == "timeout" && d.word(1) == "client");
            let back_only = matches!(
                k,
                "balance" | "server" | "stick-table" | "stick" | "retries" | "hash-balance-factor"
            ) || (k == "timeout"
                && matches!(d.word(1), "connect" | "server" | "queue" | "check"))
                || (k == "option" && matches!(d.word(1), "redispatch" | "persist"));
            if (front_only && !front) || (back_only && !back) {
                if !inherited {
                    self.finding(
                        Severity::Warning,
                        d.line,
                        format!("`{}` does nothing in {ctx}", d.text()),
                        format!(
                            "HAProxy ignores it: a {} has no {} side",
                            s.header.keyword(),
                            if front_only { "frontend" } else { "backend" }
                        ),
                        "move it to the section it belongs to",
                    );
                }
                continue;
            }
            let http_only = (k == "option" && HTTP_ONLY_OPTIONS.contains(&d.word(1)))
                || (k == "timeout" && HTTP_ONLY_TIMEOUTS.contains(&d.word(1)));
            if http_only {
                if mode == "tcp" {
                    if inherited {
                        let e = self
                            .inherited_http
                            .entry(d.line)
                            .or_insert_with(|| (d.text(), Vec::new()));
                        e.1.push(name.clone());
                    } else {
                        self.finding(
                            Severity::Warning,
                            d.line,
                            format!("`{}` has no effect in tcp {ctx}", d.text()),
                            "it is an HTTP-mode setting; HAProxy ignores it in `mode tcp`",
                            "remove it",
                        );
                    }
                }
                continue;
            }
            match k {
                "mode" => {}
                "bind" => {
                    for a in d.word(1).split(',') {
                        binds.push(bind_address(a));
                    }
                    for opt in d.words.iter().skip(2) {
                        if opt == "accept-proxy" {
                            frontend.accept_proxy = true;
                        } else {
                            self.error(d.line, format!("unsupported bind option `{opt}`"), "tether passes TLS through and only understands accept-proxy on bind lines", format!("bind {}", d.word(1)));
                        }
                    }
                }
                "default_backend" => frontend.backend = d.word(1).to_string(),
                "maxconn" => frontend.maxconn = self.number(d, 1, "maxconn 6000"),
                "log" if d.word(1) == "global" => self.inherited_ignored(d, "tether logs every connection itself; see [global] log-format"),
                "option" => match d.word(1) {
                    "tcplog" => self.config.global.log_format = LogFormat::Tcplog,
                    "dontlognull" => self.inherited_ignored(d, "tether logs every connection, including those that sent nothing (they show as no-key in the affinity outcome)"),
                    "redispatch" => {
                        backend.redispatch = match d.word(2) {
                            "" => Redispatch::Interval(-1),
                            n => match n.parse::<i32>() {
                                Ok(0) => Redispatch::Never,
                                Ok(v) => Redispatch::Interval(v),
                                Err(_) => {
                                    self.error(d.line, format!("`{}`: bad interval", d.text()), "HAProxy rejects it", "option redispatch -1");
                                    backend.redispatch
                                }
                            },
                        }
                    }
                    "persist" => backend.persist = true,
                    _ => self.unsupported(d, &ctx),
                },
                "no" if d.word(1) == "option" && matches!(d.word(2), "redispatch" | "persist") => {
                    if d.word(2) == "redispatch" {
                        backend.redispatch = Redispatch::Never;
                    } else {
                        backend.persist = false;
                    }
                }
                "retries" => {
                    if let Some(n) = self.number(d, 1, "retries 3") {
                        backend.retries = n;
                    }
                }
                "timeout" => {
                    let Some(t) = self.duration(d, 2) else { continue };
                    match d.word(1) {
                        "client" => {
                            frontend.timeout_client = t;
                            has_timeout.0 = true;
                        }
                        "connect" => {
                            backend.timeout_connect = t;
                            has_timeout.1 = true;
                        }
                        "server" => {
                            backend.timeout_server = t;
                            has_timeout.2 = true;
                        }
                        "queue" => backend.timeout_queue = Some(t),
                        "check" => backend.timeout_check = Some(t),
                        _ => self.unsupported(d, &ctx),
                    }
                }
                "balance" => match d.word(1) {
                    "roundrobin" | "static-rr" => backend.balance = BalanceAlgorithm::RoundRobin,
                    "leastconn" => backend.balance = BalanceAlgorithm::LeastConn,
                    "first" => backend.balance = BalanceAlgorithm::First,
                    "source" => {
                        backend.balance = BalanceAlgorithm::Hash;
                        backend.hash_key = Some(HashKey::Source);
                    }
                    _ => self.unsupported(d, &ctx),
                },
                "hash-balance-factor" => backend.hash_balance_factor = self.number(d, 1, "hash-balance-factor 150"),
                "stick-table" => {
                    lines.stick_table = d.line;
                    self.stick_table(d, &mut backend);
                }
                "acl" => self.acl(d, &mut acls),
                "tcp-request" | "tcp-response" => {
                    let request = k == "tcp-request";
                    match d.word(1) {
                        "inspect-delay" => {
                            if let Some(t) = self.duration(d, 2) {
                                if request {
                                    rules.request_inspect_delay = Some(t);
                                    if front {
                                        frontend.inspect_delay = t;
                                    }
                                } else {
                                    rules.response_inspect_delay = Some(t);
                                }
                            }
                        }
                        "content" if back => {
                            let action = match d.word(2) {
                                "accept" => Some(ContentAction::Accept),
                                "reject" => Some(ContentAction::Reject),
                                _ => None,
                            };
                            match (action, self.condition(d, 3, &acls)) {
                                (Some(action), Some(when)) => {
                                    let rule = ContentRule { action, when };
                                    if request {
                                        lines.request_rules = d.line;
                                        rules.request_content.push(rule);
                                    } else {
                                        rules.response_content.push(rule);
                                    }
                                }
                                (None, _) => self.unsupported(d, &ctx),
                                _ => {}
                            }
                        }
                        _ => self.unsupported(d, &ctx),
                    }
                }
                "stick" => {
                    if let Some(rule) = self.stick_rule(d, &acls) {
                        lines.stick.push(d.line);
                        rules.stick.push(rule);
                    }
                }
                "server" => {
                    if let Some(server) = self.server(d, backend.servers.len() + 1) {
                        backend.servers.push(server);
                    }
                }
                _ => self.unsupported(d, &ctx),
            }
        }
        if front {
            frontend.bind = binds;
            if frontend.bind.is_empty() {
                self.error(
                    s.header.line,
                    format!("{} {name} has no bind line", s.header.keyword()),
                    "nothing would listen",
                    "bind *:9443",
                );
            }
            if frontend.backend.is_empty() {
                self.error(
                    s.header.line,
                    format!("frontend {name} has no default_backend"),
                    "tether sends every connection of a frontend to one backend",
                    "default_backend app",
                );
            }
            if !has_timeout.0 {
                self.finding(
                    Severity::Warning,
                    s.header.line,
                    format!("no `timeout client` for {name}"),
                    "HAProxy warns and waits forever on idle clients; tether uses 1m",
                    "timeout client 1m",
                );
            }
            self.config.frontends.push(frontend);
        }
        if back {
            if !has_timeout.1 || !has_timeout.2 {
                self.finding(
                    Severity::Warning,
                    s.header.line,
                    format!("missing `timeout connect` or `timeout server` for {name}"),
                    "HAProxy warns and waits forever; tether uses connect 10s, server 1m",
                    "timeout connect 10s\n    timeout server 1m",
                );
            }
            if backend.servers.is_empty() && !s.body.iter().any(|d| d.keyword() == "server") {
                self.error(
                    s.header.line,
                    format!("backend {name} has no server"),
                    "every connection would be closed with <NOSRV>",
                    "server s1 10.0.0.1:443 check",
                );
            }
            if !rules.stick.is_empty() && !s.body.iter().any(|d| d.keyword() == "stick-table") {
                self.error(
                    lines.stick[0],
                    format!("stick rules in {name} without a stick-table"),
                    "HAProxy refuses the config: the rules need a table in the same backend",
                    "stick-table type binary len 32 size 60k expire 60m",
                );
            }
            backend.haproxy = Some(rules);
            let extra = rule_findings(self.file, &backend, &lines);
            self.findings.extend(extra);
            self.config.backends.push(backend);
        }
    }

    fn stick_table(&mut self, d: &Directive, backend: &mut Backend) {
        let mut i = 1;
        let table = &mut backend.stick_table;
        table.nopurge = false;
        while i < d.words.len() {
            let key = d.word(i);
            let val = d.word(i + 1).to_string();
            match key {
                "type" => {
                    table.key_type = match val.as_str() {
                        "binary" => StickKeyType::Binary,
                        "ip" => StickKeyType::Ip,
                        "string" => StickKeyType::String,
                        _ => {
                            self.error(
                                d.line,
                                format!("stick-table type `{val}` is not supported"),
                                "tether keys are binary, ip or string",
                                "stick-table type binary len 32 size 60k expire 60m",
                            );
                            StickKeyType::Binary
                        }
                    };
                    if table.key_type == StickKeyType::Ip {
                        table.key_len = 4;
                    }
                    i += 2;
                }
                "len" => {
                    match val.parse() {
                        Ok(n) => table.key_len = n,
                        Err(_) => self.error(
                            d.line,
                            format!("stick-table len `{val}`"),
                            "not a whole number",
                            "len 32",
                        ),
                    }
                    i += 2;
                }
                "size" => {
                    match parse_size(&val) {
                        Ok(n) => table.size = n,
                        Err(e) => self.error(
                            d.line,
                            format!("stick-table size: {e}"),
                            "HAProxy rejects it",
                            "size 60k",
                        ),
                    }
                    i += 2;
                }
                "expire" => {
                    match parse_duration(&val) {
                        Ok(t) => table.expire = t,
                        Err(e) => self.error(
                            d.line,
                            format!("stick-table expire: {e}"),
                            "HAProxy rejects it",
                            "expire 60m",
                        ),
                    }
                    i += 2;
                }
                "nopurge" => {
                    table.nopurge = true;
                    i += 1;
                }
                other => {
                    self.error(
                        d.line,
                        format!("unsupported stick-table argument `{other}`"),
                        "tether tables store key → server only (no peers, no counters)",
                        "stick-table type binary len 32 size 60k expire 60m",
                    );
                    i += 2;
                }
            }
        }
    }

    /// Parses an ACL criterion and its values (`req_ssl_hello_type 1`, `src 10.0.0.0/8`...).
    fn criterion(&mut self, line: usize, words: &[String]) -> Option<Condition> {
        let crit = words.first().map(String::as_str).unwrap_or("");
        let values: Vec<String> = words
            .iter()
            .skip(1)
            .filter(|w| !w.starts_with('-'))
            .cloned()
            .collect();
        let flags: Vec<&String> = words
            .iter()
            .skip(1)
            .filter(|w| w.starts_with('-'))
            .collect();
        if flags.iter().any(|f| f.as_str() != "-i") {
            self.error(
                line,
                format!("unsupported ACL flags in `{}`", words.join(" ")),
                "tether matches exact values only (-i accepted)",
                "remove the -m/-f flags and list the exact values",
            );
            return None;
        }
        match crit {
            "req_ssl_hello_type" | "req.ssl_hello_type" if values == ["1"] => {
                Some(Condition::ClientHello)
            }
            "rep_ssl_hello_type" | "res.ssl_hello_type" if values == ["2"] => {
                Some(Condition::ServerHello)
            }
            "req_ssl_sni" | "req.ssl_sni" if !values.is_empty() => Some(Condition::Sni(values)),
            "src" if !values.is_empty() => Some(Condition::Src(values)),
            _ => {
                self.error(line, format!("unsupported ACL `{}`", words.join(" ")), "tether understands req_ssl_hello_type 1, rep_ssl_hello_type 2, req.ssl_sni NAME..., src ADDR...", "acl clienthello req_ssl_hello_type 1");
                None
            }
        }
    }

    fn acl(&mut self, d: &Directive, acls: &mut BTreeMap<String, Condition>) {
        let name = d.word(1).to_string();
        let Some(cond) = self.criterion(d.line, &d.words[2.min(d.words.len())..]) else {
            return;
        };
        match (acls.remove(&name), cond) {
            (None, c) => {
                acls.insert(name, c);
            }
            (Some(Condition::Sni(mut a)), Condition::Sni(b)) => {
                a.extend(b);
                acls.insert(name, Condition::Sni(a));
            }
            (Some(Condition::Src(mut a)), Condition::Src(b)) => {
                a.extend(b);
                acls.insert(name, Condition::Src(a));
            }
            (Some(prev), _) => {
                self.error(
                    d.line,
                    format!("ACL `{name}` redefined with another criterion"),
                    "tether cannot OR different criteria",
                    "give it another name",
                );
                acls.insert(name, prev);
            }
        }
    }

    /// Reads `if|unless [!]NAME` (or an anonymous `{ criterion values }`) from word `at`.
    fn condition(
        &mut self,
        d: &Directive,
        at: usize,
        acls: &BTreeMap<String, Condition>,
    ) -> Option<Condition> {
        let words = &d.words[at.min(d.words.len())..];
        let Some(first) = words.first() else {
            return Some(Condition::Always);
        };
        let negate_all = match first.as_str() {
            "if" => false,
            "unless" => true,
            _ => {
                self.error(
                    d.line,
                    format!("`{}`: expected `if` or `unless` after the action", d.text()),
                    "HAProxy rejects it",
                    "... if clienthello",
                );
                return None;
            }
        };
        let rest = &words[1..];
        let cond = if rest.first().map(String::as_str) == Some("{")
            && rest.last().map(String::as_str) == Some("}")
            && rest.len() > 2
        {
            self.criterion(d.line, &rest[1..rest.len() - 1])?
        } else if rest.len() == 1 {
            let (neg, name) = match rest[0].strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, rest[0].as_str()),
            };
            let base = match name {
                "TRUE" => Condition::Always,
                _ => match acls.get(name) {
                    Some(c) => c.clone(),
                    None => {
                        self.error(d.line, format!("unknown ACL `{name}`"), "HAProxy rejects a condition naming an ACL not declared earlier in the same section", format!("acl {name} req_ssl_hello_type 1"));
                        return None;
                    }
                },
            };
            if neg {
                Condition::Not(Box::new(base))
            } else {
                base
            }
        } else {
            self.error(
                d.line,
                format!("condition `{}` is too complex", rest.join(" ")),
                "tether supports one ACL per rule (optionally negated)",
                "split it into several rules",
            );
            return None;
        };
        Some(if negate_all {
            Condition::Not(Box::new(cond))
        } else {
            cond
        })
    }

    fn sample(&mut self, d: &Directive, text: &str) -> Option<Sample> {
        let lv = text
            .strip_prefix("req.")
            .or_else(|| text.strip_prefix("res."))
            .or_else(|| text.strip_prefix("req_"))
            .unwrap_or(text);
        if let Some(args) = lv
            .strip_prefix("payload_lv(")
            .and_then(|r| r.strip_suffix(')'))
        {
            if let Ok(s) = format!("payload-lv({args})").parse::<Sample>() {
                return Some(s);
            }
        }
        match text {
            "req_ssl_sni" | "req.ssl_sni" => Some(Sample::Sni),
            "src" => Some(Sample::Src),
            _ => {
                self.error(
                    d.line,
                    format!("unsupported sample `{text}`"),
                    "tether reads payload_lv(OFFSET,LEN), req.ssl_sni and src",
                    "stick on payload_lv(43,1) if clienthello",
                );
                None
            }
        }
    }

    fn stick_rule(
        &mut self,
        d: &Directive,
        acls: &BTreeMap<String, Condition>,
    ) -> Option<StickRule> {
        let action = match d.word(1) {
            "on" => StickAction::On,
            "match" => StickAction::Match,
            "store-request" => StickAction::StoreRequest,
            "store-response" => StickAction::StoreResponse,
            _ => {
                self.unsupported(d, "a stick rule");
                return None;
            }
        };
        let sample = self.sample(d, d.word(2))?;
        let mut at = 3;
        if d.word(3) == "table" {
            self.error(
                d.line,
                "stick rules on another backend's table are not supported",
                "tether keeps one table per backend",
                "remove `table NAME`",
            );
            at = 5;
        }
        let when = self.condition(d, at, acls)?;
        Some(StickRule {
            action,
            sample,
            when,
        })
    }

    fn server(&mut self, d: &Directive, ordinal: usize) -> Option<Server> {
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
        let mut params_from = 3;
        let mut server = Server::new(name, addr);
        server.check = false;
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
        let mut i = params_from;
        while i < d.words.len() {
            let w = d.word(i);
            match w {
                "check" => server.check = true,
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
                    self.error(d.line, format!("unsupported server option `{other}`"), "tether understands check, weight, inter, rise, fall, maxconn, maxqueue and backup", format!("server {name} {addr} check"));
                }
            }
            i += 1;
        }
        Some(server)
    }

    fn stats(&mut self, s: &Section, name: &str, mut binds: Vec<String>) {
        let mut stats = Stats {
            bind: String::new(),
            uri: "/".to_string(),
            refresh: None,
            hide_version: false,
            admin: false,
            auth: None,
        };
        for d in &s.body {
            match (d.keyword(), d.word(1)) {
                ("bind", a) => binds.push(bind_address(a)),
                ("mode", _) => {}
                ("stats", "enable") => {}
                ("stats", "uri") => stats.uri = d.word(2).to_string(),
                ("stats", "hide-version") => stats.hide_version = true,
                ("stats", "refresh") => stats.refresh = self.duration(d, 2),
                ("stats", "admin") => {
                    if d.words[2..].join(" ") == "if TRUE" {
                        stats.admin = true;
                    } else {
                        self.error(d.line, format!("`{}`: only `stats admin if TRUE` is supported", d.text()), "tether's admin page is on or off; protect it with auth and a loopback bind", "stats admin if TRUE");
                    }
                }
                ("stats", "auth") => {
                    let user = d
                        .word(2)
                        .split_once(':')
                        .map(|(u, _)| u)
                        .unwrap_or(d.word(2))
                        .to_string();
                    self.finding(
                        Severity::Warning,
                        d.line,
                        format!("stats password for `{user}` written in clear in the config"),
                        "anyone who can read the config (backups, tickets, this very post) can \
                         reach the admin page and drain or disable servers; Basic auth over \
                         plain HTTP also sends it in clear",
                        format!(
                            "keep the password out of the config: in tether write [stats.auth] \
                             user = \"{user}\" and password-file = \"/etc/tether/stats.pass\" \
                             (mode 0600), bind the page to 127.0.0.1, and change this password"
                        ),
                    );
                    stats.auth = Some(StatsAuth {
                        user,
                        password_file: None,
                        password_env: Some("TETHER_STATS_PASSWORD".to_string()),
                    });
                }
                ("stats", "realm") => self.inherited_ignored(d, "tether uses a fixed realm"),
                _ => self.unsupported(d, &format!("listen {name}")),
            }
        }
        match binds.first() {
            Some(b) => stats.bind = b.clone(),
            None => self.error(
                s.header.line,
                format!("listen {name} has no bind line"),
                "the stats page would not listen",
                "bind 127.0.0.1:1936",
            ),
        }
        if self.config.stats.is_some() {
            self.error(
                s.header.line,
                "a second stats section",
                "tether has one stats page",
                "keep one `listen stats`",
            );
        } else {
            self.config.stats = Some(stats);
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
        let missing: Vec<String> = self
            .config
            .frontends
            .iter()
            .filter(|f| !f.backend.is_empty() && !names.contains(&f.backend))
            .map(|f| {
                format!(
                    "frontend {} uses backend {} which is not defined",
                    f.name, f.backend
                )
            })
            .collect();
        for m in missing {
            self.error(
                0,
                m,
                "HAProxy refuses the config: unknown backend",
                "define `backend NAME` or fix default_backend",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            r.request_content[0].when,
            Condition::Not(Box::new(Condition::ClientHello))
        );
        assert_eq!(r.request_content[1].when, Condition::ClientHello);
        assert_eq!(
            r.stick[0].when,
            Condition::Not(Box::new(Condition::Sni(vec![
                "a.example".into(),
                "b.example".into()
            ])))
        );
    }
}
