//! The `global` section: the few settings tether shares with HAProxy (`maxconn`,
//! `hard-stop-after`), and a warning for each directive that only configures the HAProxy process.

use super::sections::Section;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::Global;

/// Global directives that only concern the HAProxy process; tether ignores them.
const PROCESS_ONLY: &[&str] = &[
    "chroot",
    "user",
    "group",
    "uid",
    "gid",
    "daemon",
    "nbproc",
    "master-worker",
    "ulimit-n",
    "cpu-map",
    "node",
    "description",
    "setenv",
    "presetenv",
    "unsetenv",
    "resetenv",
    "maxsslconn",
    "spread-checks",
    "crt-base",
    "pidfile",
    "lua-load",
    "quiet",
    "expose-experimental-directives",
    "log-send-hostname",
    "log-tag",
    "server-state-file",
    "server-state-base",
];

impl Importer<'_> {
    /// Imports the `global` section.
    pub(super) fn global(&mut self, s: &Section) {
        for d in &s.body {
            match d.keyword() {
                "maxconn" => {
                    if let Some(n) = self.number(d, 1, "maxconn 4000") {
                        self.config.global.maxconn = n;
                        self.origins.note("global.maxconn", d.line);
                    }
                }
                "hard-stop-after" => {
                    if let Some(t) = self.duration(d, 1) {
                        self.config.global.grace = t;
                    }
                }
                "log" => self.global_log(d),
                "nbthread" => {
                    let n = self.number::<u16>(d, 1, "nbthread 4");
                    self.config.global.threads = n.filter(|&n| n > 0);
                }
                "pidfile" if d.word(1).ends_with('/') => self.finding(
                    Severity::Warning,
                    d.line,
                    format!("pidfile `{}` is a directory, not a file", d.word(1)),
                    "HAProxy cannot create a pid file at a directory path, so the daemon fails to \
                     start (or its init script cannot find the process). tether writes no pid \
                     file and ignores the directive",
                    "pidfile /var/run/haproxy.pid",
                ),
                "stats" if d.word(1) == "socket" => self.stats_socket(d),
                "maxpipes" => {
                    if let Some(n) = self.number(d, 1, "maxpipes 1000") {
                        self.config.global.max_pipes = Some(n);
                    }
                }
                "nosplice" => self.config.global.max_pipes = Some(0),
                "tune.pipesize" => self.pipe_size(d),
                "localpeer" => self.peers.localpeer = Some(d.word(1).to_string()),
                "ssl-server-verify" | "ca-base" => self.global_tls(d),
                "stats" if d.word(1) == "timeout" => self.process_only(d),
                k if PROCESS_ONLY.contains(&k)
                    || k.starts_with("tune.")
                    || k.starts_with("ssl-") =>
                {
                    self.process_only(d)
                }
                _ => self.unsupported(d, "global"),
            }
        }
    }

    /// `tune.pipesize BYTES`: the splicing pipes' capacity, within what Linux grants a pipe.
    fn pipe_size(&mut self, d: &Directive) {
        let Some(n) = self.number::<u64>(d, 1, "tune.pipesize 262144") else {
            return;
        };
        match Global::pipe_size_problem(n) {
            None => self.config.global.pipe_size = Some(n),
            Some(p) => self.error(
                d.line,
                format!("`{}`: {p}", d.text()),
                "the kernel refuses pipes below a page or above fs.pipe-max-size (1 MiB)",
                "write e.g. `tune.pipesize 262144`, or remove it for the system's 64 KiB",
            ),
        }
    }

    fn process_only(&mut self, d: &Directive) {
        self.finding(
            Severity::Warning,
            d.line,
            format!("`{}` is ignored", d.text()),
            "it configures the HAProxy process itself; tether runs under its service manager \
             and has no equivalent",
            "remove it (run tether as an unprivileged user from systemd; admin actions are on \
             the stats page and the runtime API socket)",
        );
    }

    fn global_log(&mut self, d: &Directive) {
        if d.words.len() < 3 {
            let arg = d.word(1);
            self.error(
                d.line,
                format!("`{}` has no log address", d.text()),
                format!(
                    "`{arg}` is a syslog facility, not a destination. HAProxy 2.6 refuses the \
                     file: \"log : expects <address> and <facility> as arguments\". Without a log \
                     target nothing is logged at all, so you cannot see which server each \
                     connection went to, which is how affinity is verified"
                ),
                format!(
                    "log 127.0.0.1:514 {arg}   (and let rsyslog listen on UDP 514), or `log \
                     stdout format raw local0`; tether logs every connection (server and affinity \
                     outcome) to stderr with log-format = \"tcplog\""
                ),
            );
        } else {
            self.log_target(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use crate::finding::Severity;
    use std::time::Duration;

    #[test]
    fn maxconn_and_hard_stop_after_are_imported() {
        let im = import_text("global\n  maxconn 321\n  hard-stop-after 45s\n");
        assert_eq!(im.config.global.maxconn, 321);
        assert_eq!(im.config.global.grace, Duration::from_secs(45));
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
    }

    #[test]
    fn maxpipes_and_nosplice_bound_the_splicing_pipes() {
        let im = import_text("global\n  maxconn 400\n");
        assert_eq!(
            im.config.global.pipes(),
            100,
            "a quarter of maxconn, as HAProxy"
        );
        let im = import_text("global\n  maxpipes 7\n");
        assert_eq!(im.config.global.max_pipes, Some(7));
        let text = crate::haproxy::to_toml(&im.config);
        assert!(text.contains("max-pipes = 7"), "{text}");
        let im = import_text("global\n  maxpipes 7\n  nosplice\n");
        assert_eq!(im.config.global.pipes(), 0);
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
    }

    #[test]
    fn tune_pipesize_sets_the_pipe_capacity_within_what_linux_grants() {
        let im = import_text("global\n  tune.pipesize 262144\n");
        assert_eq!(im.config.global.pipe_size, Some(262_144));
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let text = crate::haproxy::to_toml(&im.config);
        assert!(text.contains("pipe-size = \"256k\""), "{text}");
        for bad in ["2048", "4194304", "big"] {
            let im = import_text(&format!("global\n  tune.pipesize {bad}\n"));
            assert_eq!(im.config.global.pipe_size, None, "{bad}");
            let e = errors(&im);
            assert_eq!(e.len(), 1, "{bad}: {:?}", im.findings);
            assert_eq!(e[0].line, 2);
        }
    }

    #[test]
    fn process_directives_are_warnings_and_unknown_ones_errors() {
        let im = import_text(
            "global\n  chroot /var/lib/haproxy\n  tune.bufsize 32768\n  frobnicate 1\n  \
             log 127.0.0.1:514 local0\n",
        );
        let at = |line| im.findings.iter().find(|f| f.line == line).unwrap();
        assert_eq!(at(2).severity, Severity::Warning);
        assert_eq!(at(3).severity, Severity::Warning);
        assert_eq!(at(4).severity, Severity::Error);
        // A log line with an address is a target now, not a finding.
        assert!(im.findings.iter().all(|f| f.line != 5), "{:?}", im.findings);
        assert_eq!(im.config.logs.len(), 1);
    }

    #[test]
    fn log_with_a_facility_only_is_an_error() {
        let im = import_text("global\n  log local2\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].what.contains("has no log address"));
    }
}
