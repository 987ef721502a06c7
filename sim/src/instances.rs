//! The balancer instances of a run: one [`BalancerHost`] per turmoil host, and what the report
//! needs from all of them together (tables summed, affinity outcomes merged, table agreement).
//!
//! A single instance is the classic deployment and reads exactly as before: its totals and
//! outcomes are passed through unchanged. With several, each runs its own process with its own
//! tables on its own host (`lb`, `lb-1`...), so whatever one learns the others do not know
//! unless replication carries it.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::balancer::{Admin, BalancerHost};
use crate::frontdoor::instance_host;
use crate::metrics::{AffinityCounts, TableTotals};
use crate::SimError;

/// Builds the software of one more balancer instance (each has its own state).
pub type MakeBalancer = Box<dyn Fn() -> Result<Rc<dyn BalancerHost>, SimError>>;

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Running and announced (or draining for an upgrade).
    Up,
    /// Crashed: no process, no tables.
    Crashed,
    /// Withdrawn for good; it still serves the connections it had.
    Removed,
}

/// One balancer instance.
pub struct Instance {
    /// Its turmoil host (and name in the report).
    pub host: String,
    /// Its software.
    pub balancer: Rc<dyn BalancerHost>,
    /// Up, crashed or removed.
    pub state: InstanceState,
}

/// Every balancer instance of the run, in order of creation.
pub struct Instances {
    list: Vec<Instance>,
    make: MakeBalancer,
}

impl Instances {
    /// `count` instances built by `make`.
    pub fn new(count: usize, make: MakeBalancer) -> Result<Self, SimError> {
        let mut me = Instances {
            list: Vec::with_capacity(count),
            make,
        };
        for _ in 0..count {
            me.add()?;
        }
        Ok(me)
    }

    /// Builds one more instance (not started); returns its index.
    pub fn add(&mut self) -> Result<usize, SimError> {
        let i = self.list.len();
        self.list.push(Instance {
            host: instance_host(i),
            balancer: (self.make)()?,
            state: InstanceState::Up,
        });
        Ok(i)
    }

    /// All instances.
    pub fn all(&self) -> &[Instance] {
        &self.list
    }

    /// Instance `i`, or a scenario error naming it.
    pub fn get(&self, i: usize) -> Result<&Instance, SimError> {
        self.list.get(i).ok_or_else(|| {
            SimError::Scenario(format!(
                "event names balancer instance {i}, which does not exist"
            ))
        })
    }

    /// Sets instance `i`'s state.
    pub fn set_state(&mut self, i: usize, state: InstanceState) {
        if let Some(x) = self.list.get_mut(i) {
            x.state = state;
        }
    }

    /// The hosts of all instances.
    pub fn hosts(&self) -> Vec<String> {
        self.list.iter().map(|x| x.host.clone()).collect()
    }

    /// Report name of the balancer software (the first instance's).
    pub fn name(&self) -> String {
        self.list
            .first()
            .map_or_else(|| "none".to_owned(), |x| x.balancer.name())
    }

    /// Applies an admin operation on every instance.
    pub fn admin(&self, op: &Admin) {
        for x in &self.list {
            x.balancer.admin(op);
        }
    }

    /// Stick-table totals summed over the instances (`None` without tables).
    pub fn table_totals(&self) -> Option<TableTotals> {
        let mut all: Option<TableTotals> = None;
        for t in self.list.iter().filter_map(|x| x.balancer.table_totals()) {
            all = Some(match all {
                None => t,
                Some(a) => a.plus(&t),
            });
        }
        all
    }

    /// Stick-table entries summed over the instances.
    pub fn table_occupancy(&self) -> Option<u64> {
        let each: Vec<u64> = self
            .list
            .iter()
            .filter_map(|x| x.balancer.table_occupancy())
            .collect();
        (!each.is_empty()).then(|| each.iter().sum())
    }

