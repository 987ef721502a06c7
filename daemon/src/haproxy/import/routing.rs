//! HAProxy's request pipeline folded into one ordered list of native route rules per frontend.
//!
//! HAProxy runs, in order: the frontend's `tcp-request connection` rules (at accept), its
//! `tcp-request content` rules, its `use_backend` rules (else `default_backend`), then the chosen
//! backend's `tcp-request content` rules. In each rule list the first rule whose condition holds
//! acts: `reject` ends the connection, `accept` ends that list (the next stage still runs), and
//! a list with no match falls through. tether's route rules are one first-match list whose
//! `accept` ends everything, so each `accept` is expanded: the later stages are repeated under
//! its condition. The result refuses and routes exactly the connections HAProxy does, including
//! the trap that a `reject` written after `accept if { req_ssl_hello_type 1 }` never fires.

use super::acl::RouteCondition;
use super::Importer;
use std::collections::BTreeMap;
use std::time::Duration;
use tether_core::config::{Match, RouteRule, RuleAction};

/// Most route rules one frontend may expand to (accepts multiply the later stages).
const MAX_RULES: usize = 100_000;

/// One `tcp-request connection|content accept|reject` rule.
#[derive(Debug, Clone)]
pub(super) struct StageRule {
    /// When it applies.
    pub cond: RouteCondition,
    /// `reject` (else `accept`).
    pub reject: bool,
    /// Where it is written.
    pub line: usize,
}

/// One `use_backend NAME [if|unless COND]`.
#[derive(Debug, Clone)]
pub(super) struct Switch {
    /// When it applies.
    pub cond: RouteCondition,
    /// The backend.
    pub backend: String,
    /// Where it is written.
    pub line: usize,
}

/// A frontend's rules, kept until every backend is known.
#[derive(Debug, Clone, Default)]
pub(super) struct FrontRoutes {
    /// `tcp-request connection` rules.
    pub connection: Vec<StageRule>,
    /// `tcp-request content` rules of the frontend (of the whole proxy for a `listen`).
    pub content: Vec<StageRule>,
    /// `use_backend` rules.
    pub switching: Vec<Switch>,
    /// The proxy's own backend (a `listen`), whose rules are already in `content`.
    pub own_backend: Option<String>,
}

/// A backend's `tcp-request content` rules and how long they may wait for data.
#[derive(Debug, Clone, Default)]
pub(super) struct BackFilters {
    /// The rules.
    pub rules: Vec<StageRule>,
    /// `tcp-request inspect-delay` of the backend.
    pub inspect_delay: Option<Duration>,
}

/// Builds the expanded list of one frontend.
struct Composer<'a> {
    front: &'a FrontRoutes,
    default: &'a str,
    /// The `default_backend` line.
    default_line: usize,
    backs: &'a BTreeMap<String, BackFilters>,
    out: Vec<RouteRule>,
    /// The haproxy.cfg line of the rule that decides each emitted rule.
    lines: Vec<usize>,
    /// The `accept` rules being expanded (innermost last): a default-backend rule under one
    /// comes from its line.
    via: Vec<usize>,
    /// An unconditional rule was emitted: nothing after it can fire.
    closed: bool,
    /// Backends whose rules were reached (for their inspect delay).
    reached: Vec<String>,
}

fn with(prefix: &[Match], cond: &RouteCondition) -> Vec<Match> {
    let mut parts = prefix.to_vec();
    parts.extend(cond.when.clone());
    parts
}

