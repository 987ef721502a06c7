//! Which directives apply to a proxy: a frontend has no backend side (and the reverse), and
//! HTTP-mode settings do nothing in `mode tcp`. HAProxy ignores both silently; tether says so,
//! once per line for settings inherited from `defaults`.

use super::proxy::Draft;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;

/// Options that only mean something in `mode http`.
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
    "http-restrict-req-hdr-names",
];
/// Timeouts that only mean something in `mode http`.
const HTTP_ONLY_TIMEOUTS: &[&str] = &["http-request", "http-keep-alive"];

/// The side of a proxy a directive configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// Listening: `bind`, `default_backend`, `maxconn`, `timeout client`.
    Front,
    /// Servers: `balance`, `server`, stick rules, retries, server-side timeouts.
    Back,
    /// Both, or the proxy as a whole.
    Either,
}

/// The side directive `d` configures.
pub(super) fn side_of(d: &Directive) -> Side {
    let k = d.keyword();
    let front = matches!(k, "bind" | "default_backend" | "use_backend" | "maxconn")
        || (k == "timeout" && matches!(d.word(1), "client" | "client-fin"))
        || (k == "option" && d.word(1) == "clitcpka");
    let back = matches!(
        k,
        "balance"
            | "server"
            | "stick-table"
            | "stick"
            | "retries"
            | "retry-on"
            | "fullconn"
            | "hash-balance-factor"
            | "hash-type"
    ) || (k == "timeout"
        && matches!(
            d.word(1),
            "connect" | "server" | "server-fin" | "queue" | "check" | "tunnel"
        ))
        || matches!(k, "http-check" | "tcp-check" | "default-server")
        || (k == "option"
            && matches!(
                d.word(1),
                "redispatch"
                    | "persist"
                    | "httpchk"
                    | "tcp-check"
                    | "ssl-hello-chk"
                    | "redis-check"
                    | "ldap-check"
                    | "mysql-check"
                    | "pgsql-check"
                    | "smtpchk"
                    | "srvtcpka"
                    | "log-health-checks"
            ));
    if front {
        Side::Front
    } else if back {
        Side::Back
    } else {
        Side::Either
    }
}

/// Whether `d` only means something in `mode http`.
fn http_only(d: &Directive) -> bool {
    (d.keyword() == "option" && HTTP_ONLY_OPTIONS.contains(&d.word(1)))
        || (d.keyword() == "timeout" && HTTP_ONLY_TIMEOUTS.contains(&d.word(1)))
}

