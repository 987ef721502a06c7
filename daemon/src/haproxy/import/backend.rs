//! Closing a proxy's server side: what a backend must have (a server, a stick-table for its
//! stick rules) and the advice on what its rules will really do.

use super::proxy::Draft;
use super::sections::Section;
use super::Importer;
use crate::haproxy::rules::rule_findings;

impl Importer<'_> {
    /// Checks and keeps the backend of proxy `p`.
    pub(super) fn finish_backend(&mut self, s: &Section, p: Draft) {
        self.missing_server_timeouts(&p);
        let name = &p.name;
        let mut backend = p.backend;
        if !p.retry_on_conn_failure {
            // HAProxy retries a failed connect only when `retry-on` lists conn-failure.
            backend.retries = 0;
        }
        if backend.servers.is_empty() && !s.body.iter().any(|d| d.keyword() == "server") {
            self.error(
                p.header_line,
                format!("backend {name} has no server"),
                "every connection would be closed with <NOSRV>",
                "server s1 10.0.0.1:443 check",
            );
        }
        if !p.rules.stick.is_empty() && !s.body.iter().any(|d| d.keyword() == "stick-table") {
            self.error(
                p.lines.stick[0],
                format!("stick rules in {name} without a stick-table"),
                "HAProxy refuses the config: the rules need a table in the same backend",
                "stick-table type binary len 32 size 60k expire 60m",
            );
        }
        if !p.back_filters.is_empty() {
            let filters = super::routing::BackFilters {
                rules: p.back_filters.clone(),
                inspect_delay: p.rules.request_inspect_delay,
            };
            self.back_filters.insert(name.clone(), filters);
        }
        backend.haproxy = Some(p.rules);
        let extra = rule_findings(self.file, &backend, &p.lines);
        self.findings.extend(extra);
        let at = format!("backend[{}]", self.config.backends.len());
        self.origins.note(&at, p.header_line);
        for (suffix, line) in &p.back_origins {
            self.origins.note(&format!("{at}{suffix}"), *line);
        }
        self.config.backends.push(backend);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};

    #[test]
    fn a_backend_needs_a_server_and_its_stick_rules_a_table() {
        let im =
            import_text("backend b\n  timeout connect 1s\n  timeout server 1s\n  stick on src\n");
        let e: Vec<(usize, String)> = errors(&im)
            .iter()
            .map(|f| (f.line, f.what.clone()))
            .collect();
        assert_eq!(
            e,
            [
                (1, "backend b has no server".to_string()),
                (4, "stick rules in b without a stick-table".to_string()),
            ]
        );
    }

    #[test]
    fn a_server_line_that_fails_is_not_reported_twice() {
        let im = import_text("backend b\n  timeout connect 1s\n  timeout server 1s\n  server\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].what.contains("without a name"));
    }
}
