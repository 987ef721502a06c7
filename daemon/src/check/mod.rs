//! `tether check FILE`: every problem of a haproxy.cfg or a tether TOML config, in one pass.
//!
//! Each [`Finding`] says where (file:line), what is wrong, why it matters (what the balancer will
//! actually do) and what to write instead. A haproxy.cfg is read with [`crate::haproxy::load()`]
//! (the path `run --haproxy` and `convert` take), which reports what HAProxy 2.6 would reject, what
//! tether ignores, what silently defeats affinity and what tether would refuse to run; a native
//! config is loaded with [`tether_core::config::load_toml`] and then given affinity advice.

pub mod advice;
pub mod peers;
pub mod routes;
pub mod summary;

use std::fmt;
use std::path::Path;

pub use crate::finding::{Finding, Severity};
pub use advice::advise;

/// Every finding for one file, sorted by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The findings, in file order.
    pub findings: Vec<Finding>,
    /// The migration verdict printed first (an haproxy.cfg's; see [`summary`]).
    pub summary: Vec<String>,
}

impl CheckReport {
    /// Builds a report, sorting findings by line then severity.
    pub fn new(mut findings: Vec<Finding>) -> CheckReport {
        findings.sort_by_key(|f| (f.line, f.severity));
        CheckReport {
            findings,
            summary: Vec::new(),
        }
    }

    /// Whether any finding is an error (the exit status of `tether check`).
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    /// How many findings have this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.summary {
            writeln!(f, "{line}")?;
        }
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(
            f,
            "{} error(s), {} warning(s), {} note(s)",
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info)
        )
    }
}

/// The two kinds of file `check` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// tether's native TOML.
    Toml,
    /// An HAProxy configuration.
    Haproxy,
}

/// Decides the kind of a config by extension (`.toml`, `.cfg`), else by content: HAProxy files
/// start their sections with a bare keyword (`global`, `defaults`, `frontend NAME`...), TOML with
/// `[table]` headers or `key = value`.
pub fn detect_kind(path: &Path, text: &str) -> ConfigKind {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => return ConfigKind::Toml,
        Some("cfg") | Some("conf") => return ConfigKind::Haproxy,
        _ => {}
    }
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        if matches!(
            first,
            "global" | "defaults" | "frontend" | "backend" | "listen"
        ) && !t.contains('=')
        {
            return ConfigKind::Haproxy;
        }
        if t.starts_with('[') || t.contains('=') {
            return ConfigKind::Toml;
        }
    }
    ConfigKind::Toml
}

/// Checks a file on disk. An unreadable file is itself a finding.
pub fn check_file(path: &Path) -> CheckReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => check_text(&name, detect_kind(path, &text), &text),
        Err(e) => CheckReport::new(vec![Finding::new(
            Severity::Error,
            &name,
            0,
            format!("cannot read the file: {e}"),
            "nothing was checked",
            "give the path of a readable haproxy.cfg or tether.toml",
        )]),
    }
}

/// Checks config text of a known kind; `file` is only used in messages.
pub fn check_text(file: &str, kind: ConfigKind, text: &str) -> CheckReport {
    match kind {
        ConfigKind::Haproxy => {
            let im = crate::haproxy::load(file, text);
            // Like the rule analysis, this reads the imported stick rules, which errors
            // elsewhere in the file (a log line, a server address) do not invalidate.
            let mut findings = im.findings;
            findings.extend(advice::advise_haproxy(file, text, &im.config));
            let mut report = CheckReport::new(findings);
            report.summary = summary::summary(file, text, &report.findings);
            report
        }
        ConfigKind::Toml => match tether_core::config::load_toml(file, text) {
            Ok(config) => CheckReport::new(advise(file, text, &config)),
            Err(errors) => CheckReport::new(
                errors
                    .0
                    .into_iter()
                    .map(|e| {
                        let what = if e.key_path.is_empty() {
                            e.message
                        } else {
                            format!("{}: {}", e.key_path, e.message)
                        };
                        Finding::new(
                            Severity::Error,
                            file,
                            e.line,
                            what,
                            "tether refuses to start with this config",
                            e.fix,
                        )
                    })
                    .collect(),
            ),
        },
    }
}
