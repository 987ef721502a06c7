//! The stats page: a `listen` section with `stats enable|uri|refresh|hide-version|admin|auth`
//! (and `monitor-uri`) becomes `[stats]`; `bind ADDR ssl crt FILE` serves it over HTTPS. A bind option tether
//! cannot honour is an error: ignoring `ssl` would serve the page, credentials included, in
//! clear on an address the operator believes encrypted.

use super::frontend::bind_address;
use super::sections::Section;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::{ClearPassword, Stats, StatsAuth, StatsTls};
use tether_core::route::Cidr;

impl Importer<'_> {
    /// A `listen` section with `stats` directives: tether's stats page.
    pub(super) fn stats(&mut self, s: &Section, name: &str, mut binds: Vec<String>) {
        if !binds.is_empty() {
            self.origins.note("stats.bind", s.header.line);
        }
        let mut stats = Stats {
            bind: String::new(),
            uri: "/".to_string(),
            refresh: None,
            hide_version: false,
            admin: false,
            admin_from: Vec::new(),
            auth: None,
            tls: None,
            admin_without_auth: false,
            monitor_uri: None,
            monitor_fail: Vec::new(),
        };
        let mut bind_line = s.header.line;
        let mut acls = super::monitor::StatsAcls::new();
        for d in &s.body {
            match (d.keyword(), d.word(1)) {
                ("bind", a) => {
                    if binds.is_empty() {
                        self.origins.note("stats.bind", d.line);
                        bind_line = d.line;
                    }
                    binds.push(bind_address(a));
                    if let Some(tls) = self.stats_bind_options(d) {
                        stats.tls = Some(tls);
                    }
                }
                ("mode", _) => {}
                ("log", "global") => self.inherited_ignored(
                    d,
                    "tether sends every connection's log line to the global `log` targets (and stderr)",
                ),
                ("stats", "enable") => {}
                ("stats", "uri") => {
                    stats.uri = d.word(2).to_string();
                    self.origins.note("stats.uri", d.line);
                }
                ("stats", "hide-version") => stats.hide_version = true,
                ("stats", "refresh") => stats.refresh = self.duration(d, 2),
                ("stats", "admin") => match admin_sources(&d.words[2..]) {
                    Some(from) => {
                        stats.admin = true;
                        stats.admin_from = from;
                    }
                    None => self.error(
                        d.line,
                        format!("`{}`: unsupported admin condition", d.text()),
                        "tether allows admin actions to every client or to client networks: \
                         `if TRUE`, `if LOCALHOST` or `if { src NET ... }`",
                        "stats admin if LOCALHOST",
                    ),
                },
                ("stats", "auth") => {
                    stats.auth = self.stats_auth(d);
                    self.origins.note("stats.auth", d.line);
                }
                ("stats", "realm") => self.inherited_ignored(d, "tether uses a fixed realm"),
                ("acl", name) if !name.is_empty() => self.stats_acl(d, &mut acls),
                ("monitor", "fail") => {
                    if let Some(m) = self.monitor_fail(d, &acls) {
                        self.origins
                            .note(&format!("stats.monitor-fail[{}]", stats.monitor_fail.len()), d.line);
                        stats.monitor_fail.push(m);
                    }
                }
                ("monitor-uri", uri) if !uri.is_empty() => {
                    stats.monitor_uri = Some(uri.to_string());
                    self.origins.note("stats.monitor-uri", d.line);
                }
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
        self.stats_exposure(&stats, bind_line);
        if self.config.stats.is_some() {
            self.error(
                s.header.line,
                "a second stats section",
                "tether has one stats page",
                "keep one `listen stats`",
            );
        } else {
            self.origins.note("stats", s.header.line);
            self.config.stats = Some(stats);
        }
    }

    /// The options after a stats `bind` address: `ssl` with `crt FILE` (a PEM holding the
    /// certificate chain and the key, as HAProxy reads it) serve HTTPS; anything else is an
    /// error.
    fn stats_bind_options(&mut self, d: &Directive) -> Option<StatsTls> {
        let (mut ssl, mut crt) = (false, None);
        let mut words = d.words.iter().skip(2);
        while let Some(opt) = words.next() {
            match opt.as_str() {
                "ssl" => ssl = true,
                "crt" => match words.next() {
                    Some(file) => crt = Some(file.clone()),
                    None => {
                        self.error(
                            d.line,
                            "`crt` without a file",
                            "HAProxy rejects it",
                            format!("bind {} ssl crt /etc/tether/stats.pem", d.word(1)),
                        );
                        return None;
                    }
                },
                other => {
                    // Its arguments, if any, are unknown: one error for the rest of the line.
                    self.error(
                        d.line,
                        format!("unsupported stats bind option `{other}`"),
                        "tether serves the stats page with `ssl crt FILE` or in clear, and will \
                         not ignore an option that changes how it is reached",
                        format!("bind {} ssl crt /etc/tether/stats.pem", d.word(1)),
                    );
                    return None;
                }
            }
        }
        match (ssl, crt) {
            (true, Some(cert)) => Some(StatsTls { cert, key: None }),
            (false, None) => None,
            (true, None) => {
                self.error(
                    d.line,
                    "`ssl` without `crt FILE`",
                    "there is no certificate to serve the page with",
                    format!("bind {} ssl crt /etc/tether/stats.pem", d.word(1)),
                );
                None
            }
            (false, Some(_)) => {
                self.error(
                    d.line,
                    "`crt` without `ssl`",
                    "the page would be served in clear although a certificate is named",
                    format!("bind {} ssl crt {}", d.word(1), d.word(3)),
                );
                None
            }
        }
    }

    /// Warnings about who can reach the page: Basic credentials in clear off loopback, and
    /// admin actions that tether keeps closed without credentials.
    fn stats_exposure(&mut self, stats: &Stats, bind_line: usize) {
        if stats.cleartext_auth_off_loopback() {
            self.finding(
                Severity::Warning,
                bind_line,
                format!("stats Basic auth over plain HTTP on {}", stats.bind),
                "the password crosses the network in clear on every request (Base64 is not encryption)",
                format!("serve it over TLS: bind {} ssl crt /etc/tether/stats.pem, or bind it to 127.0.0.1", stats.bind),
            );
        }
        if stats.admin && stats.auth.is_none() {
            self.finding(
                Severity::Warning,
                bind_line,
                "stats admin without `stats auth`: tether keeps admin actions closed",
                "without credentials any web page the operator opens could post admin actions (HAProxy would apply them)",
                "add `stats auth admin:PASSWORD` (better: [stats.auth] with password-file in a native config), or admin-without-auth = true in [stats] if you accept the risk",
            );
        }
    }

    /// `stats auth USER:PASSWORD`: served with that password, as HAProxy does, and a warning
    /// that it sits in clear in the file.
    fn stats_auth(&mut self, d: &Directive) -> Option<StatsAuth> {
        let Some((user, password)) = d.word(2).split_once(':') else {
            self.error(
                d.line,
                format!("`{}`: expects USER:PASSWORD", d.text()),
                "HAProxy rejects it",
                "stats auth admin:PASSWORD",
            );
            return None;
        };
        let user = user.to_string();
        self.finding(
            Severity::Warning,
            d.line,
            format!("stats password for `{user}` written in clear in the config"),
            "tether serves the page with it, as HAProxy does, but anyone who can read the config \
             (backups, tickets, this very post) can reach the admin page and drain or disable \
             servers; Basic auth over plain HTTP also sends it in clear",
            format!(
                "keep the password out of the config: in tether write [stats.auth] \
                 user = \"{user}\" and password-file = \"/etc/tether/stats.pass\" \
                 (mode 0600), bind the page to 127.0.0.1, and change this password"
            ),
        );
        Some(StatsAuth {
            user,
            password_file: None,
            password_env: None,
            password: Some(ClearPassword(password.to_string())),
        })
    }
}

/// The client networks of `stats admin if COND`: `TRUE` (every client: empty), HAProxy's
/// predefined `LOCALHOST` (`src 127.0.0.1/8 ::1`) or an anonymous `{ src NET ... }`.
fn admin_sources(cond: &[String]) -> Option<Vec<Cidr>> {
    let words: Vec<&str> = cond.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["if", "TRUE"] => Some(Vec::new()),
        ["if", "LOCALHOST"] => ["127.0.0.1/8", "::1"]
            .iter()
            .map(|n| n.parse().ok())
            .collect(),
        ["if", "{", "src", nets @ .., "}"] if !nets.is_empty() => {
            nets.iter().map(|n| n.parse().ok()).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, warnings};
    use crate::finding::Severity;
    use std::time::Duration;
    use tether_core::config::ClearPassword;
    use tether_core::config::StatsTls;

    #[test]
    fn a_stats_listen_becomes_the_stats_page() {
        let im = import_text(
            "listen stats\n  mode http\n  bind 127.0.0.1:1936\n  stats enable\n  \
             stats uri /haproxy\n  stats refresh 5s\n  stats hide-version\n  \
             stats admin if TRUE\n  stats realm x\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let s = im.config.stats.unwrap();
        assert_eq!(s.bind, "127.0.0.1:1936");
        assert_eq!(s.uri, "/haproxy");
        assert_eq!(s.refresh, Some(Duration::from_secs(5)));
        assert!(s.hide_version && s.admin);
        assert_eq!(s.auth, None);
    }

    #[test]
    fn stats_admin_is_limited_to_the_client_networks_of_its_condition() {
        let admin_from = |cond: &str| {
            let im = import_text(&format!(
                "listen stats\n  bind 127.0.0.1:1936\n  stats enable\n  stats admin {cond}\n"
            ));
            assert!(errors(&im).is_empty(), "{cond}: {:?}", im.findings);
            let s = im.config.stats.unwrap();
            assert!(s.admin, "{cond}");
            s.admin_from
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(admin_from("if TRUE"), Vec::<String>::new());
        assert_eq!(admin_from("if LOCALHOST"), ["127.0.0.0/8", "::1/128"]);
        assert_eq!(
            admin_from("if { src 10.0.0.0/8 192.0.2.7 }"),
            ["10.0.0.0/8", "192.0.2.7/32"]
        );
        for cond in [
            "if { src not-an-address }",
            "if FALSE",
            "if { src }",
            "unless TRUE",
        ] {
            let im = import_text(&format!(
                "listen stats\n  bind 127.0.0.1:1936\n  stats enable\n  stats admin {cond}\n"
            ));
            let e = errors(&im);
            assert_eq!(e.len(), 1, "{cond}: {e:?}");
            assert_eq!(
                (e[0].line, e[0].fix.as_str()),
                (4, "stats admin if LOCALHOST")
            );
            assert!(!im.config.stats.unwrap().admin, "{cond}");
        }
    }

    #[test]
    fn stats_auth_keeps_the_clear_password_and_warns() {
        let im = import_text(
            "listen stats\n  bind 127.0.0.1:1936\n  stats enable\n  stats auth admin:se:cret\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let auth = im.config.stats.unwrap().auth.unwrap();
        assert_eq!(auth.user, "admin");
        assert_eq!(auth.password, Some(ClearPassword("se:cret".into())));
        assert_eq!((auth.password_file, auth.password_env), (None, None));
        let w = &im.findings[0];
        assert_eq!((w.severity, w.line), (Severity::Warning, 4));
        assert!(w.what.contains("in clear"), "{w}");
        assert!(!w.to_string().contains("se:cret"), "{w}");
    }

    #[test]
    fn stats_auth_without_a_password_is_refused() {
        let im = import_text("listen stats\n  bind 127.0.0.1:1936\n  stats auth admin\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 3);
        assert_eq!(im.config.stats.unwrap().auth, None);
    }

    #[test]
    fn ssl_crt_on_the_stats_bind_serves_https() {
        let im = import_text(
            "listen stats\n  bind 0.0.0.0:1936 ssl crt /etc/tether/stats.pem\n  stats enable\n  \
             stats auth admin:secret\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let s = im.config.stats.unwrap();
        assert_eq!(s.bind, "0.0.0.0:1936");
        assert_eq!(
            s.tls,
            Some(StatsTls {
                cert: "/etc/tether/stats.pem".into(),
                key: None
            })
        );
        assert!(
            !im.findings.iter().any(|f| f.what.contains("plain HTTP")),
            "{:?}",
            im.findings
        );
    }

    #[test]
    fn stats_bind_options_tether_cannot_honour_are_errors() {
        for (bind, what) in [
            (
                "bind 127.0.0.1:1936 ssl crt /x.pem alpn h2",
                "unsupported stats bind option `alpn`",
            ),
            (
                "bind 127.0.0.1:1936 accept-proxy",
                "unsupported stats bind option `accept-proxy`",
            ),
            ("bind 127.0.0.1:1936 ssl", "`ssl` without `crt FILE`"),
            ("bind 127.0.0.1:1936 crt /x.pem", "`crt` without `ssl`"),
            ("bind 127.0.0.1:1936 ssl crt", "`crt` without a file"),
        ] {
            let im = import_text(&format!("listen stats\n  {bind}\n  stats enable\n"));
            let e = errors(&im);
            assert_eq!(e.len(), 1, "{bind}: {e:?}");
            assert_eq!((e[0].line, e[0].what.as_str()), (2, what), "{bind}");
        }
    }

    #[test]
    fn basic_auth_in_clear_off_loopback_warns_at_the_bind_line() {
        let im =
            import_text("listen stats\n  bind :1936\n  stats enable\n  stats auth admin:secret\n");
        let w = warnings(&im);
        let clear: Vec<_> = w.iter().filter(|f| f.what.contains("plain HTTP")).collect();
        assert_eq!(clear.len(), 1, "{w:?}");
        assert_eq!(clear[0].line, 2);
        let local = import_text(
            "listen stats\n  bind 127.0.0.1:1936\n  stats enable\n  stats auth admin:secret\n",
        );
        assert!(!warnings(&local)
            .iter()
            .any(|f| f.what.contains("plain HTTP")));
    }

    #[test]
    fn what_the_stats_page_cannot_do_is_an_error() {
        let im = import_text(
            "listen stats\n  stats enable\n  stats admin unless LOCALHOST\n  stats show-legends\n\
             listen more\n  bind :1937\n  stats enable\n",
        );
        let e: Vec<(usize, String)> = errors(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(e.len(), 4, "{e:?}");
        assert_eq!(e[0], (1, "listen stats has no bind line".to_string()));
        assert_eq!(e[1].0, 3);
        assert_eq!(e[2].0, 4);
        assert_eq!(e[3], (5, "a second stats section".to_string()));
    }

    /// Issue 19 defect 4: `log global` was a note in proxies and an error in `listen stats`.
    #[test]
    fn log_global_is_the_same_note_in_the_stats_section() {
        let im = import_text(
            "listen stats\n  bind 127.0.0.1:8404\n  mode http\n  log global\n  stats enable\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let notes: Vec<(usize, &str)> = im
            .findings
            .iter()
            .filter(|f| f.severity == crate::finding::Severity::Info)
            .map(|f| (f.line, f.what.as_str()))
            .collect();
        assert_eq!(notes, [(4, "`log global` is ignored")]);
    }
}
