//! Random choice among the best of a few draws (HAProxy `balance random(<draws>)`, default 2:
//! the "power of two choices").
//!
//! Each draw is a random point on the same weighted ring consistent hashing uses
//! ([`ConsistentHash`]), so a server's chance of being drawn follows its weight; of the drawn
//! servers the one with the fewest connections relative to its weight wins, a tie going to the
//! later draw, as in HAProxy's `get_server_rnd`. Avoided and full servers are passed over while
//! another is usable, as by every algorithm.
//!
//! The core draws no randomness of its own: the runner gives a seed (the daemon a per-process
//! secret from the OS, the simulator its scenario's), and the draws are a SplitMix64 sequence
//! from it, so a simulation replays identically for its seed.

use std::cmp::Ordering;

use crate::balance::hash::ConsistentHash;
use crate::server::{ServerId, ServerState};

/// Most draws per pick accepted in a configuration: each costs a ring lookup.
pub const MAX_DRAWS: u32 = 100;

/// The ring and the draw sequence of one `balance random` backend.
#[derive(Clone, Debug)]
pub struct Random {
    ring: ConsistentHash,
    draws: u32,
    state: u64,
}

impl Random {
    /// A balancer drawing `draws` times per pick (at least 1, at most [`MAX_DRAWS`]), its
    /// sequence starting from `seed`.
    pub fn new(servers: &[ServerState], draws: u32, seed: u64) -> Self {
        Random {
            ring: ConsistentHash::new(servers, None),
            draws: draws.clamp(1, MAX_DRAWS),
            state: seed,
        }
    }

    /// Rebuilds the ring if weights or states changed.
    pub fn update(&mut self, servers: &[ServerState]) {
        self.ring.update(servers);
    }

    /// SplitMix64: the next draw.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The least loaded of `draws` weighted random servers.
    pub fn pick(&mut self, servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
        let mut best: Option<ServerId> = None;
        for _ in 0..self.draws {
            let key = self.next().to_le_bytes();
            let Some(drawn) = self.ring.pick(servers, Some(&key), avoid) else {
                break;
            };
            best = match best {
                Some(b) if b != drawn && more_loaded(servers, drawn, b) => Some(b),
                _ => Some(drawn),
            };
        }
        best
    }
}

/// Whether `a` carries more connections per weight than `b` (cross-multiplied, exact).
fn more_loaded(servers: &[ServerState], a: ServerId, b: ServerId) -> bool {
    let (Some(a), Some(b)) = (servers.get(a.index()), servers.get(b.index())) else {
        return false;
    };
    let lhs = u64::from(a.active_conns) * u64::from(b.effective_weight());
    let rhs = u64::from(b.active_conns) * u64::from(a.effective_weight());
    lhs.cmp(&rhs) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::servers;

    /// How many of `n` picks (each released at once) each server gets.
    fn shares(r: &mut Random, s: &[ServerState], n: u32) -> Vec<u32> {
        let mut count = vec![0; s.len()];
        for _ in 0..n {
            count[r.pick(s, &[]).unwrap().index()] += 1;
        }
        count
    }

    #[test]
    fn one_draw_follows_the_weights() {
        let s = servers(&[1, 3]);
        let mut r = Random::new(&s, 1, 7);
        let c = shares(&mut r, &s, 4000);
        assert!((800..1200).contains(&c[0]), "{c:?}");
        assert!((2800..3200).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn two_draws_take_the_less_loaded_server() {
        let mut s = servers(&[1, 1]);
        s[0].active_conns = 10;
        let mut r = Random::new(&s, 2, 7);
        let c = shares(&mut r, &s, 1000);
        // Only when both draws land on the loaded server does it win: about a quarter.
        assert!((180..320).contains(&c[0]), "{c:?}");
        let mut one = Random::new(&s, 1, 7);
        let c1 = shares(&mut one, &s, 1000);
        assert!(
            (430..570).contains(&c1[0]),
            "one draw ignores the load: {c1:?}"
        );
    }

    #[test]
    fn open_connections_spread_evenly_with_two_draws() {
        let mut s = servers(&[1; 10]);
        let mut r = Random::new(&s, 2, 11);
        for _ in 0..1000 {
            let i = r.pick(&s, &[]).unwrap().index();
            s[i].active_conns += 1;
        }
        let max = s.iter().map(|x| x.active_conns).max().unwrap();
        let min = s.iter().map(|x| x.active_conns).min().unwrap();
        // One draw would leave a spread of about ±3 sigma (±30); two keep it within a few.
        assert!(max - min <= 12, "spread {min}..{max}");
    }

    #[test]
    fn the_same_seed_replays_the_same_picks_and_another_differs() {
        let s = servers(&[1, 1, 1, 1]);
        let seq = |seed| {
            let mut r = Random::new(&s, 2, seed);
            (0..64)
                .map(|_| r.pick(&s, &[]).unwrap().0)
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(5), seq(5));
        assert_ne!(seq(5), seq(6));
    }

    #[test]
    fn avoided_down_and_backup_servers_are_passed_over() {
        let mut s = servers(&[1, 1, 1]);
        s[1].oper = crate::server::OperState::Down;
        s[2].backup = true;
        let mut r = Random::new(&s, 2, 3);
        r.update(&s);
        for _ in 0..100 {
            assert_eq!(r.pick(&s, &[]), Some(ServerId(0)));
        }
        s[1].oper = crate::server::OperState::Up;
        r.update(&s);
        for _ in 0..100 {
            assert_eq!(r.pick(&s, &[ServerId(0)]), Some(ServerId(1)));
        }
    }
}
