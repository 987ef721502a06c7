//! The listening side of a proxy: `bind` lines, and what a frontend must have (an address, a
//! backend, a client timeout).

use super::keywords::{bind_options, BIND_TLS};

/// `bind` options tether honours: a PROXY header first, and accepting once bytes are there.
const KNOWN_BIND: &[&str] = &["accept-proxy", "defer-accept"];
use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::Frontend;

/// HAProxy's wildcard forms (`*:443`, `:443`, `:::443`) as socket addresses. `:::` is tried
/// first: it also starts with `:`, and read as IPv4 it would be `0.0.0.0:::443`.
pub(super) fn bind_address(text: &str) -> String {
    if let Some(port) = text.strip_prefix(":::") {
        format!("[::]:{port}")
    } else if let Some(port) = text.strip_prefix("*:").or_else(|| text.strip_prefix(':')) {
        format!("0.0.0.0:{port}")
    } else {
        text.to_string()
    }
}

impl Importer<'_> {
    /// `bind ADDR[,ADDR...] [accept-proxy] [defer-accept]`; TLS termination is one finding for the line,
    /// any other option one finding with its value.
    pub(super) fn bind(&mut self, p: &mut Draft, d: &Directive) {
        if p.binds.is_empty() {
            p.front_origins.push((".bind".into(), d.line));
        }
        for a in d.word(1).split(',') {
            p.binds.push(bind_address(a));
        }
        let opts = bind_options(&d.words[2.min(d.words.len())..]);
        let accept_proxy = opts.iter().any(|o| o.name == "accept-proxy");
        p.frontend.accept_proxy |= accept_proxy;
        p.frontend.defer_accept |= opts.iter().any(|o| o.name == "defer-accept");
        let kept = if accept_proxy { " accept-proxy" } else { "" };
        let tls: Vec<String> = opts
            .iter()
            .filter(|o| BIND_TLS.contains(&o.name))
            .map(|o| o.text())
            .collect();
        if !tls.is_empty() {
            self.tls_termination(d, &tls);
        }
        for o in opts
            .iter()
            .filter(|o| !KNOWN_BIND.contains(&o.name) && !BIND_TLS.contains(&o.name))
        {
            self.error(
                d.line,
                format!("unsupported bind option `{}`", o.text()),
                "tether only understands accept-proxy and defer-accept on bind lines, and will \
                 not ignore an option that changes who may connect or how",
                format!(
                    "tether has no equivalent of `{}`: keep it on HAProxy, or remove it if the \
                     listener does not need it (`bind {}{kept}`)",
                    o.text(),
                    d.word(1)
                ),
            );
        }
    }

    /// A `bind` line that terminates TLS: tether passes TLS through to the servers, so it
    /// cannot, and says what the line does (client certificates included) instead of a fix
    /// that drops it.
    fn tls_termination(&mut self, d: &Directive, tls: &[String]) {
        let mutual = tls
            .iter()
            .any(|o| o == "verify required" || o == "verify optional");
        let why = if mutual {
            "HAProxy decrypts here and checks client certificates (mutual TLS); tether passes \
             TLS through to the servers and holds no certificate, and binding without these \
             options would let clients without a valid certificate reach the servers"
        } else {
            "HAProxy decrypts here; tether passes TLS through to the servers and holds no \
             certificate, and binding without these options would hand the servers TLS \
             connections they may not expect"
        };
        let fix = if mutual {
            "tether cannot do it: keep this frontend on HAProxy, or move TLS termination and the \
             client-certificate check (`verify required` with the same CA) to the servers and \
             then pass TLS through with tether"
        } else {
            "tether cannot do it: keep this frontend on HAProxy, or move TLS termination to the \
             servers and then pass TLS through with tether"
        };
        self.error(
            d.line,
            format!("`bind {}` terminates TLS ({})", d.word(1), tls.join(" ")),
            why,
            fix,
        );
    }

    /// Checks and keeps the frontend of proxy `p`.
    pub(super) fn finish_frontend(&mut self, p: &mut Draft) {
        let mut frontend = std::mem::replace(&mut p.frontend, Frontend::named("", ""));
        frontend.bind = std::mem::take(&mut p.binds);
        if frontend.bind.is_empty() {
            self.error(
                p.header_line,
                format!("{} has no bind line", p.context()),
                "nothing would listen",
                "bind *:9443",
            );
        }
        if frontend.backend.is_empty() {
            self.error(
                p.header_line,
                format!("frontend {} has no default_backend", p.name),
                "tether sends every connection of a frontend to one backend",
                "default_backend app",
            );
        }
        self.missing_client_timeout(p);
        let mut routes = std::mem::take(&mut p.routes);
        if p.back {
            routes.own_backend = Some(p.name.clone());
        }
        self.front_routes.push(routes);
        let at = format!("frontend[{}]", self.config.frontends.len());
        self.origins.note(&at, p.header_line);
        for (suffix, line) in &p.front_origins {
            self.origins.note(&format!("{at}{suffix}"), *line);
        }
        self.config.frontends.push(frontend);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, BACKEND};
    use super::bind_address;

    #[test]
    fn wildcard_binds_become_socket_addresses() {
        assert_eq!(bind_address("*:443"), "0.0.0.0:443");
        assert_eq!(bind_address(":443"), "0.0.0.0:443");
        assert_eq!(bind_address(":::443"), "[::]:443");
        assert_eq!(bind_address("127.0.0.1:443"), "127.0.0.1:443");
    }

    #[test]
    fn bind_lists_and_accept_proxy_are_imported() {
        let im = import_text(&format!(
            "frontend f\n  bind :9443,127.0.0.1:9444 accept-proxy\n  bind :::9445\n  \
             default_backend b\n  timeout client 1m\n{BACKEND}"
        ));
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let f = &im.config.frontends[0];
        assert_eq!(f.bind, ["0.0.0.0:9443", "127.0.0.1:9444", "[::]:9445"]);
        assert!(f.accept_proxy);
        assert!(!f.defer_accept);
    }

    #[test]
    fn defer_accept_is_imported_and_written_out() {
        let im = import_text(&format!(
            "frontend f\n  bind :9443 defer-accept\n  default_backend b\n  timeout client 1m\n\
             {BACKEND}"
        ));
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        assert!(im.config.frontends[0].defer_accept);
        let text = crate::haproxy::to_toml(&im.config);
        assert!(text.contains("defer-accept = true"), "{text}");
    }

    #[test]
    fn a_frontend_without_bind_or_backend_is_refused() {
        let im = import_text(&format!(
            "frontend f\n  bind :9443 ssl crt /x.pem\n  timeout client 1m\nfrontend g\n  \
             timeout client 1m\n  default_backend b\n{BACKEND}"
        ));
        let e: Vec<(usize, String)> = errors(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(
            e,
            [
                (1, "frontend f has no default_backend".to_string()),
                (
                    2,
                    "`bind :9443` terminates TLS (ssl crt /x.pem)".to_string()
                ),
                (4, "frontend g has no bind line".to_string()),
            ]
        );
    }

    /// Issue 19 defects 3 and 4: `bind ... ssl crt ... verify required` was "fixed" to a bare
    /// bind (dropping mutual TLS), and `none`, `/x.pem` were reported as unknown options.
    #[test]
    fn tls_termination_is_one_finding_that_never_drops_client_certificates() {
        let im = import_text(&format!(
            "frontend f\n  bind *:8883 ssl crt /m.pem verify required ca-file /ca.pem\n  \
             bind *:8884 ssl crt /n.pem verify none accept-proxy v4v6 maxconn 10\n  \
             default_backend b\n  timeout client 1m\n{BACKEND}"
        ));
        let e = errors(&im);
        let what: Vec<&str> = e.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "`bind *:8883` terminates TLS (ssl crt /m.pem verify required ca-file /ca.pem)",
                "`bind *:8884` terminates TLS (ssl crt /n.pem verify none)",
                "unsupported bind option `v4v6`",
                "unsupported bind option `maxconn 10`",
            ]
        );
        assert!(e[0].why.contains("mutual TLS"), "{}", e[0].why);
        assert!(e[0].fix.starts_with("tether cannot do it"), "{}", e[0].fix);
        assert!(e[0].fix.contains("verify required"), "{}", e[0].fix);
        for f in &e {
            assert!(
                !f.fix.contains("`bind *:8883`"),
                "a fix dropped TLS: {}",
                f.fix
            );
        }
        assert!(
            e[3].fix.contains("bind *:8884 accept-proxy"),
            "{}",
            e[3].fix
        );
        assert!(im.config.frontends[0].accept_proxy);
    }
}