impl Importer<'_> {
    /// A `stick-table` in a frontend: HAProxy keeps it (for `track-sc` counters and for other
    /// sections' `table` references), tether keeps tables in backends only, for affinity.
    fn frontend_table(&mut self, p: &Draft, d: &Directive) {
        self.finding(
            Severity::Warning,
            d.line,
            format!("`{}` does nothing in {}", d.text(), p.context()),
            "HAProxy keeps a frontend's table for `track-sc` counters and other sections' \
             `table` references; tether keeps stick tables in backends only, for affinity, and \
             implements neither",
            "remove it; per-client counters and limits (`track-sc`) must stay on HAProxy",
        );
    }

    /// Whether `d` (from `defaults` when `inherited`) applies to proxy `p`; reports the
    /// directives written in the proxy itself that do not.
    pub(super) fn applies(&mut self, p: &Draft, inherited: bool, d: &Directive) -> bool {
        let side = side_of(d);
        if (side == Side::Front && !p.front) || (side == Side::Back && !p.back) {
            if !inherited && d.keyword() == "stick-table" {
                self.frontend_table(p, d);
            } else if !inherited {
                self.finding(
                    Severity::Warning,
                    d.line,
                    format!("`{}` does nothing in {}", d.text(), p.context()),
                    format!(
                        "HAProxy ignores it: a {} has no {} side",
                        p.keyword,
                        if side == Side::Front {
                            "frontend"
                        } else {
                            "backend"
                        }
                    ),
                    "move it to the section it belongs to",
                );
            }
            return false;
        }
        if !http_only(d) {
            return true;
        }
        if p.mode == "tcp" {
            if inherited {
                let e = self
                    .inherited_http
                    .entry(d.line)
                    .or_insert_with(|| (d.text(), Vec::new()));
                e.1.push(p.name.clone());
            } else {
                self.finding(
                    Severity::Warning,
                    d.line,
                    format!("`{}` has no effect in tcp {}", d.text(), p.context()),
                    "it is an HTTP-mode setting; HAProxy ignores it in `mode tcp`",
                    "remove it",
                );
            }
        }
        false
    }

    /// One warning per HTTP-only line of `defaults`, naming the tcp proxies that inherit it.
    pub(super) fn report_inherited_http(&mut self) {
        for (line, (text, proxies)) in std::mem::take(&mut self.inherited_http) {
            self.finding(
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
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{import_text, warnings};
    use super::{side_of, Side};
    use crate::haproxy::lexer::split_lines;

    #[test]
    fn sides_of_directives() {
        let (ds, _) = split_lines(
            "bind :1\ntimeout client 1s\ntimeout server 1s\noption persist\nserver a b:1\n\
             option tcplog\nacl a src 1.2.3.4\n",
        );
        let sides: Vec<Side> = ds.iter().map(side_of).collect();
        use Side::*;
        assert_eq!(sides, [Front, Front, Back, Back, Back, Either, Either]);
    }

    #[test]
    fn a_directive_for_a_missing_side_is_warned_about_unless_inherited() {
        let im = import_text(
            "defaults\n  maxconn 10\n  retries 2\nfrontend f\n  bind :9443\n  \
             default_backend b\n  timeout client 1m\n  balance leastconn\n\
             backend b\n  timeout connect 1s\n  timeout server 1s\n  bind :9444\n  \
             server s1 127.0.0.1:8443\n",
        );
        let w: Vec<(usize, String)> = warnings(&im)
            .iter()
            .map(|f| (f.line, f.why.clone()))
            .collect();
        assert_eq!(
            w,
            [
                (
                    8,
                    "HAProxy ignores it: a frontend has no backend side".to_string()
                ),
                (
                    12,
                    "HAProxy ignores it: a backend has no frontend side".to_string()
                ),
            ]
        );
        assert_eq!(im.config.frontends[0].maxconn, Some(10), "front side kept");
        assert_eq!(im.config.backends[0].retries, 2, "back side kept");
        assert_eq!(im.config.frontends[0].bind, ["0.0.0.0:9443"]);
    }

    #[test]
    fn a_frontend_stick_table_is_not_called_ignored_by_haproxy() {
        let im = import_text(
            "frontend f\n  bind :2222\n  stick-table type ip size 1k store conn_cur\n  \
             default_backend b\nbackend b\n  server s1 127.0.0.1:22\n",
        );
        let w: Vec<_> = warnings(&im).into_iter().filter(|f| f.line == 3).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].why.contains("HAProxy keeps a frontend's table"),
            "{w:?}"
        );
        assert!(w[0].fix.contains("track-sc"), "{w:?}");
    }

    #[test]
    fn http_settings_in_defaults_are_reported_once_with_every_tcp_proxy() {
        let im = import_text(
            "defaults\n  option httplog\n  timeout http-request 5s\n  timeout client 1m\n\
             frontend f\n  bind :9443\n  default_backend b\n  option forwardfor\n\
             backend b\n  timeout connect 1s\n  timeout server 1s\n  server s1 127.0.0.1:8443\n",
        );
        let w: Vec<(usize, String)> = warnings(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(
            w,
            [
                (
                    2,
                    "`option httplog` in defaults has no effect on the tcp proxies f, b"
                        .to_string()
                ),
                (
                    3,
                    "`timeout http-request 5s` in defaults has no effect on the tcp proxies f, b"
                        .to_string()
                ),
                (
                    8,
                    "`option forwardfor` has no effect in tcp frontend f".to_string()
                ),
            ]
        );
    }
}
