//! The listening side of a proxy: `bind` lines, and what a frontend must have (an address, a
//! backend, a client timeout).

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
    /// `bind ADDR[,ADDR...] [accept-proxy]`.
    pub(super) fn bind(&mut self, p: &mut Draft, d: &Directive) {
        if p.binds.is_empty() {
            p.front_origins.push((".bind".into(), d.line));
        }
        for a in d.word(1).split(',') {
            p.binds.push(bind_address(a));
        }
        for opt in d.words.iter().skip(2) {
            if opt == "accept-proxy" {
                p.frontend.accept_proxy = true;
            } else {
                self.error(
                    d.line,
                    format!("unsupported bind option `{opt}`"),
                    "tether passes TLS through and only understands accept-proxy on bind lines",
                    format!("bind {}", d.word(1)),
                );
            }
        }
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
                (2, "unsupported bind option `ssl`".to_string()),
                (2, "unsupported bind option `crt`".to_string()),
                (2, "unsupported bind option `/x.pem`".to_string()),
                (4, "frontend g has no bind line".to_string()),
            ]
        );
    }
}
