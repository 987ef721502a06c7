//! `option` and `no option` in tcp proxies (`redispatch [N]`, `persist`, `tcplog`,
//! `dontlognull`, `tcpka`/`clitcpka`/`srvtcpka`, `splice-*`), `retries` and `retry-on`: what a proxy does
//! when a server fails, and what it logs.

use super::proxy::Draft;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::{LogFormat, LogTemplate, Redispatch};

/// Options that `no option` turns off.
pub(super) const NEGATABLE: &[&str] = &[
    "redispatch",
    "persist",
    "tcpka",
    "clitcpka",
    "srvtcpka",
    "dontlognull",
    "log-health-checks",
];

/// `retry-on` classes that only HTTP retries use (HAProxy 2.6 accepts them in `mode tcp` and
/// does nothing with them).
const HTTP_RETRY_CLASSES: &[&str] = &[
    "empty-response",
    "junk-response",
    "response-timeout",
    "0rtt-rejected",
    "401",
    "403",
    "404",
    "408",
    "425",
    "500",
    "501",
    "502",
    "503",
    "504",
];

/// `option tcpka` (both sides), `clitcpka` (clients), `srvtcpka` (servers): SO_KEEPALIVE.
fn keepalive(p: &mut Draft, option: &str, on: bool) {
    if option != "srvtcpka" {
        p.frontend.tcp_keepalive = on;
    }
    if option != "clitcpka" {
        p.backend.tcp_keepalive = on;
    }
}

