//! The compiled form of a frontend's rules: one decision costs the length of the server name
//! plus a search of the address tables, then only the rules that can hold are evaluated.
//!
//! Each test of each rule becomes an atom. Server-name (exact and `*.suffix`) and address atoms
//! are *indexed*: their truth for a connection comes from the name and prefix indexes at once.
//! A rule that is false whenever its indexed atoms are all false (decided at compile time with
//! three-valued logic, other tests unknown) can only hold when one of them matched, so it is a
//! candidate only then; the remaining rules are always candidates. The smallest candidate index
//! whose condition holds is the first rule a plain scan would find.

use super::cidr::Cidr;
use super::condition::{Condition, NameMethod, Test};
use super::facts::{Facts, HelloFacts};
use super::hasher::FastMap;
use super::names::NameIndex;
use super::prefix::PrefixTable;
use super::rule::{Rule, Verdict};
use std::net::{IpAddr, SocketAddr};

/// A condition over atom numbers.
#[derive(Debug)]
enum Expr {
    True,
    Atom(u32),
    Not(Box<Expr>),
    All(Vec<Expr>),
    Any(Vec<Expr>),
}

/// The outcome of the rules that can be decided at accept, before any byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptVerdict {
    /// Decided on the addresses alone.
    Decided(Verdict),
    /// A rule that looks at the ClientHello comes first: inspect, then [`RouteTable::decide`].
    NeedHello,
}

/// A frontend's rules compiled for fast first-match decisions.
#[derive(Debug)]
pub struct RouteTable {
    rules: Vec<Rule>,
    exprs: Vec<Expr>,
    atoms: Vec<Test>,
    indexed: Vec<bool>,
    names: NameIndex,
    sources: PrefixTable,
    destinations: PrefixTable,
    /// For each indexed atom, the rules that mention it, ascending.
    atom_rules: Vec<Vec<u32>>,
    /// Rules that can hold with no indexed atom matched, ascending.
    always: Vec<u32>,
    /// The first rule that needs the ClientHello.
    first_hello_rule: Option<usize>,
}

/// Matched indexed atoms of one decision, on the stack for the usual handful.
struct Matched {
    inline: [u32; 16],
    len: usize,
    spill: Vec<u32>,
}

impl Matched {
    fn new() -> Self {
        Matched {
            inline: [0; 16],
            len: 0,
            spill: Vec::new(),
        }
    }
    fn push(&mut self, atom: u32) {
        if self.len < self.inline.len() {
            self.inline[self.len] = atom;
            self.len += 1;
        } else {
            self.spill.push(atom);
        }
    }
    fn contains(&self, atom: u32) -> bool {
        self.inline[..self.len].contains(&atom) || self.spill.contains(&atom)
    }
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.inline[..self.len].iter().chain(&self.spill).copied()
    }
}

/// Three-valued truth for compile-time classification.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tri {
    False,
    True,
    Unknown,
}

fn is_indexed(t: &Test) -> bool {
    match t {
        Test::ServerName(m) => matches!(m.method, NameMethod::Exact | NameMethod::Wildcard),
        Test::Source(_) | Test::Destination(_) => true,
        _ => false,
    }
}

/// Builds the atom table and the expressions, sharing equal tests.
#[derive(Default)]
struct Builder {
    atoms: Vec<Test>,
    ids: FastMap<Test, u32>,
}

impl Builder {
    fn expr(&mut self, c: &Condition) -> Expr {
        match c {
            Condition::Always => Expr::True,
            Condition::Test(t) => Expr::Atom(self.atom(t)),
            Condition::Not(c) => Expr::Not(Box::new(self.expr(c))),
            Condition::All(cs) => Expr::All(cs.iter().map(|c| self.expr(c)).collect()),
            Condition::Any(cs) => Expr::Any(cs.iter().map(|c| self.expr(c)).collect()),
        }
    }

    fn atom(&mut self, t: &Test) -> u32 {
        if let Some(&id) = self.ids.get(t) {
            return id;
        }
        let id = self.atoms.len() as u32;
        self.atoms.push(t.clone());
        self.ids.insert(t.clone(), id);
        id
    }
}

fn tri(e: &Expr, indexed: &[bool]) -> Tri {
    match e {
        Expr::True => Tri::True,
        Expr::Atom(a) if indexed[*a as usize] => Tri::False,
        Expr::Atom(_) => Tri::Unknown,
        Expr::Not(e) => match tri(e, indexed) {
            Tri::False => Tri::True,
            Tri::True => Tri::False,
            Tri::Unknown => Tri::Unknown,
        },
        Expr::All(es) => es
            .iter()
            .fold(Tri::True, |acc, e| match (acc, tri(e, indexed)) {
                (Tri::False, _) | (_, Tri::False) => Tri::False,
                (Tri::True, Tri::True) => Tri::True,
                _ => Tri::Unknown,
            }),
        Expr::Any(es) => es
            .iter()
            .fold(Tri::False, |acc, e| match (acc, tri(e, indexed)) {
                (Tri::True, _) | (_, Tri::True) => Tri::True,
                (Tri::False, Tri::False) => Tri::False,
                _ => Tri::Unknown,
            }),
    }
}

