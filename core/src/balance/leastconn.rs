//! Fewest connections relative to weight (HAProxy `balance leastconn`).
//!
//! A server's load is `active_conns / weight`; the pick takes the lowest, compared exactly by
//! cross-multiplication. Servers with equal load are taken in round-robin order: a cursor moves
//! past each picked server, so that a burst of new connections on an idle backend spreads over
//! every server instead of piling on the first (HAProxy gets the same effect by requeueing the
//! picked server behind its equals in `lb_fwlc.c`). The caller counts the connection in
//! `active_conns` once it opens it.

use std::cmp::Ordering;

use crate::balance::{eligible, server_id, PREFERENCES};
use crate::server::{ServerId, ServerState};

/// Least-connections state: only the tie-break cursor.
#[derive(Clone, Debug, Default)]
pub struct LeastConn {
    cursor: usize,
}

/// Compare `a_conns / a_weight` with `b_conns / b_weight` without division (weights > 0).
fn cmp_load(a: &ServerState, b: &ServerState) -> Ordering {
    let lhs = u64::from(a.active_conns) * u64::from(b.effective_weight());
    let rhs = u64::from(b.active_conns) * u64::from(a.effective_weight());
    lhs.cmp(&rhs)
}

impl LeastConn {
    /// A fresh cursor at the first server.
    pub fn new() -> Self {
        LeastConn { cursor: 0 }
    }

    /// The least loaded non-backup server, passing over avoided and full ones while others are
    /// usable.
    pub fn pick(&mut self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor % n;
        for pref in PREFERENCES {
            let mut best: Option<usize> = None;
            // Scan from the cursor so that, among equals, the first one found wins.
            for i in (start..n).chain(0..start) {
                if !eligible(servers, i, avoid, pref) {
                    continue;
                }
                if best.is_none_or(|b| cmp_load(&servers[i], &servers[b]) == Ordering::Less) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                self.cursor = b + 1;
                return Some(server_id(b));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::OperState;
    use proptest::prelude::*;

    #[test]
    fn ties_rotate_in_declaration_order() {
        let s: Vec<_> = (0..3)
            .map(|i| ServerState::new(format!("s{i}"), 1))
            .collect();
        let mut lc = LeastConn::new();
        let seq: Vec<u32> = (0..6).map(|_| lc.pick(&s, &[]).unwrap().0).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weight_scales_the_load() {
        let mut s: Vec<_> = (0..2)
            .map(|i| ServerState::new(format!("s{i}"), 1))
            .collect();
        s[0].weight = 4;
        s[0].active_conns = 3; // 0.75 per weight unit
        s[1].active_conns = 1; // 1.0
        assert_eq!(LeastConn::new().pick(&s, &[]), Some(ServerId(0)));
    }

    proptest! {
        /// The pick always has the minimum load among usable, non-avoided servers, and filling
        /// the picked server as a caller would keeps every server within one connection per
        /// weight unit of the others.
        #[test]
        fn picks_the_minimum(
            spec in proptest::collection::vec((1u32..10, 0u32..20, any::<bool>()), 1..10),
            rounds in 1usize..60,
        ) {
            let mut s: Vec<ServerState> = spec.iter().enumerate().map(|(i, &(w, c, down))| {
                let mut s = ServerState::new(format!("s{i}"), w);
                s.active_conns = c;
                if down { s.oper = OperState::Down; }
                s
            }).collect();
            let mut lc = LeastConn::new();
            for _ in 0..rounds {
                let Some(id) = lc.pick(&s, &[]) else {
                    prop_assert!(s.iter().all(|x| !x.usable_for_balance()));
                    break;
                };
                let p = &s[id.index()];
                prop_assert!(p.usable_for_balance());
                for o in s.iter().filter(|o| o.usable_for_balance()) {
                    prop_assert!(cmp_load(p, o) != Ordering::Greater,
                        "picked {}/{} but {}/{} is lower", p.active_conns, p.weight, o.active_conns, o.weight);
                }
                s[id.index()].active_conns += 1;
            }
        }
    }
}
