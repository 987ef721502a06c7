//! ACLs and rule conditions: `acl NAME FETCH [-i] [-m METHOD] [-f FILE] VALUES...`, the same
//! name on several lines (ORed), and conditions `if|unless TERM...` where a term is `[!]NAME`,
//! `! NAME` or an anonymous `{ FETCH ... }`, terms side by side are ANDed and `||` (or `or`)
//! separates alternatives, as HAProxy reads them.
//!
//! Each ACL has a routing form (a native [`Match`], for `use_backend` and `tcp-request`
//! accept/reject rules) and, for the few criteria HAProxy's stick rules use here, the simple
//! [`Condition`] of `[backend.haproxy]` rules. Whatever has no form is an error naming what to
//! write instead; nothing is dropped.

use super::Importer;
use crate::haproxy::lexer::Directive;
use std::collections::BTreeMap;
use tether_core::config::route::{NameMatchSpec, NameMethodName, PortSpec};
use tether_core::config::{Condition, Match};

/// One `acl` line (or anonymous ACL): its routing form and its stick-rule form, when it has
/// them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Acl {
    /// The condition as a native route test.
    pub route: Option<Match>,
    /// The condition as a `[backend.haproxy]` rule condition.
    pub legacy: Option<Condition>,
}

/// The ACLs declared so far in a section: each name's lines, ORed.
pub(super) type Acls = BTreeMap<String, Vec<Acl>>;

/// A parsed condition: alternatives of terms, each term an ACL (maybe negated).
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    /// `unless` instead of `if`.
    pub unless: bool,
    /// OR of ANDs of terms.
    pub any: Vec<Vec<Term>>,
}

/// One term of a condition: an ACL (all its lines), maybe negated.
#[derive(Debug, Clone)]
pub(super) struct Term {
    /// Written with `!`.
    pub negated: bool,
    /// The ACL's lines (ORed).
    pub lines: Vec<Acl>,
    /// The ACL's name (none for an anonymous ACL), for logs.
    pub name: Option<String>,
}

/// What a rule condition turns into for the route rules.
#[derive(Debug, Clone, Default)]
pub(super) struct RouteCondition {
    /// The rule applies when this holds (`None`: always).
    pub when: Option<Match>,
    /// The label logs give the rule: the ACL's name when the condition is one named ACL.
    pub label: String,
}

/// The flags and values of one criterion.
struct Criterion<'w> {
    fetch: &'w str,
    ignore_case: bool,
    method: Option<&'w str>,
    files: Vec<String>,
    values: Vec<String>,
}

fn split_criterion(words: &[String]) -> Result<Criterion<'_>, String> {
    let fetch = words.first().map(String::as_str).unwrap_or("");
    let mut c = Criterion {
        fetch,
        ignore_case: false,
        method: None,
        files: Vec::new(),
        values: Vec::new(),
    };
    let mut i = 1;
    while i < words.len() {
        match words[i].as_str() {
            "-i" => c.ignore_case = true,
            "-m" => {
                i += 1;
                c.method = Some(words.get(i).ok_or("-m without a method")?.as_str());
            }
            "-f" => {
                i += 1;
                c.files
                    .push(words.get(i).ok_or("-f without a file")?.clone());
            }
            "--" => {
                c.values.extend(words[i + 1..].iter().cloned());
                break;
            }
            f if f.starts_with('-') && c.values.is_empty() => {
                return Err(format!(
                    "flag `{f}` is not supported (tether reads -i, -m, -f)"
                ))
            }
            v => c.values.push(v.to_string()),
        }
        i += 1;
    }
    Ok(c)
}

fn one_file(c: &Criterion<'_>) -> Result<Option<String>, String> {
    match c.files.as_slice() {
        [] => Ok(None),
        [f] => Ok(Some(f.clone())),
        _ => Err("several -f files on one line: write one acl line per file (same name)".into()),
    }
}

fn need_values(c: &Criterion<'_>) -> Result<(), String> {
    if c.values.is_empty() && c.files.is_empty() {
        return Err(format!("`{}` without a value or -f file", c.fetch));
    }
    Ok(())
}

