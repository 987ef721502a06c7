//! Several backends behind the simulated frontend, each fed with its own share of the servers.
//!
//! A scenario that writes `[[balancer.config.backend]]` (an array) instead of one
//! `[balancer.config.backend]` table defines several backends; each says how many of the
//! scenario's servers it gets with the simulator-only key `servers = N` (stripped before the
//! tether configuration is loaded). The frontend's `[[balancer.config.frontend.route]]` rules
//! are the daemon's own route configuration, compiled and run by the real engine.
//!
//! Servers are dealt out in order: the first backend gets `server-00`.. up to its share, the
//! next the following ones, and so on; servers added later by an event join the last backend.

use std::collections::BTreeMap;

use crate::scenario::Scenario;
use crate::SimError;

/// The simulator-only key of a backend table: how many simulated servers it gets.
pub const SERVERS_KEY: &str = "servers";

/// Which backends the simulated servers feed, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPlan {
    /// Backend names, in the order written.
    pub names: Vec<String>,
    /// Servers each backend gets at start (same order).
    pub shares: Vec<usize>,
}

impl BackendPlan {
    /// The plan a scenario's `[balancer.config]` writes; `None` when it has one backend table
    /// (every server feeds that backend, the simulator's original layout).
    pub fn from_config(value: Option<&toml::Value>) -> Result<Option<Self>, SimError> {
        let Some(toml::Value::Array(list)) = value.and_then(|v| v.get("backend")) else {
            return Ok(None);
        };
        let mut plan = BackendPlan {
            names: Vec::new(),
            shares: Vec::new(),
        };
        for (i, be) in list.iter().enumerate() {
            let at = format!("[[balancer.config.backend]] #{}", i + 1);
            let name = be
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| {
                    SimError::Scenario(format!("{at}: no name; write name = \"api\""))
                })?;
            let share = be
                .get(SERVERS_KEY)
                .and_then(toml::Value::as_integer)
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    SimError::Scenario(format!(
                        "{at} ({name}): needs servers = N (N >= 1), how many simulated servers it gets"
                    ))
                })?;
            plan.names.push(name.to_owned());
            plan.shares.push(share as usize);
        }
        if plan.names.is_empty() {
            return Err(SimError::Scenario(
                "[[balancer.config.backend]] is empty; define at least one backend".into(),
            ));
        }
        Ok(Some(plan))
    }

    /// The plan of `scenario`, checked against its server count.
    pub fn of_scenario(scenario: &Scenario) -> Result<Option<Self>, SimError> {
        let plan = Self::from_config(scenario.balancer.config.as_ref())?;
        if let Some(p) = &plan {
            let total: usize = p.shares.iter().sum();
            if total != scenario.servers.count {
                return Err(SimError::Scenario(format!(
                    "the backends' servers add up to {total} but [servers] count = {}; make them equal",
                    scenario.servers.count
                )));
            }
        }
        Ok(plan)
    }

    /// The backend (index) of the server started at `position` (0-based, in start order).
    pub fn backend_of(&self, position: usize) -> usize {
        let mut end = 0;
        for (b, share) in self.shares.iter().enumerate() {
            end += share;
            if position < end {
                return b;
            }
        }
        self.shares.len() - 1
    }

    /// Server name → backend name, for `servers` servers started in order.
    pub fn server_backends(&self, servers: usize) -> BTreeMap<String, String> {
        (0..servers)
            .map(|i| {
                let b = self.backend_of(i);
                (crate::server_name(i), self.names[b].clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn shares_deal_servers_in_order_and_late_ones_join_the_last() {
        let v = config(
            "[[backend]]\nname = \"api\"\nservers = 2\n[[backend]]\nname = \"web\"\nservers = 1\n",
        );
        let plan = BackendPlan::from_config(Some(&v)).unwrap().unwrap();
        assert_eq!(plan.names, ["api", "web"]);
        let owners: Vec<usize> = (0..5).map(|i| plan.backend_of(i)).collect();
        assert_eq!(owners, [0, 0, 1, 1, 1]);
        assert_eq!(plan.server_backends(3)["server-02"], "web");
    }

    #[test]
    fn one_backend_table_is_no_plan_and_a_missing_share_is_an_error() {
        let one = config("[backend]\nbalance = \"roundrobin\"\n");
        assert_eq!(BackendPlan::from_config(Some(&one)).unwrap(), None);
        let bad = config("[[backend]]\nname = \"api\"\n");
        let err = BackendPlan::from_config(Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("servers = N"), "{err}");
    }
}
