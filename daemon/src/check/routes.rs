//! What `check` says about route rules that load but will not do what they read: a rule an
//! earlier one always decides first, a name with capitals compared with case, networks that
//! overlap under different actions, a backend no rule sends anything to. Shared by native
//! configs and imported haproxy.cfg files (whose composed rules point back at their lines).

use crate::finding::{Finding, Severity};
use tether_core::config::route::compile_rules;
use tether_core::config::Config;
use tether_core::route::{Cidr, Condition, NameMethod, RouteAction, Rule, Test};

/// Most overlap findings per frontend (a list file can hold thousands).
const MAX_OVERLAPS: usize = 10;

/// Whether `c` can only hold when a ClientHello was read.
fn requires_hello(c: &Condition) -> bool {
    match c {
        Condition::Always | Condition::Not(_) => false,
        Condition::Test(t) => !matches!(
            t,
            Test::Source(_) | Test::Destination(_) | Test::DestinationPort(_) | Test::NotTls
        ),
        Condition::All(cs) => cs.iter().any(requires_hello),
        Condition::Any(cs) => !cs.is_empty() && cs.iter().all(requires_hello),
    }
}

fn exact_names(c: &Condition) -> Option<(bool, &[String])> {
    match c {
        Condition::Test(Test::ServerName(m)) if m.method == NameMethod::Exact => {
            Some((m.ignore_case, &m.values))
        }
        _ => None,
    }
}

fn sources(c: &Condition) -> Option<&[Cidr]> {
    match c {
        Condition::Test(Test::Source(nets)) => Some(nets),
        _ => None,
    }
}

/// Whether every connection `later` holds for is one `earlier` holds for (a sound subset of the
/// cases: true means certainly).
fn covers(earlier: &Condition, later: &Condition) -> bool {
    if earlier == &Condition::Always || earlier == later {
        return true;
    }
    if earlier == &Condition::Test(Test::ClientHello) && requires_hello(later) {
        return true;
    }
    if let (Some((ic_a, a)), Some((ic_b, b))) = (exact_names(earlier), exact_names(later)) {
        let has = |n: &String| {
            a.iter().any(|x| {
                if ic_a {
                    x.eq_ignore_ascii_case(n)
                } else {
                    x == n
                }
            })
        };
        return ic_a == ic_b && b.iter().all(has);
    }
    if let (Some(a), Some(b)) = (sources(earlier), sources(later)) {
        return b.iter().all(|nb| {
            a.iter().any(|na| {
                na.overlaps(nb) && na.range().0 <= nb.range().0 && nb.range().1 <= na.range().1
            })
        });
    }
    false
}

fn action_text(r: &Rule, backends: &[&str]) -> String {
    match r.action {
        RouteAction::UseBackend(b) => {
            format!("use-backend {}", backends.get(b).copied().unwrap_or("?"))
        }
        RouteAction::Reject => "reject".into(),
        RouteAction::Accept => "accept".into(),
    }
}

fn walk_names<'c>(c: &'c Condition, out: &mut Vec<&'c str>) {
    match c {
        Condition::Test(Test::ServerName(m)) if !m.ignore_case => out.extend(
            m.values
                .iter()
                .filter(|v| v.bytes().any(|b| b.is_ascii_uppercase()))
                .map(String::as_str),
        ),
        Condition::Not(c) => walk_names(c, out),
        Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| walk_names(c, out)),
        _ => {}
    }
}