impl Importer<'_> {
    /// `option NAME [ARG]`.
    pub(super) fn option(&mut self, p: &mut Draft, d: &Directive) {
        if self.check_option(p, d) {
            return;
        }
        match d.word(1) {
            "tcplog" => self.config.global.log_format = LogFormat::Tcplog,
            "dontlognull" => p.frontend.dont_log_null = true,
            "redispatch" => p.backend.redispatch = self.redispatch(d, p.backend.redispatch),
            "persist" => p.backend.persist = true,
            "log-health-checks" => p.backend.log_health_checks = true,
            "tcpka" | "clitcpka" | "srvtcpka" => keepalive(p, d.word(1), true),
            // tether splices every bulk transfer once it has done inspecting it, as
            // `splice-auto` (within `maxpipes`; `nosplice` turns it off for the process).
            "splice-auto" | "splice-request" | "splice-response" => {}
            "" => self.error(
                d.line,
                "`option` without an option name".to_string(),
                "HAProxy refuses it: 'option' expects an option name",
                "option tcplog",
            ),
            _ => self.unsupported(d, &p.context()),
        }
    }

    /// `option redispatch [INTERVAL]`: -1 (the default) redispatches on the last retry, 0 never.
    fn redispatch(&mut self, d: &Directive, current: Redispatch) -> Redispatch {
        match d.word(2) {
            "" => Redispatch::Interval(-1),
            n => match n.parse::<i32>() {
                Ok(0) => Redispatch::Never,
                Ok(v) => Redispatch::Interval(v),
                Err(_) => {
                    self.error(
                        d.line,
                        format!("`{}`: bad interval", d.text()),
                        "HAProxy rejects it",
                        "option redispatch -1",
                    );
                    current
                }
            },
        }
    }

    /// `no option redispatch|persist|tcpka|clitcpka|srvtcpka|dontlognull`.
    pub(super) fn no_option(&mut self, p: &mut Draft, d: &Directive) {
        match d.word(2) {
            "redispatch" => p.backend.redispatch = Redispatch::Never,
            "persist" => p.backend.persist = false,
            "log-health-checks" => p.backend.log_health_checks = false,
            "dontlognull" => p.frontend.dont_log_null = false,
            ka => keepalive(p, ka, false),
        }
    }

    /// `retry-on CLASS...`: in `mode tcp` only `conn-failure` (alone, or in
    /// `all-retryable-errors`) means something: listed, failed connects are retried (`retries`);
    /// not listed (`none`, or HTTP classes only), they are not, as in HAProxy 2.6.
    pub(super) fn retry_on(&mut self, p: &mut Draft, d: &Directive) {
        let classes = &d.words[1..];
        if classes.is_empty() {
            return self.error(
                d.line,
                "`retry-on` without a class",
                "HAProxy rejects it",
                "retry-on conn-failure",
            );
        }
        let mut http_only = Vec::new();
        for c in classes.iter().map(String::as_str) {
            match c {
                "none" | "conn-failure" | "all-retryable-errors" => {}
                c if HTTP_RETRY_CLASSES.contains(&c) => http_only.push(c),
                c => {
                    return self.error(
                        d.line,
                        format!("`{}`: unknown retry-on class `{c}`", d.text()),
                        "HAProxy rejects it",
                        "retry-on conn-failure",
                    )
                }
            }
        }
        p.retry_on_conn_failure = classes
            .iter()
            .any(|c| c == "conn-failure" || c == "all-retryable-errors");
        if !http_only.is_empty() {
            let keeps = if p.retry_on_conn_failure {
                "retry-on conn-failure"
            } else {
                "retry-on none"
            };
            self.finding(
                Severity::Warning,
                d.line,
                format!(
                    "`retry-on {}` does nothing in mode tcp",
                    http_only.join(" ")
                ),
                "these classes retry HTTP requests; in mode tcp HAProxy 2.6 (and tether) \
                 retries only failed connects, and only when conn-failure is listed",
                keeps,
            );
        }
    }

    /// `log-format TEMPLATE`: HAProxy's `%` variables, rendered by tether for every connection.
    /// tether has one log format for the process: proxies asking for different ones are an
    /// error, never a silent choice of one.
    pub(super) fn log_format(&mut self, d: &Directive) {
        let text = d.words[1..].join(" ");
        let template = match text.parse::<LogTemplate>() {
            Ok(t) => t,
            Err(e) => {
                return self.error(
                    d.line,
                    format!("`{}`: {}", d.text(), e.what),
                    "tether fills only what it knows of a TCP connection; an empty or made-up \
                     field would mislead the tools that parse the line",
                    e.fix,
                )
            }
        };
        if let LogFormat::Template(old) = &self.config.global.log_format {
            if old.text() != text {
                let old = old.text().to_string();
                return self.error(
                    d.line,
                    format!("a second log-format `{text}` (the first: `{old}`)"),
                    "tether writes one log format for every frontend",
                    format!("log-format \"{old}\" in defaults, for every proxy"),
                );
            }
        }
        self.config.global.log_format = LogFormat::Template(template);
    }

    /// `retries N`.
    pub(super) fn retries(&mut self, p: &mut Draft, d: &Directive) {
        if let Some(n) = self.number(d, 1, "retries 3") {
            p.backend.retries = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use tether_core::config::{LogFormat, Redispatch};

    fn backend(body: &str) -> super::super::Import {
        import_text(&format!(
            "defaults\n  option redispatch\n  option persist\nbackend b\n  timeout connect 1s\n  \
             timeout server 1s\n{body}  server s1 127.0.0.1:8443\n"
        ))
    }

    #[test]
    fn redispatch_forms() {
        for (body, expect) in [
            ("", Redispatch::Interval(-1)),
            ("  option redispatch 2\n", Redispatch::Interval(2)),
            ("  option redispatch 0\n", Redispatch::Never),
            ("  no option redispatch\n", Redispatch::Never),
        ] {
            let im = backend(body);
            assert!(im.findings.is_empty(), "{body}: {:?}", im.findings);
            assert_eq!(im.config.backends[0].redispatch, expect, "{body}");
        }
        let im = backend("  option redispatch often\n");
        assert_eq!(errors(&im)[0].line, 7);
        assert_eq!(im.config.backends[0].redispatch, Redispatch::Interval(-1));
    }

    #[test]
    fn persist_retries_and_tcplog() {
        let im = backend("  retries 5\n  option tcplog\n");
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        assert!(im.config.backends[0].persist);
        assert_eq!(im.config.backends[0].retries, 5);
        assert_eq!(im.config.global.log_format, LogFormat::Tcplog);
        let im = backend("  no option persist\n  retries many\n  option splice-auto\n");
        assert!(!im.config.backends[0].persist);
        let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(e, [8], "splice-auto is what tether does");
    }

    #[test]
    fn log_health_checks_and_its_negation() {
        let im = backend("  option log-health-checks\n");
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let b = &im.config.backends[0];
        assert!(b.log_health_checks);
        // Native: `log-health-checks = true`, loaded back unchanged.
        let text = crate::haproxy::to_toml(&im.config);
        assert!(text.contains("log-health-checks = true"), "{text}");
        let back: tether_core::config::Config = toml::from_str(&text).unwrap();
        assert!(back.backends[0].log_health_checks);
        let im = backend("  option log-health-checks\n  no option log-health-checks\n");
        assert!(!im.config.backends[0].log_health_checks);
    }

    /// Issue 19: `log-format` imports as the process's template (from `defaults`, once); a
    /// variable tether cannot fill, or a second different template, is an error on its line.
    #[test]
    fn log_format_imports_and_what_cannot_be_honoured_is_an_error() {
        let text = |defaults: &str, listen: &str| {
            import_text(&format!(
                "defaults\n  timeout client 1s\n  timeout connect 1s\n  timeout server 1s\n\
                 {defaults}listen l\n  bind :9443\n{listen}  server s1 127.0.0.1:8443\n\
                 listen m\n  bind :9444\n  server s1 127.0.0.1:8443\n"
            ))
        };
        let im = text("  log-format \"%ci:%cp [%t] %ft %b/%s %Tt %B %ts\"\n", "");
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        match &im.config.global.log_format {
            LogFormat::Template(t) => assert_eq!(t.text(), "%ci:%cp [%t] %ft %b/%s %Tt %B %ts"),
            other => panic!("not a template: {other:?}"),
        }
        let im = text("", "  log-format \"%ci %HM\"\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].line == 7 && e[0].what.contains("%HM"), "{e:?}");
        let im = text("  log-format \"%ci\"\n", "  log-format \"%ci %b\"\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].what.contains("second log-format"), "{e:?}");
    }

    #[test]
    fn tcp_keepalive_options_set_their_side_and_no_option_clears_them() {
        let listen = |body: &str| {
            import_text(&format!(
                "defaults\n  option tcpka\nlisten l\n  bind :9443\n  timeout client 1s\n  \
                 timeout connect 1s\n  timeout server 1s\n{body}  server s1 127.0.0.1:8443\n"
            ))
        };
        for (body, client, server) in [
            ("", true, true),
            ("  no option tcpka\n", false, false),
            ("  no option tcpka\n  option clitcpka\n", true, false),
            ("  no option tcpka\n  option srvtcpka\n", false, true),
            ("  no option clitcpka\n", false, true),
        ] {
            let im = listen(body);
            assert!(im.findings.is_empty(), "{body}: {:?}", im.findings);
            assert_eq!(im.config.frontends[0].tcp_keepalive, client, "{body}");
            assert_eq!(im.config.backends[0].tcp_keepalive, server, "{body}");
        }
    }

    #[test]
    fn retry_on_keeps_connect_retries_only_with_conn_failure() {
        for (line, retries, warned) in [
            ("retry-on conn-failure", 5, false),
            ("retry-on all-retryable-errors", 5, false),
            ("retry-on conn-failure empty-response 503", 5, true),
            ("retry-on none", 0, false),
            ("retry-on empty-response response-timeout", 0, true),
        ] {
            let im = backend(&format!("  retries 5\n  {line}\n"));
            assert!(errors(&im).is_empty(), "{line}: {:?}", im.findings);
            assert_eq!(im.config.backends[0].retries, retries, "{line}");
            assert_eq!(
                im.findings.len(),
                usize::from(warned),
                "{line}: {:?}",
                im.findings
            );
            if warned {
                assert_eq!(im.findings[0].line, 8, "{line}");
                assert!(im.findings[0].what.contains("does nothing in mode tcp"));
            }
        }
        for bad in ["retry-on", "retry-on conn-failure bogus"] {
            let im = backend(&format!("  {bad}\n"));
            let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
            assert_eq!(e, [7], "{bad}");
            assert_eq!(im.config.backends[0].retries, 3, "{bad}: the default stays");
        }
    }

    #[test]
    fn retry_on_from_defaults_applies_to_each_backend() {
        let im = import_text(
            "defaults\n  retry-on none\n  timeout connect 1s\n  timeout server 1s\n\
             backend a\n  server s1 127.0.0.1:8443\nbackend b\n  retry-on conn-failure\n  \
             server s1 127.0.0.1:8443\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let r: Vec<u32> = im.config.backends.iter().map(|b| b.retries).collect();
        assert_eq!(r, [0, 3]);
    }
}
