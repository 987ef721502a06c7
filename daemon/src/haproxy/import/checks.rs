//! Health-check directives: `option httpchk|tcp-check|ssl-hello-chk|redis-check|ldap-check|mysql-check|
//! pgsql-check|smtpchk`, the `http-check send|expect` and `tcp-check` rules, read into the
//! backend's [`CheckProtocol`]. HAProxy runs these checks in `mode tcp` too (a Patroni setup
//! sends writes to the primary only because of `option httpchk`), so they are honoured, never
//! dismissed as HTTP-only.

use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{CheckProtocol, DbUser, HttpCheck, SmtpCheck, TcpCheck, TcpStep};
use tether_core::server::check::{tcp::join_quoted, Expect};

impl Importer<'_> {
    /// `option NAME ...` for a check kind; false when `NAME` is not one.
    pub(super) fn check_option(&mut self, p: &mut Draft, d: &Directive) -> bool {
        let args: Vec<&str> = d.words.iter().skip(2).map(String::as_str).collect();
        let protocol = match d.word(1) {
            "httpchk" => CheckProtocol::Http(httpchk(&args)),
            "tcp-check" => CheckProtocol::TcpCheck(TcpCheck::default()),
            "ssl-hello-chk" => CheckProtocol::SslHello,
            "redis-check" => CheckProtocol::Redis,
            "ldap-check" => CheckProtocol::Ldap,
            "mysql-check" => match db_user(&args, false) {
                Some(u) => CheckProtocol::Mysql(u),
                None => return self.check_syntax(d, "option mysql-check user haproxy"),
            },
            "pgsql-check" => match db_user(&args, true) {
                Some(u) => CheckProtocol::Pgsql(u),
                None => return self.check_syntax(d, "option pgsql-check user haproxy"),
            },
            "smtpchk" => CheckProtocol::Smtp(match args[..] {
                [verb @ ("HELO" | "EHLO"), domain] => SmtpCheck {
                    greeting: format!("{verb} {domain}"),
                },
                _ => SmtpCheck::default(),
            }),
            _ => return false,
        };
        p.backend.check.protocol = protocol;
        p.back_origins.push((".check.protocol".into(), d.line));
        true
    }

    fn check_syntax(&mut self, d: &Directive, example: &str) -> bool {
        self.error(
            d.line,
            format!("`{}`: wrong arguments", d.text()),
            "HAProxy rejects it",
            example,
        );
        true
    }

    /// `http-check send ...` / `http-check expect ...`.
    pub(super) fn http_check(&mut self, p: &mut Draft, d: &Directive) {
        match d.word(1) {
            "expect" => {
                let words = d.words[2..].to_vec();
                match Expect::parse_http(&words) {
                    Ok(_) => p.http_rules.expect.push(join_quoted(&words)),
                    Err(e) => self.error(
                        d.line,
                        format!("`{}`: {}", d.text(), e.what),
                        "tether cannot run this rule",
                        e.fix,
                    ),
                }
            }
            "send" => self.http_send(p, d),
            _ => self.error(
                d.line,
                format!("unsupported `{}`", d.text()),
                "tether runs http-check send and http-check expect",
                "http-check expect status 200",
            ),
        }
    }

    fn http_send(&mut self, p: &mut Draft, d: &Directive) {
        let mut i = 2;
        while i + 1 < d.words.len() + 1 {
            let (k, v) = (d.word(i), d.word(i + 1));
            match k {
                "meth" => p.http_rules.method = v.to_string(),
                "uri" => p.http_rules.uri = v.to_string(),
                "ver" => p.http_rules.version = v.to_string(),
                "body" => p.http_rules.body = v.to_string(),
                "hdr" => {
                    p.http_rules.headers.push(format!("{v}: {}", d.word(i + 2)));
                    i += 1;
                }
                "" => break,
                other => {
                    self.error(
                        d.line,
                        format!("unsupported http-check send option `{other}`"),
                        "tether sends meth, uri, ver, hdr and body",
                        "http-check send meth GET uri /health hdr Host db",
                    );
                    return;
                }
            }
            i += 2;
        }
        p.http_send = true;
    }

    /// `tcp-check RULE ...`.
    pub(super) fn tcp_check(&mut self, p: &mut Draft, d: &Directive) {
        match TcpStep::from_haproxy(&d.words[1..]) {
            Ok(step) => p.tcp_steps.push(step),
            Err(e) => self.error(
                d.line,
                format!("`{}`: {}", d.text(), e.what),
                "tether cannot run this rule",
                e.fix,
            ),
        }
    }

    /// Puts the collected `http-check` / `tcp-check` rules into the check protocol.
    pub(super) fn finish_checks(&mut self, p: &mut Draft) {
        match &mut p.backend.check.protocol {
            CheckProtocol::Http(h) => {
                if p.http_send {
                    h.method = p.http_rules.method.clone();
                    h.uri = p.http_rules.uri.clone();
                    h.version = p.http_rules.version.clone();
                }
                h.headers = p.http_rules.headers.clone();
                h.body = p.http_rules.body.clone();
                h.expect = p.http_rules.expect.clone();
            }
            CheckProtocol::TcpCheck(t) => t.steps = std::mem::take(&mut p.tcp_steps),
            _ => {}
        }
    }
}

