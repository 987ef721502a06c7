//! Smooth weighted round robin in declaration order (HAProxy `balance roundrobin`).
//!
//! Each pick adds every candidate's weight to its running score, takes the highest score (the
//! earliest declared server on a tie) and subtracts the candidates' total weight from the winner.
//! Over `W = sum of weights` picks with an unchanged set of candidates, every server is picked
//! exactly `weight` times, heavy servers are spread through the cycle instead of bunched, and the
//! scores return to zero, so the next cycle repeats the same order. The first pick of a cycle is
//! the heaviest server, the first declared one among equals: with equal weights the order is
//! plain declaration order starting with the first server, as in HAProxy.
//!
//! Interleaving: for weights A=3, B=1 the cycle is `A A B A` (the nginx smooth WRR order).
//! HAProxy's `lb_fwrr.c` reaches the same per-cycle counts with position trees and yields
//! `A A A B` for that case; we keep the smoother order, which spreads the light server's picks
//! evenly. Equal weights give the same order in both.
//!
//! Servers not acceptable for this pick (avoided, full) neither score nor subtract, so the others
//! keep their proportions; a change of weights or usable servers ([`RoundRobin::update`]) starts a
//! new cycle from zero.

use crate::balance::{eligible, server_id, PREFERENCES};
use crate::server::{ServerId, ServerState};

/// Round-robin state: one running score per server.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    scores: Vec<i64>,
    weights: Vec<u32>,
}

/// Effective weights of the non-backup servers (0 for backup or unusable ones).
fn active_weights(servers: &[ServerState]) -> Vec<u32> {
    servers
        .iter()
        .map(|s| if s.backup { 0 } else { s.effective_weight() })
        .collect()
}

impl RoundRobin {
    /// A fresh cycle for `servers`.
    pub fn new(servers: &[ServerState]) -> Self {
        RoundRobin {
            scores: vec![0; servers.len()],
            weights: active_weights(servers),
        }
    }

    /// Restart the cycle if the weights or the set of usable servers changed.
    pub fn update(&mut self, servers: &[ServerState]) {
        let weights = active_weights(servers);
        if weights != self.weights {
            *self = RoundRobin {
                scores: vec![0; servers.len()],
                weights,
            };
        }
    }

    /// The next non-backup server, passing over avoided and full ones while others are usable.
    pub fn pick(&mut self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
        if self.scores.len() != servers.len() {
            self.update(servers);
        }
        PREFERENCES
            .iter()
            .find_map(|&pref| self.pick_among(servers, |i| eligible(servers, i, avoid, pref)))
            .map(server_id)
    }

    fn pick_among(
        &mut self,
        servers: &[ServerState],
        candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, s) in servers.iter().enumerate() {
            if !candidate(i) {
                continue;
            }
            let w = i64::from(s.effective_weight());
            total += w;
            self.scores[i] += w;
            if best.is_none_or(|b| self.scores[i] > self.scores[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.scores[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{AdminState, OperState};
    use proptest::prelude::*;

    fn servers(weights: &[u32]) -> Vec<ServerState> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| ServerState::new(format!("srv{i}"), w))
            .collect()
    }

    fn sequence(rr: &mut RoundRobin, s: &[ServerState], n: usize) -> Vec<u32> {
        (0..n).map(|_| rr.pick(s, &[]).unwrap().0).collect()
    }

    #[test]
    fn equal_weights_go_in_declaration_order_from_the_first() {
        let s = servers(&[1, 1, 1, 1]);
        let mut rr = RoundRobin::new(&s);
        assert_eq!(sequence(&mut rr, &s, 8), [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn weighted_sequence_is_smooth() {
        // Derived by hand from the scoring rule (module doc): 3,1 -> A A B A.
        let s = servers(&[3, 1]);
        let mut rr = RoundRobin::new(&s);
        assert_eq!(sequence(&mut rr, &s, 8), [0, 0, 1, 0, 0, 0, 1, 0]);
        // 5,1,1 -> A A B A C A A (nginx's published example).
        let s = servers(&[5, 1, 1]);
        let mut rr = RoundRobin::new(&s);
        assert_eq!(sequence(&mut rr, &s, 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn only_pick_advances_and_update_restarts_on_change() {
        let mut s = servers(&[1, 1, 1]);
        let mut rr = RoundRobin::new(&s);
        assert_eq!(rr.pick(&s, &[]), Some(ServerId(0)));
        rr.update(&s); // nothing changed: the cycle continues
        assert_eq!(rr.pick(&s, &[]), Some(ServerId(1)));
        s[2].oper = OperState::Down;
        rr.update(&s);
        assert_eq!(sequence(&mut rr, &s, 4), [0, 1, 0, 1]);
    }

    #[test]
    fn avoid_takes_the_next_server() {
        let s = servers(&[1, 1, 1]);
        let mut rr = RoundRobin::new(&s);
        assert_eq!(rr.pick(&s, &[ServerId(0)]), Some(ServerId(1)));
        assert!(rr
            .pick(&s, &[ServerId(0), ServerId(1), ServerId(2)])
            .is_some());
    }

    proptest! {
        /// Over one cycle (sum of weights picks) every usable server gets exactly its weight and
        /// DOWN / MAINT / DRAIN / weight-0 servers nothing; the next cycle repeats the first.
        #[test]
        fn one_cycle_gives_each_server_its_weight(
            spec in proptest::collection::vec((0u32..=256, 0u8..5), 1..10),
            warmup in 0usize..50,
        ) {
            let s: Vec<ServerState> = spec.iter().enumerate().map(|(i, &(w, st))| {
                let mut s = ServerState::new(format!("s{i}"), w);
                match st { 1 => s.oper = OperState::Down, 2 => s.admin = AdminState::Maint,
                           3 => s.admin = AdminState::Drain, _ => {} }
                s
            }).collect();
            let total: u32 = s.iter().map(|x| x.effective_weight()).sum();
            let mut rr = RoundRobin::new(&s);
            if total == 0 {
                prop_assert_eq!(rr.pick(&s, &[]), None);
                return Ok(());
            }
            // Start anywhere in a cycle: any window of W consecutive picks is a full cycle.
            for _ in 0..warmup { rr.pick(&s, &[]); }
            let first = sequence(&mut rr, &s, total as usize);
            let mut counts = vec![0u32; s.len()];
            for &i in &first { counts[i as usize] += 1; }
            for (i, srv) in s.iter().enumerate() {
                prop_assert_eq!(counts[i], srv.effective_weight(), "server {}", i);
            }
            let second = sequence(&mut rr, &s, total as usize);
            prop_assert_eq!(first, second);
        }

        /// Smoothness: in any prefix of the cycle a server's picks stay within one of its ideal
        /// share `k * w / W`, rounded either way, plus one (nginx SWRR bound).
        #[test]
        fn picks_stay_close_to_their_share(weights in proptest::collection::vec(1u32..=20, 1..8)) {
            let s = servers(&weights);
            let total: u32 = weights.iter().sum();
            let mut rr = RoundRobin::new(&s);
            let mut counts = vec![0i64; s.len()];
            for k in 1..=i64::from(total) {
                let i = rr.pick(&s, &[]).unwrap().index();
                counts[i] += 1;
                for (j, &w) in weights.iter().enumerate() {
                    let ideal = k * i64::from(w);
                    let have = counts[j] * i64::from(total);
                    prop_assert!((have - ideal).abs() <= i64::from(total) * 2,
                        "server {} after {} picks: {} picks, weight {}/{}", j, k, counts[j], w, total);
                }
            }
        }
    }
}
