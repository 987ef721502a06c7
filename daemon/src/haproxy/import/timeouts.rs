//! `timeout client|client-fin|connect|server|server-fin|queue|check|tunnel`, and the warnings HAProxy gives when a proxy
//! leaves the client, connect or server timeout unset (it then waits forever).

use super::proxy::Draft;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;

/// Which of the timeouts HAProxy warns about a proxy has set (from `defaults` or its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TimeoutsSeen {
    /// `timeout client`.
    pub(super) client: bool,
    /// `timeout connect`.
    pub(super) connect: bool,
    /// `timeout server`.
    pub(super) server: bool,
}

impl Importer<'_> {
    /// `timeout KIND DURATION`.
    pub(super) fn timeout(&mut self, p: &mut Draft, d: &Directive) {
        let Some(t) = self.duration(d, 2) else {
            return;
        };
        match d.word(1) {
            "client" => {
                p.frontend.timeout_client = t;
                p.timeouts.client = true;
            }
            "connect" => {
                p.backend.timeout_connect = t;
                p.timeouts.connect = true;
            }
            "server" => {
                p.backend.timeout_server = t;
                p.timeouts.server = true;
            }
            "queue" => p.backend.timeout_queue = Some(t),
            "check" => p.backend.timeout_check = Some(t),
            "tunnel" => p.backend.timeout_tunnel = Some(t),
            "client-fin" => p.frontend.timeout_client_fin = Some(t),
            "server-fin" => p.backend.timeout_server_fin = Some(t),
            _ => self.unsupported(d, &p.context()),
        }
    }

    /// The warning for a listening side without `timeout client`.
    pub(super) fn missing_client_timeout(&mut self, p: &Draft) {
        if !p.timeouts.client {
            self.finding(
                Severity::Warning,
                p.header_line,
                format!("no `timeout client` for {}", p.name),
                "HAProxy warns and waits forever on idle clients; tether uses 1m",
                "timeout client 1m",
            );
        }
    }

    /// The warning for a server side without `timeout connect` or `timeout server`.
    pub(super) fn missing_server_timeouts(&mut self, p: &Draft) {
        if !p.timeouts.connect || !p.timeouts.server {
            self.finding(
                Severity::Warning,
                p.header_line,
                format!(
                    "missing `timeout connect` or `timeout server` for {}",
                    p.name
                ),
                "HAProxy warns and waits forever; tether uses connect 10s, server 1m",
                "timeout connect 10s\n    timeout server 1m",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, warnings};
    use std::time::Duration;

    const SERVER: &str = "  server s1 127.0.0.1:8443\n";

    #[test]
    fn every_timeout_lands_on_its_side() {
        let im = import_text(&format!(
            "defaults\n  timeout connect 3s\n  timeout queue 4s\nlisten l\n  bind :9443\n  \
             timeout client 5s\n  timeout server 6s\n  timeout check 7s\n{SERVER}"
        ));
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let (f, b) = (&im.config.frontends[0], &im.config.backends[0]);
        assert_eq!(f.timeout_client, Duration::from_secs(5));
        assert_eq!(b.timeout_connect, Duration::from_secs(3));
        assert_eq!(b.timeout_server, Duration::from_secs(6));
        assert_eq!(b.timeout_queue, Some(Duration::from_secs(4)));
        assert_eq!(b.timeout_check, Some(Duration::from_secs(7)));
    }

    #[test]
    fn each_missing_timeout_is_warned_about_on_the_header() {
        for (written, expect) in [
            (
                "timeout client 1s\n  timeout connect 1s\n  timeout server 1s\n",
                "",
            ),
            (
                "timeout connect 1s\n  timeout server 1s\n",
                "no `timeout client`",
            ),
            (
                "timeout client 1s\n  timeout server 1s\n",
                "missing `timeout connect`",
            ),
            (
                "timeout client 1s\n  timeout connect 1s\n",
                "missing `timeout connect`",
            ),
        ] {
            let im = import_text(&format!("listen l\n  bind :9443\n  {written}{SERVER}"));
            let w = warnings(&im);
            if expect.is_empty() {
                assert!(w.is_empty(), "{written}: {w:?}");
            } else {
                assert_eq!(w.len(), 1, "{written}: {w:?}");
                assert_eq!(w[0].line, 1);
                assert!(w[0].what.contains(expect), "{written}: {}", w[0]);
            }
        }
    }

    #[test]
    fn a_bad_duration_or_kind_is_an_error_on_its_line() {
        let im = import_text(&format!(
            "listen l\n  bind :9443\n  timeout client 1m\n  timeout connect soon\n  \
             timeout server 1m\n  timeout tarpit 1s\n  timeout connect 1s\n{SERVER}"
        ));
        let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(e, [4, 6]);
    }

    #[test]
    fn timeout_tunnel_is_kept_for_the_server_side() {
        let im = import_text(
            "defaults\n  timeout tunnel 1h\nfrontend f\n  bind :9443\n  timeout client 1m\n  \
             default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 1s\n  \
             server s1 127.0.0.1:8443\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        assert_eq!(
            im.config.backends[0].timeout_tunnel,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn fin_timeouts_land_on_their_side() {
        let im = import_text(
            "defaults\n  timeout client-fin 2s\n  timeout server-fin 3s\nfrontend f\n  \
             bind :9443\n  timeout client 1m\n  default_backend b\nbackend b\n  \
             timeout connect 1s\n  timeout server 1s\n  server s1 127.0.0.1:8443\n",
        );
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        assert_eq!(
            im.config.frontends[0].timeout_client_fin,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            im.config.backends[0].timeout_server_fin,
            Some(Duration::from_secs(3))
        );
    }
}
