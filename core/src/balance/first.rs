//! First server with a free slot (HAProxy `balance first`).
//!
//! Fills servers in declaration order: the first usable server below its `maxconn` takes the
//! connection, so that the last servers can be powered down when idle. A server without
//! `maxconn` never fills, so it takes everything. When every server is full tether still picks
//! the first one (it has no backend queue to wait in).

use crate::balance::{eligible, server_id, PREFERENCES};
use crate::server::{ServerId, ServerState};

/// The `first` algorithm: stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct First;

impl First {
    /// The first usable non-backup server with a free slot.
    pub fn pick(&self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
        PREFERENCES
            .iter()
            .find_map(|&pref| (0..servers.len()).find(|&i| eligible(servers, i, avoid, pref)))
            .map(server_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AdminState;
    use proptest::prelude::*;

    #[test]
    fn fills_in_order() {
        let mut s: Vec<_> = (0..3)
            .map(|i| ServerState::new(format!("s{i}"), 1))
            .collect();
        for srv in &mut s {
            srv.maxconn = 2;
        }
        let mut got = vec![];
        for _ in 0..6 {
            let id = First.pick(&s, &[]).unwrap();
            s[id.index()].active_conns += 1;
            got.push(id.0);
        }
        assert_eq!(got, [0, 0, 1, 1, 2, 2]);
        assert_eq!(
            First.pick(&s, &[]),
            Some(ServerId(0)),
            "all full: first usable"
        );
    }

    proptest! {
        /// The pick is the lowest-indexed usable server with a free slot, if there is one.
        #[test]
        fn picks_first_free(spec in proptest::collection::vec((0u32..3, 0u32..4, any::<bool>()), 1..10)) {
            let s: Vec<ServerState> = spec.iter().enumerate().map(|(i, &(c, m, drain))| {
                let mut s = ServerState::new(format!("s{i}"), 1);
                s.active_conns = c;
                s.maxconn = m;
                if drain { s.admin = AdminState::Drain; }
                s
            }).collect();
            let want = s.iter().position(|x| x.usable_for_balance() && !x.is_full())
                .or_else(|| s.iter().position(|x| x.usable_for_balance()));
            prop_assert_eq!(First.pick(&s, &[]).map(|i| i.index()), want);
        }
    }
}