/// `option httpchk [METH] [URI] [VER]`: one argument is the URI, as in HAProxy.
fn httpchk(args: &[&str]) -> HttpCheck {
    let mut h = HttpCheck::default();
    match args {
        [] => {}
        [uri] => h.uri = uri.to_string(),
        [m, uri, rest @ ..] => {
            h.method = m.to_string();
            h.uri = uri.to_string();
            if let Some(v) = rest.first() {
                h.version = v.to_string();
            }
        }
    }
    h
}

/// `user U [post-41|pre-41]`; PostgreSQL requires the user.
fn db_user(args: &[&str], required: bool) -> Option<DbUser> {
    match args {
        [] if !required => Some(DbUser::default()),
        ["user", u] | ["user", u, "post-41"] => Some(DbUser {
            user: u.to_string(),
            pre41: false,
        }),
        ["user", u, "pre-41"] if !required => Some(DbUser {
            user: u.to_string(),
            pre41: true,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, warnings};
    use tether_core::config::{CheckProtocol, TcpStep};

    /// The Patroni pattern: HTTP checks against a TCP listen (defect 1 of issue 19).
    const PATRONI: &str = "defaults\n  mode tcp\n  timeout connect 4s\n  timeout client 30m\n  \
        timeout server 30m\nlisten master\n  bind *:5000\n  option httpchk OPTIONS /primary\n  \
        http-check expect status 200\n  default-server inter 3s fall 3 rise 2\n  \
        server pg1 127.0.0.1:5432 maxconn 100 check port 8008\n";

    #[test]
    fn httpchk_in_a_tcp_listen_is_honoured_not_dismissed() {
        let im = import_text(&PATRONI.replace("  default-server inter 3s fall 3 rise 2\n", ""));
        assert!(
            warnings(&im).iter().all(|w| !w.what.contains("httpchk")),
            "{:?}",
            im.findings
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let b = &im.config.backends[0];
        match &b.check.protocol {
            CheckProtocol::Http(h) => {
                assert_eq!((h.method.as_str(), h.uri.as_str()), ("OPTIONS", "/primary"));
                assert_eq!(h.expect, ["status 200"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.servers[0].check_port, Some(8008));
        assert!(b.servers[0].check);
    }

    #[test]
    fn every_check_option_is_read() {
        for (opt, want) in [
            ("option redis-check", "redis-check"),
            ("option ssl-hello-chk", "ssl-hello-chk"),
            ("option mysql-check user haproxy", "mysql-check"),
            ("option pgsql-check user haproxy", "pgsql-check"),
            ("option smtpchk HELO mx.example", "smtpchk"),
            ("option ldap-check", "ldap-check"),
            (
                "option tcp-check\n  tcp-check send PING\\r\\n\n  tcp-check expect string +PONG",
                "tcp-check",
            ),
        ] {
            let im = import_text(&format!("backend b\n  timeout connect 1s\n  timeout server 1s\n  {opt}\n  server s1 127.0.0.1:6379 check\n"));
            assert!(errors(&im).is_empty(), "{opt}: {:?}", im.findings);
            let p = &im.config.backends[0].check.protocol;
            assert_eq!(p.haproxy_option(), want);
            assert!(p.plan().is_ok());
            if let CheckProtocol::TcpCheck(t) = p {
                assert_eq!(t.steps[0], TcpStep::Send("PING\r\n".into()));
            }
        }
        let im = import_text("backend b\n  option pgsql-check\n  tcp-check connect alpn h2\n  server s1 127.0.0.1:1 check\n");
        let lines: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(lines, [2, 3]);
    }

    #[test]
    fn default_server_applies_in_order_and_is_reported_once_per_line() {
        let im = import_text(
            "defaults\n  timeout connect 1s\n  timeout server 1s\n  default-server inter 5s fall 4 bogus\n\
             backend a\n  default-server inter 1s\n  server s1 127.0.0.1:1 check\n  server s2 127.0.0.1:2 check inter 9s\n\
             backend b\n  server s3 127.0.0.1:3 check\n",
        );
        let e: Vec<(usize, String)> = errors(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(
            e,
            [(4, "unsupported server option `bogus`".to_string())],
            "once, on its line"
        );
        let s = |b: usize, i: usize| im.config.backends[b].servers[i].clone();
        let sec = std::time::Duration::from_secs;
        assert_eq!(
            (s(0, 0).inter, s(0, 0).fall),
            (Some(sec(1)), Some(4)),
            "backend overrides defaults"
        );
        assert_eq!(s(0, 1).inter, Some(sec(9)), "the server's own word wins");
        assert_eq!(s(1, 0).inter, Some(sec(5)));
    }
}