impl Composer<'_> {
    fn stage(&mut self, stage: usize, prefix: &[Match]) {
        let front = self.front;
        let rules = match stage {
            0 => &front.connection,
            1 => &front.content,
            _ => return self.switching(prefix),
        };
        for r in rules {
            if self.closed {
                return;
            }
            let parts = with(prefix, &r.cond);
            if r.reject {
                self.push(parts, None, &r.cond.label, r.line);
            } else {
                self.via.push(r.line);
                self.stage(stage + 1, &parts);
                self.via.pop();
            }
            if r.cond.when.is_none() {
                return;
            }
        }
        self.stage(stage + 1, prefix);
    }

    fn switching(&mut self, prefix: &[Match]) {
        let front = self.front;
        for s in &front.switching {
            self.backend(&s.backend, &with(prefix, &s.cond), &s.cond.label, s.line);
            if s.cond.when.is_none() || self.closed {
                return;
            }
        }
        let default = self.default.to_string();
        let line = self.via.last().copied().unwrap_or(self.default_line);
        self.backend(&default, prefix, "", line);
    }

    fn backend(&mut self, name: &str, prefix: &[Match], label: &str, line: usize) {
        if self.front.own_backend.as_deref() != Some(name) {
            if let Some(b) = self.backs.get(name) {
                if !b.rules.is_empty() && !self.reached.iter().any(|n| n == name) {
                    self.reached.push(name.to_string());
                }
                for r in &b.rules {
                    let parts = with(prefix, &r.cond);
                    if r.reject {
                        self.push(parts, None, &r.cond.label, r.line);
                    } else {
                        self.push(parts, Some(name), label, r.line);
                    }
                    if r.cond.when.is_none() || self.closed {
                        return;
                    }
                }
            }
        }
        self.push(prefix.to_vec(), Some(name), label, line);
    }

    /// Emits a rule (`backend` None: reject).
    fn push(&mut self, mut parts: Vec<Match>, backend: Option<&str>, label: &str, line: usize) {
        if self.closed || self.out.len() > MAX_RULES {
            return;
        }
        let unconditional = parts.is_empty();
        self.closed = unconditional;
        if unconditional && backend == Some(self.default) {
            return;
        }
        let when = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Match {
                all: parts,
                ..Match::default()
            }),
        };
        self.lines.push(line);
        self.out.push(RouteRule {
            name: label.to_string(),
            when,
            unless: None,
            use_backend: backend.map(str::to_string),
            action: backend.is_none().then_some(RuleAction::Reject),
        });
    }
}

impl Importer<'_> {
    /// Gives every frontend its expanded route rules, once all backends are read.
    pub(super) fn compose_routes(&mut self) {
        let backs = std::mem::take(&mut self.back_filters);
        let fronts = std::mem::take(&mut self.front_routes);
        for (i, front) in fronts.iter().enumerate() {
            if i >= self.config.frontends.len() {
                continue;
            }
            for s in &front.switching {
                if !self.config.backends.iter().any(|b| b.name == s.backend) {
                    self.error(
                        s.line,
                        format!(
                            "use_backend names backend {} which is not defined",
                            s.backend
                        ),
                        "HAProxy refuses the config: unknown backend",
                        "define `backend NAME` or fix the name",
                    );
                }
            }
            let f = &self.config.frontends[i];
            let mut c = Composer {
                front,
                default: &f.backend,
                default_line: self.origins.line_of(&format!("frontend[{i}].backend")),
                backs: &backs,
                out: Vec::new(),
                lines: Vec::new(),
                via: Vec::new(),
                closed: false,
                reached: Vec::new(),
            };
            c.stage(0, &[]);
            let (rules, reached, lines) = (c.out, c.reached, c.lines);
            for (j, line) in lines.iter().enumerate() {
                self.origins
                    .note(&format!("frontend[{i}].route[{j}]"), *line);
            }
            if rules.len() > MAX_RULES {
                let what = format!(
                    "frontend {} expands to more than {MAX_RULES} route rules",
                    f.name
                );
                self.error(
                    front
                        .connection
                        .first()
                        .or(front.content.first())
                        .map_or(0, |r| r.line),
                    what,
                    "each `accept` repeats the rules after it under its condition",
                    "merge the accept rules into one condition",
                );
                continue;
            }
            let delay = reached
                .iter()
                .filter_map(|b| backs.get(b).and_then(|x| x.inspect_delay))
                .max();
            let f = &mut self.config.frontends[i];
            if let Some(d) = delay {
                f.inspect_delay = f.inspect_delay.max(d);
            }
            f.routes = rules;
        }
    }
}