fn atoms_of(e: &Expr, out: &mut Vec<u32>) {
    match e {
        Expr::True => {}
        Expr::Atom(a) => out.push(*a),
        Expr::Not(e) => atoms_of(e, out),
        Expr::All(es) | Expr::Any(es) => es.iter().for_each(|e| atoms_of(e, out)),
    }
}

impl RouteTable {
    /// Compiles `rules` (kept for their actions and labels).
    pub fn compile(rules: Vec<Rule>) -> RouteTable {
        let mut b = Builder::default();
        let exprs: Vec<Expr> = rules.iter().map(|r| b.expr(&r.when)).collect();
        let atoms = b.atoms;
        let indexed: Vec<bool> = atoms.iter().map(is_indexed).collect();
        let mut names = NameIndex::default();
        let mut src: Vec<(Cidr, u32)> = Vec::new();
        let mut dst: Vec<(Cidr, u32)> = Vec::new();
        for (id, t) in atoms.iter().enumerate() {
            let id = id as u32;
            match t {
                Test::ServerName(m) if m.method == NameMethod::Exact => m
                    .values
                    .iter()
                    .for_each(|v| names.add_exact(v, m.ignore_case, id)),
                Test::ServerName(m) if m.method == NameMethod::Wildcard => m
                    .values
                    .iter()
                    .for_each(|v| names.add_wildcard(v, m.ignore_case, id)),
                Test::Source(nets) => src.extend(nets.iter().map(|n| (*n, id))),
                Test::Destination(nets) => dst.extend(nets.iter().map(|n| (*n, id))),
                _ => {}
            }
        }
        let mut atom_rules = vec![Vec::new(); atoms.len()];
        let mut always = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            if tri(e, &indexed) == Tri::False {
                let mut mine = Vec::new();
                atoms_of(e, &mut mine);
                mine.sort_unstable();
                mine.dedup();
                for a in mine.into_iter().filter(|&a| indexed[a as usize]) {
                    atom_rules[a as usize].push(i as u32);
                }
            } else {
                always.push(i as u32);
            }
        }
        let first_hello_rule = rules.iter().position(|r| r.when.needs_hello());
        RouteTable {
            exprs,
            indexed,
            names,
            sources: PrefixTable::build(&src),
            destinations: PrefixTable::build(&dst),
            atom_rules,
            always,
            first_hello_rule,
            atoms,
            rules,
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether some rule looks at the ClientHello (inspection must wait for it).
    pub fn needs_hello(&self) -> bool {
        self.first_hello_rule.is_some()
    }

    /// The decision at accept, on the addresses alone: decided when a rule before the first
    /// one that needs the ClientHello holds, or when no rule needs it.
    pub fn decide_at_accept(&self, source: IpAddr, destination: SocketAddr) -> AcceptVerdict {
        let limit = self.first_hello_rule.unwrap_or(usize::MAX);
        if limit == 0 {
            return AcceptVerdict::NeedHello;
        }
        let facts = Facts {
            source,
            destination,
            hello: HelloFacts::Nothing,
        };
        match self.first_match(&facts, limit) {
            Some(i) => AcceptVerdict::Decided(Verdict::Rule(i)),
            None if self.first_hello_rule.is_none() => AcceptVerdict::Decided(Verdict::Default),
            None => AcceptVerdict::NeedHello,
        }
    }

    /// The first rule that holds for `facts`, as [`super::decide_linear`] would find it.
    pub fn decide(&self, facts: &Facts<'_>) -> Verdict {
        self.first_match(facts, usize::MAX)
            .map_or(Verdict::Default, Verdict::Rule)
    }

    fn first_match(&self, facts: &Facts<'_>, limit: usize) -> Option<usize> {
        let mut matched = Matched::new();
        if let HelloFacts::Hello(h) = &facts.hello {
            if let Some(name) = h.server_name() {
                self.names.lookup(name, &mut |a| matched.push(a));
            }
        }
        self.sources
            .lookup(facts.source)
            .iter()
            .for_each(|&a| matched.push(a));
        self.destinations
            .lookup(facts.destination.ip())
            .iter()
            .for_each(|&a| matched.push(a));
        let mut best = limit;
        let scan = |list: &[u32], best: &mut usize| {
            for &r in list {
                let r = r as usize;
                if r >= *best {
                    return;
                }
                if self.eval(&self.exprs[r], facts, &matched) {
                    *best = r;
                    return;
                }
            }
        };
        scan(&self.always, &mut best);
        for a in matched.iter() {
            scan(&self.atom_rules[a as usize], &mut best);
        }
        (best < limit).then_some(best)
    }

    fn eval(&self, e: &Expr, facts: &Facts<'_>, matched: &Matched) -> bool {
        match e {
            Expr::True => true,
            Expr::Atom(a) if self.indexed[*a as usize] => matched.contains(*a),
            Expr::Atom(a) => self.atoms[*a as usize].eval(facts),
            Expr::Not(e) => !self.eval(e, facts, matched),
            Expr::All(es) => es.iter().all(|e| self.eval(e, facts, matched)),
            Expr::Any(es) => es.iter().any(|e| self.eval(e, facts, matched)),
        }
    }
}

#[cfg(test)]
mod tests;
