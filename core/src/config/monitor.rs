//! HAProxy's `monitor fail if|unless COND` on the monitor endpoint, in the one form tether
//! evaluates: a comparison of `nbsrv(BACKEND)` (the backend's usable servers) with a number,
//! written inline (`{ nbsrv(app) lt 1 }`) or through an `acl`. True, the `monitor-uri` answers
//! 503 instead of 200, so an outside balancer stops sending traffic to a process that has no
//! server left to send it to.
//!
//! ```toml
//! [[stats.monitor-fail]]
//! backend = "app"
//! op = "lt"        # lt | le | eq | ge | gt
//! value = 1
//! unless = false   # `monitor fail unless ...`
//! ```

use serde::{Deserialize, Serialize};

/// One `monitor fail` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitorFail {
    /// The backend whose usable servers are counted (`nbsrv(BACKEND)`).
    pub backend: String,
    /// How the count compares with `value`.
    pub op: Compare,
    /// The number it is compared with.
    pub value: u32,
    /// `monitor fail unless`: fail when the comparison is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unless: bool,
}

/// HAProxy's integer comparison operators in an ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compare {
    /// `lt`: less than.
    Lt,
    /// `le`: at most.
    Le,
    /// `eq`: equal.
    Eq,
    /// `ge`: at least.
    Ge,
    /// `gt`: greater than.
    Gt,
}

impl Compare {
    /// The operator HAProxy writes as `word`.
    pub fn parse(word: &str) -> Option<Compare> {
        Some(match word {
            "lt" => Compare::Lt,
            "le" => Compare::Le,
            "eq" => Compare::Eq,
            "ge" => Compare::Ge,
            "gt" => Compare::Gt,
            _ => return None,
        })
    }
}

impl MonitorFail {
    /// Whether the monitor answers 503, the backend having `nbsrv` usable servers.
    pub fn fails(&self, nbsrv: u32) -> bool {
        let holds = match self.op {
            Compare::Lt => nbsrv < self.value,
            Compare::Le => nbsrv <= self.value,
            Compare::Eq => nbsrv == self.value,
            Compare::Ge => nbsrv >= self.value,
            Compare::Gt => nbsrv > self.value,
        };
        holds != self.unless
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_and_unless() {
        let mut m = MonitorFail {
            backend: "app".into(),
            op: Compare::Lt,
            value: 1,
            unless: false,
        };
        assert!(m.fails(0));
        assert!(!m.fails(1));
        m.unless = true;
        assert!(!m.fails(0));
        assert!(m.fails(2));
        m = MonitorFail {
            op: Compare::parse("ge").unwrap(),
            value: 2,
            unless: false,
            ..m
        };
        assert!(m.fails(2) && !m.fails(1));
        assert_eq!(Compare::parse("ne"), None);
    }
}
