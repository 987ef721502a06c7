//! `stats socket PATH [mode M] [level L] ...` in `global`: tether's runtime API socket
//! (`[admin]`). Options that only concern HAProxy's process are warnings; a TCP address is an
//! error (tether serves the runtime API on a unix socket only).

use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::config::{defaults, AdminLevel, AdminSocket};

/// `stats socket` options that set ownership or HAProxy-internal behaviour; tether ignores them.
const IGNORED_OPTIONS: &[&str] = &[
    "user",
    "group",
    "uid",
    "gid",
    "expose-fd",
    "process",
    "thread",
];

impl Importer<'_> {
    /// Imports one `stats socket` line.
    pub(super) fn stats_socket(&mut self, d: &Directive) {
        let raw = d.word(2);
        let path = raw.strip_prefix("unix@").unwrap_or(raw);
        if path.is_empty() || !path.starts_with('/') {
            self.error(
                d.line,
                format!(
                    "`{}`: tether serves the runtime API on a unix socket path only",
                    d.text()
                ),
                "a TCP runtime API would need its own access control; a unix socket is guarded \
                 by file permissions",
                "stats socket /run/tether/admin.sock mode 600 level admin",
            );
            return;
        }
        let mut socket = AdminSocket {
            socket: path.to_string(),
            mode: defaults::admin_mode(),
            level: AdminLevel::Admin,
        };
        let mut i = 3;
        while i < d.words.len() {
            let (option, value) = (d.word(i), d.word(i + 1));
            match option {
                "mode" if u32::from_str_radix(value, 8).is_ok_and(|m| m <= 0o777) => {
                    socket.mode = value.to_string()
                }
                "level" if AdminLevel::parse(value).is_some() => {
                    socket.level = AdminLevel::parse(value).unwrap_or(AdminLevel::User)
                }
                "mode" | "level" => {
                    self.error(
                        d.line,
                        format!("`stats socket ... {option} {value}` is not valid"),
                        "HAProxy refuses it too",
                        "mode 600 level admin   (levels: user, operator, admin)",
                    );
                    return;
                }
                o if IGNORED_OPTIONS.contains(&o) => self.finding(
                    Severity::Warning,
                    d.line,
                    format!("`stats socket` option `{o} {value}` is ignored"),
                    "tether creates the socket as the user it runs as",
                    "remove it; run tether as the user that should own the socket",
                ),
                o => {
                    self.error(
                        d.line,
                        format!("`stats socket` option `{o}` is not supported"),
                        "tether's runtime API socket takes a path, mode and level",
                        "stats socket /run/tether/admin.sock mode 600 level admin",
                    );
                    return;
                }
            }
            i += 2;
        }
        if self.config.admin.is_some() {
            self.error(
                d.line,
                "a second `stats socket`",
                "tether serves one runtime API socket",
                "keep one `stats socket` line",
            );
            return;
        }
        self.finding(
            Severity::Info,
            d.line,
            format!(
                "`stats socket {}` is served as tether's runtime API",
                socket.socket
            ),
            "hatop, socat scripts and the Prometheus exporter's unix mode work against it; \
             server changes need level operator or admin",
            format!(
                "nothing to change; natively: [admin] socket = \"{}\", mode = \"{}\", \
                 level = \"{}\"",
                socket.socket,
                socket.mode,
                format!("{:?}", socket.level).to_lowercase()
            ),
        );
        self.origins.note("admin", d.line);
        self.origins.note("admin.socket", d.line);
        self.config.admin = Some(socket);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use tether_core::config::AdminLevel;

    #[test]
    fn stats_socket_becomes_the_runtime_api() {
        let im =
            import_text("global\n  stats socket /run/haproxy/admin.sock mode 660 level operator\n");
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let a = im.config.admin.unwrap();
        assert_eq!(a.socket, "/run/haproxy/admin.sock");
        assert_eq!(a.mode, "660");
        assert_eq!(a.level, AdminLevel::Operator);
        let im = import_text("global\n  stats socket unix@/tmp/x.sock expose-fd listeners\n");
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let a = im.config.admin.unwrap();
        assert_eq!(
            (a.socket.as_str(), a.level),
            ("/tmp/x.sock", AdminLevel::Admin)
        );
        assert_eq!(
            im.findings.len(),
            2,
            "a warning and the note: {:?}",
            im.findings
        );
    }

    #[test]
    fn tcp_sockets_bad_levels_and_a_second_socket_are_errors() {
        let im = import_text(
            "global\n  stats socket ipv4@127.0.0.1:9999 level admin\n  \
             stats socket /a.sock level root\n  stats socket /b.sock\n  stats socket /c.sock\n",
        );
        let lines: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(lines, [2, 3, 5]);
        assert_eq!(im.config.admin.unwrap().socket, "/b.sock");
    }
}
