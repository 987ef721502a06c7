//! `monitor fail if|unless COND` and the `acl` lines it names, in a `listen stats` section:
//! tether evaluates one test, `nbsrv(BACKEND) OP N`, inline (`{ nbsrv(app) lt 1 }`) or as a
//! named `acl`; anything else is an error that says so, never a monitor that always answers
//! 200.

use std::collections::BTreeMap;

use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{Compare, MonitorFail};

/// The `acl` lines of a stats section, by name: the test, or why tether cannot evaluate it.
pub(super) type StatsAcls = BTreeMap<String, Result<NbsrvTest, String>>;

/// `nbsrv(BACKEND) OP N`.
#[derive(Debug, Clone)]
pub(super) struct NbsrvTest {
    backend: String,
    op: Compare,
    value: u32,
}

const FIX: &str = "monitor fail if { nbsrv(app) lt 1 }";
const SUPPORTED: &str = "tether evaluates `monitor fail if|unless` on one `nbsrv(BACKEND) \
     lt|le|eq|ge|gt N` test, inline in `{ }` or through an `acl NAME nbsrv(BACKEND) lt N`";

/// Parses `nbsrv(BACKEND) [OP] N` (no operator: equality, as HAProxy matches integers).
fn nbsrv_test(words: &[String]) -> Result<NbsrvTest, String> {
    let fetch = words.first().map(String::as_str).unwrap_or("");
    let backend = fetch
        .strip_prefix("nbsrv(")
        .and_then(|r| r.strip_suffix(')'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("`{fetch}` is not `nbsrv(BACKEND)`"))?;
    let (op, value) = match &words[1..] {
        [op, n] => (
            Compare::parse(op).ok_or_else(|| format!("unknown operator `{op}`"))?,
            n,
        ),
        [n] => (Compare::Eq, n),
        _ => {
            return Err(format!(
                "`{}`: expected one operator and one number",
                words.join(" ")
            ))
        }
    };
    let value = value
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    Ok(NbsrvTest {
        backend: backend.to_string(),
        op,
        value,
    })
}

/// The condition words: `{ nbsrv(B) OP N }`, or an acl name, `!` for its negation.
fn condition(cond: &[String], acls: &StatsAcls) -> Result<(NbsrvTest, bool), String> {
    match cond {
        [open, inner @ .., close] if open == "{" && close == "}" => Ok((nbsrv_test(inner)?, false)),
        [name] => {
            let (negated, name) = match name.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, name.as_str()),
            };
            match acls.get(name) {
                Some(Ok(t)) => Ok((t.clone(), negated)),
                Some(Err(why)) => Err(format!("acl `{name}`: {why}")),
                None => Err(format!("no acl `{name}` in this section")),
            }
        }
        _ => Err(format!("condition `{}` is not one test", cond.join(" "))),
    }
}

impl Importer<'_> {
    /// `acl NAME nbsrv(BACKEND) OP N` in a stats section; kept for `monitor fail` (reported
    /// there if it cannot be evaluated and is used).
    pub(super) fn stats_acl(&mut self, d: &Directive, acls: &mut StatsAcls) {
        let name = d.word(1).to_string();
        let test = nbsrv_test(d.words.get(2..).unwrap_or_default());
        acls.insert(name, test);
    }

    /// `monitor fail if|unless COND`.
    pub(super) fn monitor_fail(&mut self, d: &Directive, acls: &StatsAcls) -> Option<MonitorFail> {
        let unless = match d.word(2) {
            "if" => false,
            "unless" => true,
            _ => {
                self.monitor_error(d, "`monitor fail` needs `if` or `unless`".into());
                return None;
            }
        };
        match condition(d.words.get(3..).unwrap_or_default(), acls) {
            Ok((t, negated)) => Some(MonitorFail {
                backend: t.backend,
                op: t.op,
                value: t.value,
                unless: unless != negated,
            }),
            Err(why) => {
                self.monitor_error(d, why);
                None
            }
        }
    }

    fn monitor_error(&mut self, d: &Directive, why: String) {
        self.error(d.line, format!("`{}`: {why}", d.text()), SUPPORTED, FIX);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use tether_core::config::{Compare, MonitorFail};

    fn stats(lines: &str) -> super::super::Import {
        import_text(&format!(
            "backend app\n  timeout connect 1s\n  timeout server 1s\n  server s1 10.0.0.1:443\n\
             listen stats\n  mode http\n  bind 127.0.0.1:1936\n  stats enable\n  \
             monitor-uri /healthz\n{lines}"
        ))
    }

    #[test]
    fn nbsrv_conditions_inline_or_named_import() {
        let im = stats(
            "  acl dead nbsrv(app) lt 1\n  monitor fail if dead\n  monitor fail unless \
             { nbsrv(app) ge 2 }\n  monitor fail if !dead\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", errors(&im));
        let m = &im.config.stats.as_ref().unwrap().monitor_fail;
        let lt1 = |unless| MonitorFail {
            backend: "app".into(),
            op: Compare::Lt,
            value: 1,
            unless,
        };
        let ge2 = MonitorFail {
            op: Compare::Ge,
            value: 2,
            ..lt1(true)
        };
        assert_eq!(m, &[lt1(false), ge2, lt1(true)]);
    }

    #[test]
    fn anything_else_is_an_error_saying_what_tether_supports() {
        for cond in [
            "  monitor fail if { nbsrv(app) lt 1 } || { nbsrv(app) lt 2 }\n",
            "  acl x always_true\n  monitor fail if x\n",
            "  monitor fail if nope\n",
            "  monitor fail when { nbsrv(app) lt 1 }\n",
            "  monitor fail if { nbsrv lt 1 }\n",
        ] {
            let e = errors(&stats(cond));
            assert_eq!(e.len(), 1, "{cond}: {e:?}");
            assert!(e[0].why.contains("nbsrv(BACKEND)"), "{cond}: {}", e[0].why);
            assert!(
                e[0].fix.contains("monitor fail if { nbsrv("),
                "{}",
                e[0].fix
            );
        }
        // An unknown backend: the configuration does not validate, naming it.
        let im = stats("  monitor fail if { nbsrv(nope) lt 1 }\n");
        let e = im.config.validate();
        assert!(
            e.iter()
                .any(|f| f.message.contains("\"nope\"") && f.key_path.contains("monitor-fail")),
            "{e:?}"
        );
    }
}