    /// Affinity outcomes merged over the instances.
    pub fn affinity_counts(&self) -> Option<AffinityCounts> {
        let mut all: Option<AffinityCounts> = None;
        for c in self
            .list
            .iter()
            .filter_map(|x| x.balancer.affinity_counts())
        {
            match all.as_mut() {
                None => all = Some(c),
                Some(a) => a.merge(&c),
            }
        }
        all
    }

    /// Servers any instance considers DOWN, sorted.
    pub fn down_servers(&self) -> Vec<String> {
        let mut down: Vec<String> = self
            .list
            .iter()
            .flat_map(|x| x.balancer.down_servers())
            .collect();
        down.sort();
        down.dedup();
        down
    }

    /// Stick-table updates of every running instance since the last call (replication).
    pub fn replication_updates(&self) -> Vec<(Vec<u8>, bool)> {
        self.list
            .iter()
            .filter(|x| x.state == InstanceState::Up)
            .flat_map(|x| x.balancer.replication_updates())
            .collect()
    }

    /// How far the running instances' tables agree (see [`agreement`]); `None` without tables.
    pub fn table_agreement(&self) -> Option<f64> {
        let tables: Vec<Vec<(Vec<u8>, String)>> = self
            .list
            .iter()
            .filter(|x| x.state == InstanceState::Up)
            .filter_map(|x| x.balancer.table_keys())
            .collect();
        (!tables.is_empty()).then(|| agreement(&tables))
    }
}

/// The share of keys (over all tables' keys) that every table holds, sticking to the same
/// server: 1.0 when the tables are identical (or all empty), near 1/N when each key lives in one
/// of N tables only.
pub fn agreement(tables: &[Vec<(Vec<u8>, String)>]) -> f64 {
    let mut seen: BTreeMap<&[u8], (usize, Option<&str>)> = BTreeMap::new();
    for table in tables {
        for (key, server) in table {
            let e = seen.entry(key.as_slice()).or_insert((0, Some(server)));
            e.0 += 1;
            if e.1 != Some(server.as_str()) {
                e.1 = None;
            }
        }
    }
    if seen.is_empty() {
        return 1.0;
    }
    let agreed = seen
        .values()
        .filter(|(n, server)| *n == tables.len() && server.is_some())
        .count();
    crate::metrics::ratio(agreed as u64, seen.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(entries: &[(u8, &str)]) -> Vec<(Vec<u8>, String)> {
        entries
            .iter()
            .map(|(k, s)| (vec![*k], (*s).to_owned()))
            .collect()
    }

    #[test]
    fn agreement_counts_keys_every_table_maps_alike() {
        let a = table(&[(1, "s1"), (2, "s2")]);
        let b = table(&[(1, "s1"), (2, "s3"), (3, "s1")]);
        // Key 1 agrees; key 2 maps differently; key 3 is missing from a.
        assert_eq!(agreement(&[a.clone(), b]), 0.3333);
        assert_eq!(agreement(&[a.clone(), a.clone()]), 1.0);
        assert_eq!(agreement(&[a]), 1.0);
        assert_eq!(agreement(&[vec![], vec![]]), 1.0);
    }

    proptest! {
        #[test]
        fn agreement_is_a_share_and_ignores_table_order(
            tables in proptest::collection::vec(
                proptest::collection::btree_map(0u8..20, 0u8..3, 0..10), 1..4),
        ) {
            let tables: Vec<Vec<(Vec<u8>, String)>> = tables
                .iter()
                .map(|m| m.iter().map(|(k, s)| (vec![*k], format!("s{s}"))).collect())
                .collect();
            let a = agreement(&tables);
            prop_assert!((0.0..=1.0).contains(&a));
            let mut reversed = tables.clone();
            reversed.reverse();
            prop_assert_eq!(agreement(&reversed), a);
            let doubled = vec![tables[0].clone(), tables[0].clone()];
            prop_assert_eq!(agreement(&doubled), 1.0);
        }
    }
}
