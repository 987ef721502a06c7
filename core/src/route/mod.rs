//! Routing and filtering of connections: which backend serves a connection, or whether it is
//! refused, from its addresses and what its ClientHello offers.
//!
//! A frontend's rules are an ordered list of [`Rule`]s, each a [`Condition`] and an
//! [`RouteAction`]; the first rule whose condition holds decides, and a connection no rule
//! decides goes to the frontend's default backend. [`RouteTable::compile`] turns the list into
//! indexes once per configuration (exact names in a hash map, `*.suffix` names in a
//! reversed-label trie, addresses in a prefix table), so a decision costs about the length of
//! the server name, not the number of rules, while giving exactly what [`decide_linear`] — the
//! plain scan that defines the semantics — gives.
//!
//! Rules that only look at addresses are decided at accept, before a byte is read
//! ([`RouteTable::decide_at_accept`]); the others once inspection has parsed the ClientHello.

mod cidr;
mod condition;
mod facts;
mod hasher;
mod matcher;
mod names;
mod prefix;
mod regex;
mod rule;

pub use cidr::{Cidr, CidrError};
pub use condition::{Condition, NameMatch, NameMethod, Test};
pub use facts::{Facts, HelloFacts};
pub use matcher::{AcceptVerdict, RouteTable};
pub use regex::{NameRegex, RegexError};
pub use rule::{decide_linear, RouteAction, Rule, Verdict};
