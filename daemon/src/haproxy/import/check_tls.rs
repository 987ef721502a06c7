//! Server options for health checks over TLS (`check-ssl`, `verify`, `ca-file`, `check-sni`,
//! `verifyhost`, with `ssl-server-verify` and `ca-base` from `global`), read into the server's
//! [`CheckTls`]. As in HAProxy 2.6, `verify required` is the default and refuses to start without
//! a `ca-file`. `ssl` (TLS to the server for client traffic) stays an error: tether passes the
//! client's bytes through and originates no TLS to servers; `sni` only names that TLS, so alone
//! it does nothing, in HAProxy as here (checks send `check-sni`).

use super::keywords::Opt;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::{CheckTls, Server, Verify};

/// What `global` says about servers' TLS: `ssl-server-verify` and `ca-base`.
#[derive(Debug, Clone, Default)]
pub(super) struct GlobalTls {
    /// `ssl-server-verify none`: servers' `verify` defaults to none.
    pub(super) verify_none: bool,
    /// `ca-base DIR`: where a relative `ca-file` is.
    pub(super) ca_base: Option<String>,
}

impl Importer<'_> {
    /// `ssl-server-verify none|required` and `ca-base DIR` in `global`.
    pub(super) fn global_tls(&mut self, d: &Directive) {
        match (d.keyword(), d.word(1)) {
            ("ssl-server-verify", "none") => self.global_tls.verify_none = true,
            ("ssl-server-verify", "required") => self.global_tls.verify_none = false,
            ("ca-base", dir) if !dir.is_empty() => {
                self.global_tls.ca_base = Some(dir.trim_end_matches('/').to_string());
            }
            _ => self.error(
                d.line,
                format!("`{}`: wrong arguments", d.text()),
                "HAProxy rejects it",
                "ssl-server-verify none, ssl-server-verify required or ca-base /etc/ssl/certs",
            ),
        }
    }

    /// A TLS option of a server line, applied to `server`; false when `o` is not one.
    pub(super) fn server_tls_option(
        &mut self,
        d: &Directive,
        o: &Opt<'_>,
        server: &mut Server,
    ) -> bool {
        match o.name {
            "check-ssl" => self.tls_of(server).enabled = true,
            "no-check-ssl" => self.tls_of(server).enabled = false,
            "verify" => match o.value {
                "none" => self.tls_of(server).verify = Verify::None,
                "required" => self.tls_of(server).verify = Verify::Required,
                _ => self.error(
                    d.line,
                    format!(
                        "server option `{}`: verify takes none or required",
                        o.text()
                    ),
                    "HAProxy rejects it",
                    "verify required ca-file /etc/haproxy/ca.pem (or verify none)",
                ),
            },
            "ca-file" => self.ca_file(d, o, server),
            "check-sni" => self.tls_of(server).sni = Some(o.value.to_string()),
            "verifyhost" => self.tls_of(server).verifyhost = Some(o.value.to_string()),
            "no-verifyhost" => self.tls_of(server).verifyhost = None,
            "sni" => self.sni_alone(d, o),
            "ssl" => self.no_data_tls(d),
            _ => return false,
        }
        true
    }

    /// The server's check TLS settings, created with HAProxy's defaults (off, verify required
    /// unless `ssl-server-verify none`) on first use.
    fn tls_of<'s>(&self, server: &'s mut Server) -> &'s mut CheckTls {
        let verify = if self.global_tls.verify_none {
            Verify::None
        } else {
            Verify::Required
        };
        server.check_tls.get_or_insert_with(|| CheckTls {
            enabled: false,
            verify,
            ..CheckTls::default()
        })
    }

    fn ca_file(&mut self, d: &Directive, o: &Opt<'_>, server: &mut Server) {
        if o.value.starts_with('@') {
            self.error(
                d.line,
                format!("unsupported server option `{}`", o.text()),
                "tether has no built-in CA store",
                "write the path of the system's CA bundle instead, e.g. ca-file \
                 /etc/ssl/certs/ca-certificates.crt",
            );
            return;
        }
        let path = match &self.global_tls.ca_base {
            Some(base) if !o.value.starts_with('/') => format!("{base}/{}", o.value),
            _ => o.value.to_string(),
        };
        self.tls_of(server).ca_file = Some(path);
    }

    /// `sni EXPR`: the SNI of TLS to the server for client traffic (with `ssl`); checks send
    /// `check-sni`.
    fn sni_alone(&mut self, d: &Directive, o: &Opt<'_>) {
        self.finding(
            Severity::Warning,
            d.line,
            format!("server option `{}` has no effect", o.text()),
            "`sni` names the TLS HAProxy opens to the server for client traffic (with `ssl`); \
             health checks do not send it, in HAProxy as in tether",
            "for the SNI of checks over TLS write check-sni NAME; otherwise remove it",
        );
    }

    /// `ssl`: TLS from the balancer to the server for client traffic, which tether cannot do.
    fn no_data_tls(&mut self, d: &Directive) {
        self.error(
            d.line,
            "unsupported server option `ssl`",
            "`ssl` makes HAProxy encrypt the traffic it sends to the server; tether forwards the \
             client's bytes as they come (TLS passes through) and cannot originate TLS to \
             servers",
            "tether has no equivalent of `ssl`: keep this backend on HAProxy (health checks \
             over TLS alone are `check-ssl`, which tether runs)",
        );
    }

    /// After a server line: HAProxy refuses `verify required` (its default) without `ca-file`
    /// on a server whose checks use TLS.
    pub(super) fn check_tls_complete(&mut self, d: &Directive, server: &Server) {
        let Some(tls) = &server.check_tls else {
            return;
        };
        if !(server.check && tls.enabled) {
            return;
        }
        if tls.verify == Verify::Required && tls.ca_file.is_none() {
            self.error(
                d.line,
                format!(
                    "server {}: server option `check-ssl` verifies the certificate (verify \
                     required is the default) but no ca-file is given",
                    server.name
                ),
                "HAProxy refuses to start: \"verify is enabled by default but no CA file \
                 specified\"",
                "add ca-file /etc/haproxy/ca.pem (the CA that signed the servers' \
                 certificates), or verify none on a trusted network (ssl-server-verify none in \
                 global for every server)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, warnings};
    use tether_core::config::{CheckTls, Verify};

    fn servers(global: &str, lines: &str) -> super::super::Import {
        import_text(&format!(
            "global\n{global}backend b\n  timeout connect 1s\n  timeout server 1s\n  \
             option httpchk GET /healthz\n{lines}"
        ))
    }

    /// The Kubernetes control-plane line (kubeadm HA guide).
    #[test]
    fn check_ssl_verify_none_imports() {
        let im = servers(
            "",
            "  server cp1 127.0.0.1:16443 check check-ssl verify none\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers[0];
        assert_eq!(
            s.check_tls,
            Some(CheckTls {
                enabled: true,
                verify: Verify::None,
                ..CheckTls::default()
            })
        );
    }

    #[test]
    fn every_option_is_read_from_default_server_and_the_line() {
        let im = servers(
            "  ca-base /etc/ssl/ours\n",
            "  default-server check-ssl ca-file ca.pem verifyhost api.internal\n  \
             server a 10.0.0.1:443 check check-sni a.internal\n  \
             server b 10.0.0.2:443 check no-check-ssl ca-file /abs/ca.pem\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let s = &im.config.backends[0].servers;
        let a = s[0].check_tls.clone().unwrap();
        assert!(a.enabled);
        assert_eq!(a.verify, Verify::Required);
        assert_eq!(
            a.ca_file.as_deref(),
            Some("/etc/ssl/ours/ca.pem"),
            "ca-base"
        );
        assert_eq!(a.sni.as_deref(), Some("a.internal"));
        assert_eq!(a.verifyhost.as_deref(), Some("api.internal"));
        let b = s[1].check_tls.clone().unwrap();
        assert!(!b.enabled);
        assert_eq!(b.ca_file.as_deref(), Some("/abs/ca.pem"));
    }

    /// HAProxy: "verify is enabled by default but no CA file specified".
    #[test]
    fn verify_required_without_ca_file_is_refused_unless_global_says_none() {
        let im = servers("", "  server a 10.0.0.1:443 check check-ssl\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 6);
        // Grouped under its option in `check`'s summary ("server check-ssl").
        assert!(
            e[0].what.contains("server option `check-ssl`"),
            "{}",
            e[0].what
        );
        assert!(e[0].why.contains("no CA file specified"), "{}", e[0].why);
        assert!(e[0].fix.contains("ca-file") && e[0].fix.contains("verify none"));
        // Without `check`, no check runs: nothing to refuse.
        assert!(errors(&servers("", "  server a 10.0.0.1:443 check-ssl\n")).is_empty());
        let im = servers(
            "  ssl-server-verify none\n",
            "  server a 10.0.0.1:443 check check-ssl\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        assert_eq!(
            im.config.backends[0].servers[0]
                .check_tls
                .as_ref()
                .unwrap()
                .verify,
            Verify::None
        );
    }

    /// `ssl` stays a plain "tether cannot"; `sni` alone is said to do nothing.
    #[test]
    fn data_path_tls_is_refused_and_sni_alone_noted() {
        let im = servers("", "  server a 10.0.0.1:443 check ssl verify none\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].what, "unsupported server option `ssl`");
        assert!(e[0].why.contains("cannot originate TLS"), "{}", e[0].why);
        assert!(e[0].fix.starts_with("tether has no equivalent of `ssl`"));
        let im = servers("", "  server a 10.0.0.1:443 check sni str(api)\n");
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let w = warnings(&im);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].fix.contains("check-sni"), "{}", w[0].fix);
    }

    #[test]
    fn bad_values_are_errors() {
        for line in [
            "  server a 10.0.0.1:443 check check-ssl verify sometimes\n",
            "  server a 10.0.0.1:443 check check-ssl ca-file @system-ca\n",
        ] {
            assert!(!errors(&servers("", line)).is_empty(), "{line}");
        }
        let lines: Vec<usize> = errors(&servers("  ssl-server-verify maybe\n", ""))
            .iter()
            .map(|f| f.line)
            .collect();
        assert!(lines.contains(&2), "{lines:?}");
    }
}
