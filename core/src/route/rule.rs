//! An ordered rule: a condition and what to do when it holds. The first rule that holds
//! decides; [`decide_linear`] is that meaning written plainly.

use super::condition::Condition;
use super::facts::Facts;

/// What a rule does with a connection whose condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteAction {
    /// Send it to the backend with this index in the frontend's backend list.
    UseBackend(usize),
    /// Refuse it: close without connecting anywhere.
    Reject,
    /// Stop here and send it to the frontend's default backend.
    Accept,
}

/// One rule of a frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// When it applies.
    pub when: Condition,
    /// What it does.
    pub action: RouteAction,
    /// How logs name it (`route=3` when empty: its 1-based position).
    pub label: String,
}

/// Which rule decided a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The rule at this index held.
    Rule(usize),
    /// No rule held: the default backend.
    Default,
}

/// The first rule whose condition holds, by a plain scan.
pub fn decide_linear(rules: &[Rule], facts: &Facts<'_>) -> Verdict {
    rules
        .iter()
        .position(|r| r.when.eval(facts))
        .map_or(Verdict::Default, Verdict::Rule)
}
