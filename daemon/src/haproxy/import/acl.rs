//! ACLs and rule conditions: `acl NAME CRITERION VALUES...` and `if|unless [!]NAME` or an
//! anonymous `{ CRITERION VALUES }`, for the criteria tether evaluates (ClientHello,
//! ServerHello, SNI, source address).

use super::Importer;
use crate::haproxy::lexer::Directive;
use std::collections::BTreeMap;
use tether_core::config::Condition;

impl Importer<'_> {
    fn criterion(&mut self, line: usize, words: &[String]) -> Option<Condition> {
        let crit = words.first().map(String::as_str).unwrap_or("");
        let values: Vec<String> = words
            .iter()
            .skip(1)
            .filter(|w| !w.starts_with('-'))
            .cloned()
            .collect();
        let flags: Vec<&String> = words
            .iter()
            .skip(1)
            .filter(|w| w.starts_with('-'))
            .collect();
        if flags.iter().any(|f| f.as_str() != "-i") {
            self.error(
                line,
                format!("unsupported ACL flags in `{}`", words.join(" ")),
                "tether matches exact values only (-i accepted)",
                "remove the -m/-f flags and list the exact values",
            );
            return None;
        }
        match crit {
            "req_ssl_hello_type" | "req.ssl_hello_type" if values == ["1"] => {
                Some(Condition::ClientHello)
            }
            "rep_ssl_hello_type" | "res.ssl_hello_type" if values == ["2"] => {
                Some(Condition::ServerHello)
            }
            "req_ssl_sni" | "req.ssl_sni" if !values.is_empty() => Some(Condition::Sni(values)),
            "src" if !values.is_empty() => Some(Condition::Src(values)),
            _ => {
                self.error(line, format!("unsupported ACL `{}`", words.join(" ")), "tether understands req_ssl_hello_type 1, rep_ssl_hello_type 2, req.ssl_sni NAME..., src ADDR...", "acl clienthello req_ssl_hello_type 1");
                None
            }
        }
    }

    /// `acl NAME CRITERION VALUES...`; repeating a name adds values (HAProxy ORs them).
    pub(super) fn acl(&mut self, d: &Directive, acls: &mut BTreeMap<String, Condition>) {
        let name = d.word(1).to_string();
        let Some(cond) = self.criterion(d.line, &d.words[2.min(d.words.len())..]) else {
            return;
        };
        match (acls.remove(&name), cond) {
            (None, c) => {
                acls.insert(name, c);
            }
            (Some(Condition::Sni(mut a)), Condition::Sni(b)) => {
                a.extend(b);
                acls.insert(name, Condition::Sni(a));
            }
            (Some(Condition::Src(mut a)), Condition::Src(b)) => {
                a.extend(b);
                acls.insert(name, Condition::Src(a));
            }
            (Some(prev), _) => {
                self.error(
                    d.line,
                    format!("ACL `{name}` redefined with another criterion"),
                    "tether cannot OR different criteria",
                    "give it another name",
                );
                acls.insert(name, prev);
            }
        }
    }

    /// Reads `if|unless [!]NAME` (or an anonymous `{ criterion values }`) from word `at`.
    pub(super) fn condition(
        &mut self,
        d: &Directive,
        at: usize,
        acls: &BTreeMap<String, Condition>,
    ) -> Option<Condition> {
        let words = &d.words[at.min(d.words.len())..];
        let Some(first) = words.first() else {
            return Some(Condition::Always);
        };
        let negate_all = match first.as_str() {
            "if" => false,
            "unless" => true,
            _ => {
                self.error(
                    d.line,
                    format!("`{}`: expected `if` or `unless` after the action", d.text()),
                    "HAProxy rejects it",
                    "... if clienthello",
                );
                return None;
            }
        };
        let rest = &words[1..];
        let cond = if rest.first().map(String::as_str) == Some("{")
            && rest.last().map(String::as_str) == Some("}")
            && rest.len() > 2
        {
            self.criterion(d.line, &rest[1..rest.len() - 1])?
        } else if rest.len() == 1 {
            let (neg, name) = match rest[0].strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, rest[0].as_str()),
            };
            let base = match name {
                "TRUE" => Condition::Always,
                _ => match acls.get(name) {
                    Some(c) => c.clone(),
                    None => {
                        self.error(d.line, format!("unknown ACL `{name}`"), "HAProxy rejects a condition naming an ACL not declared earlier in the same section", format!("acl {name} req_ssl_hello_type 1"));
                        return None;
                    }
                },
            };
            if neg {
                Condition::Not(Box::new(base))
            } else {
                base
            }
        } else {
            self.error(
                d.line,
                format!("condition `{}` is too complex", rest.join(" ")),
                "tether supports one ACL per rule (optionally negated)",
                "split it into several rules",
            );
            return None;
        };
        Some(if negate_all {
            Condition::Not(Box::new(cond))
        } else {
            cond
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use tether_core::config::Condition;

    /// The request content rules of a backend written with `lines`.
    fn conditions(lines: &str) -> (Vec<Condition>, Vec<String>) {
        let im = import_text(&format!(
            "backend b\n  timeout connect 1s\n  timeout server 1s\n{lines}  \
             server s1 127.0.0.1:8443\n"
        ));
        let when = im.config.backends[0]
            .haproxy
            .as_ref()
            .map(|r| r.request_content.iter().map(|c| c.when.clone()).collect())
            .unwrap_or_default();
        let errors = errors(&im).iter().map(|f| f.what.clone()).collect();
        (when, errors)
    }

    #[test]
    fn named_anonymous_negated_and_repeated_acls() {
        let (when, errors) = conditions(
            "  acl sni req.ssl_sni -i a.example\n  acl sni req.ssl_sni b.example\n  \
             acl lan src 10.0.0.0/8\n  tcp-request content accept if sni\n  \
             tcp-request content reject unless lan\n  tcp-request content reject if !lan\n  \
             tcp-request content accept if { req_ssl_hello_type 1 }\n  \
             tcp-request content accept if TRUE\n  tcp-request content accept\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let lan = Condition::Src(vec!["10.0.0.0/8".into()]);
        assert_eq!(
            when,
            [
                Condition::Sni(vec!["a.example".into(), "b.example".into()]),
                Condition::Not(Box::new(lan.clone())),
                Condition::Not(Box::new(lan)),
                Condition::ClientHello,
                Condition::Always,
                Condition::Always,
            ]
        );
    }

    #[test]
    fn what_tether_cannot_evaluate_is_an_error() {
        let (when, errors) = conditions(
            "  acl big req.len gt 10\n  acl m src -m ip 1.2.3.4\n  acl a src 1.2.3.4\n  \
             acl a req.ssl_sni x\n  tcp-request content accept if nope\n  \
             tcp-request content accept if a a\n  tcp-request content accept when a\n",
        );
        assert!(when.is_empty(), "{when:?}");
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].starts_with("unsupported ACL `req.len"));
        assert!(errors[1].starts_with("unsupported ACL flags"));
        assert!(errors[2].contains("redefined with another criterion"));
        assert_eq!(errors[3], "unknown ACL `nope`");
        assert!(errors[4].contains("too complex"));
        assert!(errors[5].contains("expected `if` or `unless`"));
    }
}
