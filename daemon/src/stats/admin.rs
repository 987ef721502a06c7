//! Operator actions from the stats page, as HAProxy's stats admin: put servers in ready, drain or
//! maintenance, or change their weight. A form names the backend (`b`), one or more servers
//! (`s`), the `action` and, for `weight`, the new `weight`.

use tether_core::engine::runtime::Runtime;
use tether_core::server::{AdminState, MAX_WEIGHT};

/// What an admin form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequest {
    /// Backend name.
    pub backend: String,
    /// Server names.
    pub servers: Vec<String>,
    /// The action.
    pub action: AdminAction,
}

/// One operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Back to normal traffic.
    Ready,
    /// No new balanced traffic; sticky clients still land.
    Drain,
    /// No new traffic at all.
    Maint,
    /// Set the weight (0..=256).
    Weight(u32),
}

/// Why an admin form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A field is missing or malformed.
    #[error("{0}")]
    BadForm(String),
    /// The backend does not exist.
    #[error("no backend named {0:?}")]
    UnknownBackend(String),
    /// A server does not exist.
    #[error("backend {backend} has no server named {server:?}")]
    UnknownServer {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
    },
}

impl AdminRequest {
    /// Reads the form fields.
    pub fn from_form(fields: &[(String, String)]) -> Result<Self, AdminError> {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
        let backend = get("b")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| AdminError::BadForm("missing backend field b".into()))?
            .to_string();
        let servers: Vec<String> = fields
            .iter()
            .filter(|(k, v)| k == "s" && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect();
        if servers.is_empty() {
            return Err(AdminError::BadForm("missing server field s".into()));
        }
        let action = match get("action") {
            Some("ready") => AdminAction::Ready,
            Some("drain") => AdminAction::Drain,
            Some("maint") => AdminAction::Maint,
            Some("weight") => {
                let w = get("weight")
                    .and_then(|w| w.parse::<u32>().ok())
                    .filter(|w| *w <= MAX_WEIGHT)
                    .ok_or_else(|| {
                        AdminError::BadForm(format!("weight must be 0..={MAX_WEIGHT}"))
                    })?;
                AdminAction::Weight(w)
            }
            other => {
                return Err(AdminError::BadForm(format!(
                    "action {:?} is not one of ready, drain, maint, weight",
                    other.unwrap_or("")
                )))
            }
        };
        Ok(AdminRequest {
            backend,
            servers,
            action,
        })
    }

    /// Applies the action to every named server (all or nothing: names are checked first).
    pub fn apply(&self, runtime: &Runtime) -> Result<usize, AdminError> {
        let backend = runtime
            .backends
            .get(&self.backend)
            .ok_or_else(|| AdminError::UnknownBackend(self.backend.clone()))?;
        let ids = self
            .servers
            .iter()
            .map(|s| {
                backend
                    .server_id(s)
                    .ok_or_else(|| AdminError::UnknownServer {
                        backend: self.backend.clone(),
                        server: s.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (admin, weight) = match self.action {
            AdminAction::Ready => (Some(AdminState::Ready), None),
            AdminAction::Drain => (Some(AdminState::Drain), None),
            AdminAction::Maint => (Some(AdminState::Maint), None),
            AdminAction::Weight(w) => (None, Some(w)),
        };
        for id in &ids {
            backend.set_admin(*id, admin, weight);
            tracing::info!(backend = %self.backend, server = %backend.servers[id.index()].name, action = ?self.action, "admin action");
        }
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_haproxy_like_forms() {
        let r = AdminRequest::from_form(&form(&[
            ("b", "app"),
            ("s", "s1"),
            ("s", "s2"),
            ("action", "drain"),
        ]))
        .unwrap();
        assert_eq!(r.servers, ["s1", "s2"]);
        assert_eq!(r.action, AdminAction::Drain);
        let r = AdminRequest::from_form(&form(&[
            ("b", "app"),
            ("s", "s1"),
            ("action", "weight"),
            ("weight", "7"),
        ]))
        .unwrap();
        assert_eq!(r.action, AdminAction::Weight(7));
    }

    #[test]
    fn refuses_incomplete_or_out_of_range_forms() {
        for f in [
            form(&[("s", "s1"), ("action", "drain")]),
            form(&[("b", "app"), ("action", "drain")]),
            form(&[("b", "app"), ("s", "s1"), ("action", "shutdown")]),
            form(&[
                ("b", "app"),
                ("s", "s1"),
                ("action", "weight"),
                ("weight", "257"),
            ]),
            form(&[("b", "app"), ("s", "s1"), ("action", "weight")]),
        ] {
            assert!(AdminRequest::from_form(&f).is_err(), "{f:?}");
        }
    }
}