/// The server-name ACL (`req.ssl_sni`).
fn sni_acl(c: &Criterion<'_>) -> Result<Acl, String> {
    let file = one_file(c)?;
    if c.method == Some("found") {
        return Ok(Acl {
            route: Some(Match {
                client_hello: Some(true),
                not: Some(Box::new(Match {
                    no_server_name: true,
                    ..Match::default()
                })),
                ..Match::default()
            }),
            legacy: None,
        });
    }
    need_values(c)?;
    let method = match c.method.unwrap_or("str") {
        "str" => NameMethodName::Exact,
        "beg" => NameMethodName::Prefix,
        "end" => NameMethodName::Suffix,
        "sub" => NameMethodName::Contains,
        "dom" => NameMethodName::Domain,
        "reg" => {
            return Err(
                "`-m reg`: tether does not evaluate regular expressions; write the names \
                 with -m str, -m beg, -m end, -m sub or -m dom (several values or -f FILE)"
                    .into(),
            )
        }
        m => {
            return Err(format!(
            "`-m {m}` does not apply to req.ssl_sni in tether; write -m str, beg, end, sub or dom"
        ))
        }
    };
    let simple = method == NameMethodName::Exact && file.is_none();
    let route = if simple && c.ignore_case && !c.values.iter().any(|v| v.starts_with("*.")) {
        Match {
            server_name: c.values.clone(),
            ..Match::default()
        }
    } else {
        Match {
            name_match: Some(NameMatchSpec {
                method,
                values: c.values.clone(),
                file,
                ignore_case: c.ignore_case,
            }),
            ..Match::default()
        }
    };
    Ok(Acl {
        route: Some(route),
        legacy: simple.then(|| Condition::Sni(c.values.clone())),
    })
}

/// The address ACLs (`src`, `dst`).
fn address_acl(c: &Criterion<'_>, source: bool) -> Result<Acl, String> {
    if !matches!(c.method, None | Some("ip")) {
        return Err(format!(
            "`-m {}` on an address: write networks (-m ip)",
            c.method.unwrap_or("")
        ));
    }
    need_values(c)?;
    let file = one_file(c)?;
    let legacy = (source && file.is_none()).then(|| Condition::Src(c.values.clone()));
    let route = if source {
        Match {
            source: c.values.clone(),
            source_file: file,
            ..Match::default()
        }
    } else {
        Match {
            destination: c.values.clone(),
            destination_file: file,
            ..Match::default()
        }
    };
    Ok(Acl {
        route: Some(route),
        legacy,
    })
}

/// `dst_port 443`, `dst_port 8000:8100`.
fn port_acl(c: &Criterion<'_>) -> Result<Acl, String> {
    if !c.files.is_empty() || !matches!(c.method, None | Some("int")) {
        return Err("dst_port takes ports or ranges written on the line (443, 8000:8100)".into());
    }
    need_values(c)?;
    let mut ports = Vec::new();
    for v in &c.values {
        let spec = match v.parse::<u16>() {
            Ok(p) => PortSpec::Port(p),
            Err(_) => PortSpec::Range(v.replacen(':', "-", 1)),
        };
        if spec.range().is_none() {
            return Err(format!(
                "invalid port or range `{v}`: write 443 or 8000:8100"
            ));
        }
        ports.push(spec);
    }
    Ok(Acl {
        route: Some(Match {
            destination_port: ports,
            ..Match::default()
        }),
        legacy: None,
    })
}

/// The ACL one criterion describes.
fn acl_of(words: &[String]) -> Result<Acl, String> {
    let c = split_criterion(words)?;
    let values: Vec<&str> = c.values.iter().map(String::as_str).collect();
    match c.fetch {
        "req_ssl_hello_type" | "req.ssl_hello_type" if values == ["1"] => Ok(Acl {
            route: Some(Match {
                client_hello: Some(true),
                ..Match::default()
            }),
            legacy: Some(Condition::ClientHello),
        }),
        "rep_ssl_hello_type" | "res.ssl_hello_type" if values == ["2"] => Ok(Acl {
            route: None,
            legacy: Some(Condition::ServerHello),
        }),
        "req_ssl_sni" | "req.ssl_sni" => sni_acl(&c),
        "src" => address_acl(&c, true),
        "dst" => address_acl(&c, false),
        "dst_port" => port_acl(&c),
        "req_ssl_ver" | "req.ssl_ver" => {
            need_values(&c)?;
            if let Some(bad) = c
                .values
                .iter()
                .find(|v| tether_core::config::route::dotted_range(v).is_none())
            {
                return Err(format!("invalid TLS version `{bad}`: write 3.3 or 3.1:3.3"));
            }
            Ok(Acl {
                route: Some(Match {
                    hello_version: c.values.clone(),
                    ..Match::default()
                }),
                legacy: None,
            })
        }
        "req.ssl_alpn" | "req_ssl_alpn" => {
            if !c.files.is_empty() || !matches!(c.method, None | Some("str")) {
                return Err(
                    "req.ssl_alpn takes protocol names written on the line (h2 http/1.1)".into(),
                );
            }
            need_values(&c)?;
            Ok(Acl {
                route: Some(Match {
                    alpn: c.values.clone(),
                    ..Match::default()
                }),
                legacy: None,
            })
        }
        _ => Err(format!("unsupported ACL `{}`", words.join(" "))),
    }
}

