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

use std::cmp::Reverse;
use std::collections::BTreeSet;

use crate::balance::{eligible, server_id, Preference, PREFERENCES};
use crate::server::{ServerId, ServerState};

/// Round-robin state: one running score per server.
///
/// A pick that offers every weighted server (nothing avoided, no server with `maxconn`: the
/// usual case) adds each one's weight to its score. Instead of touching every score, such a
/// pick only advances `lag`: server `i`'s score is `base[i] + lag × weights[i]`. Within one
/// weight the order of scores is the order of `base`, so the highest score is the best of each
/// weight class, kept in an ordered set: a pick compares one candidate per distinct weight and
/// moves one server in its set, O(weights + log n) instead of O(n), with exactly the choices of
/// the full scan. Any other pick (avoid set, servers that can be full, or a backend of at most
/// [`SCAN_UP_TO`] servers, where scanning is cheaper) folds `lag` into `base` and scans, as the
/// rule reads.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    /// Score of server `i` = `base[i] + lag * weights[i]`.
    base: Vec<i64>,
    weights: Vec<u32>,
    /// Picks that offered every weighted server since `base` was last brought up to date.
    lag: i64,
    /// Sum of `weights`: what such a pick subtracts from its winner.
    total: i64,
    /// Some server has a connection limit: whether it is full changes between picks, so every
    /// pick scans.
    limited: bool,
    /// Weighted servers by weight, each class ordered best first; `None` until a pick needs it
    /// after the scores changed under it.
    classes: Option<Vec<WeightClass>>,
}

/// The weighted servers of one weight, ordered by `base` (highest first), then declaration order.
#[derive(Clone, Debug, Default)]
struct WeightClass {
    weight: u32,
    order: BTreeSet<(Reverse<i64>, usize)>,
}

/// `lag` is folded into the scores before `lag × 256` could come near `i64`'s range.
const MAX_LAG: i64 = 1 << 40;

