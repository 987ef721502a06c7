//! The migration verdict at the top of `tether check haproxy.cfg`: will it run as is, with
//! warnings, or not at all, and which features are why, before the findings one by one.

use crate::finding::{Finding, Severity};
use crate::haproxy::lexer::split_words;
use std::collections::BTreeMap;

/// Keywords whose second word names the feature (`option tcpka`, `timeout tunnel`).
const TWO_WORD: &[&str] = &[
    "option",
    "timeout",
    "http-check",
    "tcp-check",
    "tcp-request",
    "tcp-response",
    "stats",
    "hash-type",
    "balance",
    "http-request",
    "http-response",
];

/// The feature a finding is about: the directive of its line (with its option for the
/// keywords that have them, and the server option a server finding names).
fn feature_of(finding: &Finding, lines: &[&str]) -> String {
    let Some(line) = finding.line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return "the file as a whole".to_string();
    };
    let words = split_words(line).unwrap_or_default();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "no" => format!("no {} {}", word(1), word(2)),
        "server" | "default-server" => match finding.what.split_once("server option `") {
            Some((_, rest)) => {
                let option = rest.split([' ', '`']).next().unwrap_or("");
                format!("server {option}")
            }
            // A config check's finding names its key: `backend[0].server[2].id: ...`.
            None => match finding.what.split_once(": ").map(|(path, _)| path) {
                Some(path) if path.contains(".server[") && !path.ends_with(']') => {
                    format!("server {}", path.rsplit('.').next().unwrap_or(""))
                }
                _ => "server address".to_string(),
            },
        },
        "bind" if finding.what.contains("terminates TLS") => "bind ssl (TLS termination)".into(),
        k if TWO_WORD.contains(&k) => format!("{k} {}", word(1)),
        k => k.to_string(),
    }
}

/// `feature (N), feature (M)` for the findings of one severity, most frequent first.
fn by_feature(findings: &[Finding], lines: &[&str], severity: Severity) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.severity == severity) {
        *counts.entry(feature_of(f, lines)).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(k, n)| format!("{k} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary lines for `findings` of the config `text` named `file`.
pub fn summary(file: &str, text: &str, findings: &[Finding]) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let verdict = match (errors, warnings) {
        (0, 0) => "will run as is".to_string(),
        (0, w) => format!("runs, with {w} warning(s) to read first"),
        (e, _) => format!("cannot run: {e} error(s) to fix first"),
    };
    let mut out = vec![format!("{file}: {verdict}")];
    if errors > 0 {
        out.push(format!(
            "  errors by feature: {}",
            by_feature(findings, &lines, Severity::Error)
        ));
    }
    if warnings > 0 {
        out.push(format!(
            "  warnings by feature: {}",
            by_feature(findings, &lines, Severity::Warning)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::summary;
    use crate::check::{check_text, ConfigKind};

    #[test]
    fn a_server_setting_the_config_check_refuses_is_its_feature() {
        let text = "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  \
                    timeout server 1s\nlisten l\n  bind :9443\n  server a 127.0.0.1:1 id 4\n  \
                    server b 127.0.0.1:2 id 4\n";
        let r = check_text("t.cfg", ConfigKind::Haproxy, text);
        assert_eq!(r.summary[1], "  errors by feature: server id (1)", "{r}");
        assert_eq!(r.findings[0].line, 9, "{r}");
    }

    #[test]
    fn the_verdict_and_the_features_come_first() {
        // No `timeout client`: a warning (the `log` line that once warned is served now).
        let text = "global\n  log /dev/log local0\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
                    timeout server 1s\n  option transparent\nlisten l\n  \
                    bind :9443 ssl crt /x.pem\n  server a 127.0.0.1:1 cookie a\n  \
                    server b 127.0.0.1:2 cookie b\n";
        let r = check_text("t.cfg", ConfigKind::Haproxy, text);
        assert_eq!(
            r.summary,
            [
                "t.cfg: cannot run: 4 error(s) to fix first",
                "  errors by feature: server cookie (2), bind ssl (TLS termination) (1), \
                 option transparent (1)",
                "  warnings by feature: listen (1)",
            ]
        );
        assert!(r.to_string().starts_with("t.cfg: cannot run"), "{r}");
        let clean = "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  \
                     timeout server 1s\nlisten l\n  bind :9443\n  server a 127.0.0.1:1\n";
        let r = check_text("c.cfg", ConfigKind::Haproxy, clean);
        assert_eq!(r.summary, ["c.cfg: will run as is"], "{r}");
        let warned = clean.replace("listen l\n", "global\n  chroot /x\nlisten l\n");
        let r = check_text("w.cfg", ConfigKind::Haproxy, &warned);
        assert_eq!(
            summary("w.cfg", &warned, &r.findings),
            [
                "w.cfg: runs, with 1 warning(s) to read first",
                "  warnings by feature: chroot (1)"
            ]
        );
    }
}