const SUPPORTED: &str = "tether understands req.ssl_hello_type 1, rep_ssl_hello_type 2, \
    req.ssl_sni, req.ssl_ver, req.ssl_alpn, src, dst and dst_port (with -i, -m, -f)";

impl Importer<'_> {
    fn criterion(&mut self, line: usize, words: &[String]) -> Option<Acl> {
        match acl_of(words) {
            Ok(acl) => Some(acl),
            Err(e) => {
                let fix = format!(
                    "tether cannot evaluate `{}`: keep this proxy on HAProxy, or write the \
                     rule with one of the criteria tether understands",
                    words.join(" ")
                );
                self.error(line, e, SUPPORTED, fix);
                None
            }
        }
    }

    /// `acl NAME CRITERION VALUES...`; repeating a name adds an alternative (HAProxy ORs them).
    pub(super) fn acl(&mut self, d: &Directive, acls: &mut Acls) {
        let name = d.word(1).to_string();
        if let Some(acl) = self.criterion(d.line, &d.words[2.min(d.words.len())..]) {
            acls.entry(name).or_default().push(acl);
        }
    }

    /// Parses `if|unless TERMS` from word `at` (`None` after an error, reported).
    pub(super) fn parse_condition(
        &mut self,
        d: &Directive,
        at: usize,
        acls: &Acls,
    ) -> Option<Option<Parsed>> {
        let words = &d.words[at.min(d.words.len())..];
        let Some(first) = words.first() else {
            return Some(None);
        };
        let unless = match first.as_str() {
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
        let mut any = vec![Vec::new()];
        let mut i = 1;
        let mut negate = false;
        while i < words.len() {
            let w = words[i].as_str();
            match w {
                "||" | "or" => {
                    if negate || any.last().is_some_and(Vec::is_empty) {
                        self.error(
                            d.line,
                            format!("`{}`: `{w}` without a term before it", d.text()),
                            "HAProxy rejects it",
                            "if a || b",
                        );
                        return None;
                    }
                    any.push(Vec::new());
                }
                "!" => negate = !negate,
                "{" | "!{" => {
                    if w == "!{" {
                        negate = !negate;
                    }
                    let (term, end) = self.anonymous_term(d, &words[i..], negate)?;
                    any.last_mut().expect("one").push(term);
                    negate = false;
                    i += end;
                }
                _ => {
                    let term = self.named_term(d, w, negate, acls)?;
                    any.last_mut().expect("one").push(term);
                    negate = false;
                }
            }
            i += 1;
        }
        if negate || any.iter().any(Vec::is_empty) {
            self.error(
                d.line,
                format!("`{}`: incomplete condition", d.text()),
                "HAProxy rejects it",
                "if acl1 || !acl2",
            );
            return None;
        }
        Some(Some(Parsed { unless, any }))
    }

    /// An anonymous ACL `{ criterion }` at the start of `words`; also how many words it took
    /// (up to its `}`).
    fn anonymous_term(
        &mut self,
        d: &Directive,
        words: &[String],
        negated: bool,
    ) -> Option<(Term, usize)> {
        let Some(end) = words.iter().position(|x| x == "}") else {
            self.error(
                d.line,
                format!("`{}`: `{{` without `}}`", d.text()),
                "HAProxy rejects it",
                "if { req.ssl_sni -i a.example }",
            );
            return None;
        };
        let acl = self.criterion(d.line, &words[1..end])?;
        let term = Term {
            negated,
            lines: vec![acl],
            name: None,
        };
        Some((term, end))
    }

    /// A named ACL (`name` or `!name`), or HAProxy's predefined `TRUE`.
    fn named_term(&mut self, d: &Directive, w: &str, negate: bool, acls: &Acls) -> Option<Term> {
        let (negated, name) = match w.strip_prefix('!') {
            Some(n) => (!negate, n),
            None => (negate, w),
        };
        let lines = match name {
            "TRUE" | "always_true" => vec![Acl {
                route: Some(Match::default()),
                legacy: Some(Condition::Always),
            }],
            _ => match acls.get(name) {
                Some(a) => a.clone(),
                None => {
                    self.error(
                        d.line,
                        format!("unknown ACL `{name}`"),
                        "HAProxy rejects a condition naming an ACL not declared earlier in the same section",
                        format!("acl {name} req_ssl_hello_type 1"),
                    );
                    return None;
                }
            },
        };
        Some(Term {
            negated,
            lines,
            name: Some(name.to_string()),
        })
    }

    /// Reads a condition for stick rules and backend content rules, which take one ACL
    /// (optionally negated) of the kinds they evaluate.
    pub(super) fn condition(&mut self, d: &Directive, at: usize, acls: &Acls) -> Option<Condition> {
        let parsed = self.parse_condition(d, at, acls)?;
        let Some(p) = parsed else {
            return Some(Condition::Always);
        };
        let single = match p.any.as_slice() {
            [terms] => match terms.as_slice() {
                [t] if t.lines.len() == 1 => t.lines[0].legacy.clone().map(|c| (t.negated, c)),
                _ => None,
            },
            _ => None,
        };
        let Some((neg, cond)) = single else {
            self.error(
                d.line,
                format!(
                    "condition `{}` is too complex here",
                    d.words[at..].join(" ")
                ),
                "stick rules and backend accept rules take one ACL (optionally negated) on \
                 req_ssl_hello_type, rep_ssl_hello_type, req.ssl_sni (exact names) or src",
                "split it into several rules",
            );
            return None;
        };
        let negated = |c| Condition::Not(Box::new(c));
        let cond = if neg { negated(cond) } else { cond };
        Some(if p.unless { negated(cond) } else { cond })
    }

    /// Reads a condition for route rules (`use_backend`, `tcp-request` accept/reject).
    pub(super) fn route_condition(
        &mut self,
        d: &Directive,
        at: usize,
        acls: &Acls,
    ) -> Option<RouteCondition> {
        let Some(p) = self.parse_condition(d, at, acls)? else {
            return Some(RouteCondition::default());
        };
        let mut label = String::new();
        if let [terms] = p.any.as_slice() {
            if let [Term {
                negated,
                name: Some(name),
                ..
            }] = terms.as_slice()
            {
                let bang = if *negated != p.unless { "!" } else { "" };
                label = format!("{bang}{name}");
            }
        }
        let mut any = Vec::new();
        for terms in &p.any {
            let mut all = Vec::new();
            for term in terms {
                let mut alts = Vec::new();
                for acl in &term.lines {
                    let Some(m) = acl.route.clone() else {
                        self.error(d.line, format!("`{}` uses a response ACL in a request rule", d.text()), "rep_ssl_hello_type looks at the server's answer, which does not exist yet when a connection is routed", "use req.ssl_hello_type 1");
                        return None;
                    };
                    alts.push(m);
                }
                let m = if alts.len() == 1 {
                    alts.pop().expect("one")
                } else {
                    Match {
                        any: alts,
                        ..Match::default()
                    }
                };
                all.push(if term.negated {
                    Match {
                        not: Some(Box::new(m)),
                        ..Match::default()
                    }
                } else {
                    m
                });
            }
            any.push(if all.len() == 1 {
                all.pop().expect("one")
            } else {
                Match {
                    all,
                    ..Match::default()
                }
            });
        }
        let m = if any.len() == 1 {
            any.pop().expect("one")
        } else {
            Match {
                any,
                ..Match::default()
            }
        };
        let always = m == Match::default();
        let when = match (always, p.unless) {
            (true, false) => None,
            (true, true) => Some(Match {
                not: Some(Box::new(Match {
                    client_hello: Some(true),
                    ..Match::default()
                })),
                client_hello: Some(true),
                ..Match::default()
            }),
            (false, false) => Some(m),
            (false, true) => Some(Match {
                not: Some(Box::new(m)),
                ..Match::default()
            }),
        };
        Some(RouteCondition { when, label })
    }
}

#[cfg(test)]
mod tests;