/// Every route finding of `config`; `line_of` places a key path (`frontend[0].route[2]`).
pub fn route_findings(
    file: &str,
    config: &Config,
    line_of: &dyn Fn(&str) -> usize,
) -> Vec<Finding> {
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let mut out = Vec::new();
    let mut reached: Vec<&str> = Vec::new();
    for (fi, f) in config.frontends.iter().enumerate() {
        reached.push(&f.backend);
        let Ok(rules) = compile_rules(&f.routes, &names) else {
            continue;
        };
        let at = |j: usize| line_of(&format!("frontend[{fi}].route[{j}]"));
        for r in &rules {
            if let RouteAction::UseBackend(b) = r.action {
                reached.push(names[b]);
            }
        }
        shadowed(file, &rules, &names, &at, &mut out);
        for (j, r) in rules.iter().enumerate() {
            let mut upper = Vec::new();
            walk_names(&r.when, &mut upper);
            for name in upper {
                out.push(Finding::new(
                    Severity::Warning,
                    file,
                    at(j),
                    format!("server name `{name}` has capitals and is compared with case"),
                    "clients may send server names in any case and DNS ignores case; compared with \
                     case (no -i in HAProxy, ignore-case = false), this rule misses the same name \
                     in other capitals, and most clients send it in lowercase",
                    format!("add -i (HAProxy), or write server-name = [\"{}\"]", name.to_ascii_lowercase()),
                ));
            }
        }
        overlaps(file, &rules, &names, &at, &mut out);
    }
    for (bi, b) in config.backends.iter().enumerate() {
        if !reached.contains(&b.name.as_str()) {
            out.push(Finding::new(
                Severity::Warning,
                file,
                line_of(&format!("backend[{bi}]")),
                format!("backend {} receives no connection", b.name),
                "no frontend has it as its default backend and no route rule sends anything to it",
                format!("add a rule: use-backend = \"{}\" (use_backend {} if ...), or remove the backend", b.name, b.name),
            ));
        }
    }
    out
}

/// Rules an earlier rule with another action always decides first.
fn shadowed(
    file: &str,
    rules: &[Rule],
    names: &[&str],
    at: &dyn Fn(usize) -> usize,
    out: &mut Vec<Finding>,
) {
    for (j, r) in rules.iter().enumerate() {
        let Some(i) = (0..j).find(|&i| covers(&rules[i].when, &r.when)) else {
            continue;
        };
        // An imported rule is copied under each `accept` before it; a copy that fires
        // elsewhere is not dead.
        let fires_elsewhere = (0..j).any(|k| rules[k].action == r.action && at(k) == at(j));
        if rules[i].action == r.action || fires_elsewhere {
            continue;
        }
        out.push(Finding::new(
            Severity::Warning,
            file,
            at(j),
            format!("rule `{}` never fires: an earlier rule (line {}) decides every connection it matches", action_text(r, names), at(i)),
            format!(
                "the first rule that holds decides, and the earlier one ({}) holds whenever this one \
                 does; HAProxy stops at the first `tcp-request content accept`, so a reject written \
                 after `accept if {{ req_ssl_hello_type 1 }}` never refuses anything",
                action_text(&rules[i], names)
            ),
            "move this rule above the earlier one (e.g. the reject before the accept)",
        ));
    }
}

/// Source networks that overlap in rules with different actions (the earlier rule wins there).
fn overlaps(
    file: &str,
    rules: &[Rule],
    names: &[&str],
    at: &dyn Fn(usize) -> usize,
    out: &mut Vec<Finding>,
) {
    let mut nets: Vec<(u128, u128, usize, Cidr)> = Vec::new();
    for (j, r) in rules.iter().enumerate() {
        if let Some(list) = sources(&r.when) {
            nets.extend(list.iter().map(|n| (n.range().0, n.range().1, j, *n)));
        }
    }
    nets.sort_unstable_by_key(|n| (n.0, std::cmp::Reverse(n.1)));
    // CIDRs nest or are disjoint: the enclosing ones of each network form a stack.
    let mut stack: Vec<(u128, u128, usize, Cidr)> = Vec::new();
    let mut found = 0;
    for n in nets {
        while stack.last().is_some_and(|s| s.1 < n.0) {
            stack.pop();
        }
        if let Some(outer) = stack
            .iter()
            .rev()
            .find(|s| rules[s.2].action != rules[n.2].action)
        {
            if found < MAX_OVERLAPS {
                let (first, second) = if outer.2 < n.2 {
                    (outer, &n)
                } else {
                    (&n, outer)
                };
                out.push(Finding::new(
                    Severity::Warning,
                    file,
                    at(second.2),
                    format!("{} here overlaps {} (line {}) with a different action", second.3, first.3, at(first.2)),
                    format!("addresses in both go where the earlier rule says ({}), not `{}`", action_text(&rules[first.2], names), action_text(&rules[second.2], names)),
                    "make the networks disjoint, or order the rules so the narrower network comes first",
                ));
            }
            found += 1;
        }
        stack.push(n);
    }
}

#[cfg(test)]
mod tests;
