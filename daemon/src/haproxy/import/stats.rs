//! The stats page: a `listen` section with `stats enable|uri|refresh|hide-version|admin|auth`
//! becomes `[stats]`.

use super::frontend::bind_address;
use super::sections::Section;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::{ClearPassword, Stats, StatsAuth};

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
            auth: None,
        };
        for d in &s.body {
            match (d.keyword(), d.word(1)) {
                ("bind", a) => {
                    if binds.is_empty() {
                        self.origins.note("stats.bind", d.line);
                    }
                    binds.push(bind_address(a));
                }
                ("mode", _) => {}
                ("stats", "enable") => {}
                ("stats", "uri") => {
                    stats.uri = d.word(2).to_string();
                    self.origins.note("stats.uri", d.line);
                }
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
                    stats.auth = self.stats_auth(d);
                    self.origins.note("stats.auth", d.line);
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
            self.origins.note("stats", s.header.line);
            self.config.stats = Some(stats);
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use crate::finding::Severity;
    use std::time::Duration;
    use tether_core::config::ClearPassword;

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
    fn what_the_stats_page_cannot_do_is_an_error() {
        let im = import_text(
            "listen stats\n  stats enable\n  stats admin if LOCALHOST\n  stats show-legends\n\
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
}