/// Up to this many servers a scan of the scores costs less than the ordered sets.
const SCAN_UP_TO: usize = 8;

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
        let weights = active_weights(servers);
        RoundRobin {
            base: vec![0; servers.len()],
            total: weights.iter().map(|&w| i64::from(w)).sum(),
            weights,
            lag: 0,
            limited: servers.iter().any(|s| s.maxconn != 0),
            classes: None,
        }
    }

    /// Restart the cycle if the weights or the set of usable servers changed.
    pub fn update(&mut self, servers: &[ServerState]) {
        if active_weights(servers) != self.weights {
            *self = RoundRobin::new(servers);
        } else {
            self.limited = servers.iter().any(|s| s.maxconn != 0);
        }
    }

    /// The next non-backup server, passing over avoided and full ones while others are usable.
    pub fn pick(&mut self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
        if self.base.len() != servers.len() {
            self.update(servers);
        }
        let offers_all = !self.limited
            && servers.len() > SCAN_UP_TO
            && !avoid
                .iter()
                .any(|a| self.weights.get(a.index()).is_some_and(|&w| w > 0));
        if offers_all {
            if let Some((class, i)) = self.best() {
                // The states the weights came from still hold (they change only through
                // `update`); if not, the scan below decides from the live states.
                if eligible(servers, i, avoid, Preference::Free)
                    && servers[i].effective_weight() == self.weights[i]
                {
                    self.commit(class, i);
                    return Some(server_id(i));
                }
            }
        }
        self.fold_lag();
        PREFERENCES
            .iter()
            .find_map(|&pref| self.pick_among(servers, |i| eligible(servers, i, avoid, pref)))
            .map(server_id)
    }

    /// The weighted server with the highest score after this pick's additions (the earliest
    /// declared on a tie), and its class.
    fn best(&mut self) -> Option<(usize, usize)> {
        if self.lag >= MAX_LAG {
            self.fold_lag();
        }
        let (lag, base) = (self.lag, &self.base);
        let weights = &self.weights;
        let classes = self
            .classes
            .get_or_insert_with(|| build_classes(weights, base));
        let mut best: Option<(i64, usize, usize)> = None;
        for (c, class) in classes.iter().enumerate() {
            let Some(&(Reverse(b), i)) = class.order.first() else {
                continue;
            };
            let score = b + (lag + 1) * i64::from(class.weight);
            if best.is_none_or(|(s, j, _)| score > s || (score == s && i < j)) {
                best = Some((score, i, c));
            }
        }
        best.map(|(_, i, c)| (c, i))
    }

    /// Every weighted server gained its weight; the winner pays the total.
    fn commit(&mut self, class: usize, i: usize) {
        self.lag += 1;
        let old = self.base[i];
        self.base[i] -= self.total;
        if let Some(classes) = self.classes.as_mut() {
            let order = &mut classes[class].order;
            order.remove(&(Reverse(old), i));
            order.insert((Reverse(self.base[i]), i));
        }
    }

    /// Brings `base` up to date (`lag` = 0); the classes are rebuilt when next needed.
    fn fold_lag(&mut self) {
        if self.lag != 0 {
            for (b, &w) in self.base.iter_mut().zip(&self.weights) {
                *b += self.lag * i64::from(w);
            }
            self.lag = 0;
        }
        self.classes = None;
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
            self.base[i] += w;
            if best.is_none_or(|b| self.base[i] > self.base[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.base[b] -= total;
        Some(b)
    }
}

/// The weighted servers grouped by weight (in weight order), each group best first.
fn build_classes(weights: &[u32], base: &[i64]) -> Vec<WeightClass> {
    let mut classes: Vec<WeightClass> = Vec::new();
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let at = match classes.binary_search_by_key(&w, |c| c.weight) {
            Ok(at) => at,
            Err(at) => {
                classes.insert(
                    at,
                    WeightClass {
                        weight: w,
                        order: BTreeSet::new(),
                    },
                );
                at
            }
        };
        classes[at].order.insert((Reverse(base[i]), i));
    }
    classes
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

    /// The rule as the module doc states it, one full scan per pick: what [`RoundRobin`] must
    /// choose, pick for pick.
    struct Scan {
        scores: Vec<i64>,
        weights: Vec<u32>,
    }

    impl Scan {
        fn new(servers: &[ServerState]) -> Self {
            Scan {
                scores: vec![0; servers.len()],
                weights: active_weights(servers),
            }
        }

        fn update(&mut self, servers: &[ServerState]) {
            if active_weights(servers) != self.weights {
                *self = Scan::new(servers);
            }
        }

        fn pick(&mut self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
            PREFERENCES
                .iter()
                .find_map(|&pref| {
                    let mut total = 0;
                    let mut best: Option<usize> = None;
                    for (i, s) in servers.iter().enumerate() {
                        if !eligible(servers, i, avoid, pref) {
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
                })
                .map(server_id)
        }
    }

    /// One step of a generated history.
    #[derive(Clone, Debug)]
    enum Step {
        /// A pick, avoiding these servers (by index modulo the server count).
        Pick(Vec<u8>),
        /// Server goes DOWN or UP, then the balancer is told.
        Flip(u8),
        /// New weight, then the balancer is told.
        Weight(u8, u32),
        /// A connection limit and a number of connections, then the balancer is told.
        Limit(u8, u32, u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..2).prop_map(Step::Pick),
            1 => any::<u8>().prop_map(Step::Flip),
            1 => (any::<u8>(), 0u32..=6).prop_map(|(i, w)| Step::Weight(i, w)),
            1 => (any::<u8>(), 0u32..3, 0u32..3).prop_map(|(i, m, c)| Step::Limit(i, m, c)),
        ]
    }

    proptest! {
        /// The indexed round robin chooses exactly what the full scan chooses, through picks
        /// with and without avoided servers, health flips, weight changes and full servers
        /// (backends of up to 23 servers: most above `SCAN_UP_TO`, so the sets are used).
        #[test]
        fn matches_the_full_scan_pick_for_pick(
            weights in proptest::collection::vec(0u32..=6, 1..24),
            steps in proptest::collection::vec(step(), 1..300),
        ) {
            let mut s = servers(&weights);
            let mut fast = RoundRobin::new(&s);
            let mut scan = Scan::new(&s);
            let n = s.len();
            for (k, st) in steps.iter().enumerate() {
                match st {
                    Step::Pick(avoid) => {
                        let avoid: Vec<ServerId> =
                            avoid.iter().map(|&a| server_id(usize::from(a) % n)).collect();
                        prop_assert_eq!(fast.pick(&s, &avoid), scan.pick(&s, &avoid), "step {}", k);
                        continue;
                    }
                    Step::Flip(i) => {
                        let srv = &mut s[usize::from(*i) % n];
                        srv.oper = if srv.oper == OperState::Up { OperState::Down } else { OperState::Up };
                    }
                    Step::Weight(i, w) => s[usize::from(*i) % n].weight = *w,
                    Step::Limit(i, m, c) => {
                        let srv = &mut s[usize::from(*i) % n];
                        srv.maxconn = *m;
                        srv.active_conns = *c;
                    }
                }
                fast.update(&s);
                scan.update(&s);
            }
        }

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
