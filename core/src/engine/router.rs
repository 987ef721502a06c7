//! A frontend's compiled route rules with the backends they name: what the connection state
//! machine asks which backend serves a connection, or whether it is refused.

use std::sync::Arc;

use super::backend::Backend;
use crate::route::{RouteAction, RouteTable, Verdict};

/// The rules of one frontend, built once per configuration (a reload builds a new one and the
/// runtime swap replaces it atomically with everything else).
#[derive(Debug)]
pub struct Router {
    /// The compiled rules.
    pub table: RouteTable,
    /// The backends `use-backend` actions index.
    pub backends: Vec<Arc<Backend>>,
}

/// What a verdict means for a connection.
#[derive(Debug, Clone, Copy)]
pub enum Routed<'a> {
    /// Serve it with this backend (`None`: the frontend's default).
    Serve(Option<&'a Backend>),
    /// Refuse it.
    Refuse,
}

impl Router {
    /// The backend (or refusal) a verdict names.
    pub fn resolve(&self, v: Verdict) -> Routed<'_> {
        let Verdict::Rule(i) = v else {
            return Routed::Serve(None);
        };
        match self.table.rules()[i].action {
            RouteAction::UseBackend(b) => Routed::Serve(self.backends.get(b).map(|b| &**b)),
            RouteAction::Accept => Routed::Serve(None),
            RouteAction::Reject => Routed::Refuse,
        }
    }

    /// How logs name the rule behind a verdict: its name, else its 1-based position.
    pub fn label(&self, v: Verdict) -> Option<String> {
        let Verdict::Rule(i) = v else {
            return None;
        };
        let label = &self.table.rules()[i].label;
        Some(if label.is_empty() {
            (i + 1).to_string()
        } else {
            label.clone()
        })
    }
}
