//! `tcp-request` / `tcp-response`: the inspect delays, and the accept/reject rules.
//!
//! `tcp-request connection` and `tcp-request content` accept/reject rules become route rules
//! (see `routing.rs`): the frontend's, and a backend's folded into every frontend that reaches
//! it, so a backend's restriction is enforced, never dropped. A backend's content `accept` rules
//! also stay in `[backend.haproxy]`, where they say when its stick rules have seen enough.

use super::acl::Parsed;
use super::proxy::Draft;
use super::routing::{StageRule, Switch};
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{Condition, ContentAction, ContentRule, Match};

/// The `[backend.haproxy]` form of a parsed condition: one ACL with a simple form.
fn legacy(p: &Option<Parsed>) -> Option<Condition> {
    let Some(p) = p else {
        return Some(Condition::Always);
    };
    let [terms] = p.any.as_slice() else {
        return None;
    };
    let [term] = terms.as_slice() else {
        return None;
    };
    let [acl] = term.lines.as_slice() else {
        return None;
    };
    let mut c = acl.legacy.clone()?;
    if term.negated {
        c = Condition::Not(Box::new(c));
    }
    if p.unless {
        c = Condition::Not(Box::new(c));
    }
    Some(c)
}

/// Whether a condition reads the ClientHello (a `tcp-request connection` rule cannot).
fn reads_hello(m: &Match) -> bool {
    let mut problems = Vec::new();
    m.condition("if", &mut problems).needs_hello()
}

impl Importer<'_> {
    /// `tcp-request|tcp-response inspect-delay T`, `... content accept|reject [COND]`,
    /// `tcp-request connection accept|reject [COND]`.
    pub(super) fn content_rule(&mut self, p: &mut Draft, d: &Directive) {
        let request = d.keyword() == "tcp-request";
        match (d.word(1), request) {
            ("inspect-delay", _) => self.inspect_delay(p, d, request),
            ("content", true) => self.request_content(p, d),
            ("content", false) if p.back => self.response_content(p, d),
            ("connection", true) => self.connection_rule(p, d),
            _ => self.unsupported(d, &p.context()),
        }
    }

    fn action(&mut self, p: &Draft, d: &Directive) -> Option<bool> {
        match d.word(2) {
            "accept" => Some(false),
            "reject" => Some(true),
            _ => {
                self.unsupported(d, &p.context());
                None
            }
        }
    }

    /// `tcp-request content accept|reject [COND]`.
    fn request_content(&mut self, p: &mut Draft, d: &Directive) {
        let Some(reject) = self.action(p, d) else {
            return;
        };
        let acls = p.acls.clone();
        let Some(parsed) = self.parse_condition(d, 3, &acls) else {
            return;
        };
        let Some(cond) = self.route_condition(d, 3, &acls) else {
            return;
        };
        let rule = StageRule {
            cond,
            reject,
            line: d.line,
        };
        if p.front {
            p.routes.content.push(rule);
        } else {
            p.back_filters.push(rule);
        }
        if p.back {
            p.lines.request_rules = d.line;
            if !reject {
                match legacy(&parsed) {
                    Some(when) => p.rules.request_content.push(ContentRule {
                        action: ContentAction::Accept,
                        when,
                    }),
                    None if p.rules.request_content.is_empty() => {
                        p.rules.request_content.push(ContentRule {
                            action: ContentAction::Accept,
                            when: Condition::ClientHello,
                        })
                    }
                    None => {}
                }
            }
        }
    }

    fn response_content(&mut self, p: &mut Draft, d: &Directive) {
        let action = match d.word(2) {
            "accept" => ContentAction::Accept,
            "reject" => ContentAction::Reject,
            _ => return self.unsupported(d, &p.context()),
        };
        let acls = p.acls.clone();
        if let Some(when) = self.condition(d, 3, &acls) {
            p.rules.response_content.push(ContentRule { action, when });
        }
    }

    /// `tcp-request connection accept|reject [COND]`: addresses only, before any byte.
    fn connection_rule(&mut self, p: &mut Draft, d: &Directive) {
        if !p.front {
            self.error(
                d.line,
                format!("`{}` in {}", d.text(), p.context()),
                "HAProxy refuses `tcp-request connection` in a backend: it runs when a \
                 frontend accepts, before any backend is chosen",
                "move it to the frontend, or write `tcp-request content reject ...` here",
            );
            return;
        }
        let Some(reject) = self.action(p, d) else {
            return;
        };
        let acls = p.acls.clone();
        let Some(cond) = self.route_condition(d, 3, &acls) else {
            return;
        };
        if cond.when.as_ref().is_some_and(reads_hello) {
            self.error(
                d.line,
                format!("`{}` reads the request in a connection rule", d.text()),
                "`tcp-request connection` runs at accept, before any byte arrived: only src, \
                 dst and dst_port are known (HAProxy warns and never matches)",
                "write it as `tcp-request content ...` with `tcp-request inspect-delay 5s`",
            );
            return;
        }
        p.routes.connection.push(StageRule {
            cond,
            reject,
            line: d.line,
        });
    }

    /// `use_backend NAME [if|unless COND]`.
    pub(super) fn use_backend(&mut self, p: &mut Draft, d: &Directive) {
        let name = d.word(1).to_string();
        if name.is_empty() || name.contains('%') {
            self.error(
                d.line,
                format!("`{}`: tether needs a backend name here", d.text()),
                "dynamic names (%[...]) are not evaluated",
                "use_backend api if { req.ssl_sni -i api.example.com }",
            );
            return;
        }
        let acls = p.acls.clone();
        if let Some(cond) = self.route_condition(d, 2, &acls) {
            p.routes.switching.push(Switch {
                cond,
                backend: name,
                line: d.line,
            });
        }
    }

    /// How long the request (or response) rules wait for data; on a frontend the request delay
    /// is also how long tether waits for the ClientHello.
    fn inspect_delay(&mut self, p: &mut Draft, d: &Directive, request: bool) {
        if let Some(t) = self.duration(d, 2) {
            if request {
                p.rules.request_inspect_delay = Some(t);
                if p.front {
                    p.frontend.inspect_delay = t;
                }
            } else {
                p.rules.response_inspect_delay = Some(t);
            }
        }
    }
}

#[cfg(test)]
mod tests;
