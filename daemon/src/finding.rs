//! A located, explained problem in a configuration file, shared by every reader of configs
//! (`check`, the haproxy.cfg importer, `convert`, `run --haproxy`). It lives apart from
//! [`crate::check`] so the importer can report findings without depending on the command that
//! prints them.

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The config is rejected (by HAProxy 2.6 or by tether).
    Error,
    /// The config runs but does not do what it seems to, or something is ignored.
    Warning,
    /// Worth knowing; nothing is lost.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One problem, located, explained, with the text to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The file, as given.
    pub file: String,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong, in one line.
    pub what: String,
    /// Why it matters.
    pub why: String,
    /// What to write instead (concrete text).
    pub fix: String,
}

impl Finding {
    /// A finding at `file:line`.
    pub fn new(
        severity: Severity,
        file: &str,
        line: usize,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            file: file.to_string(),
            line,
            what: what.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.severity, self.what
        )?;
        if !self.why.is_empty() {
            write!(f, "\n    why: {}", self.why)?;
        }
        if !self.fix.is_empty() {
            write!(f, "\n    fix: {}", self.fix.replace('\n', "\n         "))?;
        }
        Ok(())
    }
}
