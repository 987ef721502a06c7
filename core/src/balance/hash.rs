//! Consistent hashing of a key with bounded load (HAProxy `hash-type consistent` with
//! `hash-balance-factor`).
//!
//! Each usable non-backup server owns `weight * VNODES_PER_WEIGHT` points on a 64-bit ring; a
//! point's position is a hash of the server's *name* and the point's number, so it does not move
//! when other servers come, go or are reordered. A key goes to the owner of the first point at or
//! after the key's hash. When a server leaves, only the keys that landed on its points move (to
//! the next points clockwise); every other key stays where it was. Raising a weight only adds
//! points.
//!
//! Bounded load (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads"): with
//! a factor `f` (percent, at least 100), a server may hold at most
//! `ceil((total + 1) * f / 100 * weight / total_weight)` connections (at least 1), where `total`
//! counts open connections on the usable non-backup servers and `+ 1` is the connection being
//! placed. A key whose server is at its bound walks on clockwise to the first server under its
//! own. With equal weights the bound is `ceil(average * f / 100)`, average including the new
//! connection. Since the bounds add up to more than `total`, some server is always under its
//! bound. HAProxy spreads the rounding remainder slightly differently (`chash_server_is_eligible`);
//! the guarantee is the same.
//!
//! The hash is written here, constant-seeded (FNV-1a 64 followed by the MurmurHash3 64-bit
//! finaliser), so that a key maps to the same server in every process, run and simulation.

use crate::balance::roundrobin::RoundRobin;
use crate::balance::{eligible, server_id, Preference};
use crate::server::{ServerId, ServerState};

/// Ring points per unit of weight. HAProxy uses 16; more points spread keys more evenly at the
/// cost of memory (8 bytes... 16 bytes per point: 1000 servers of weight 1 take 512 KiB).
pub const VNODES_PER_WEIGHT: u32 = 32;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: spreads FNV's weak low-entropy outputs over the whole ring.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Position of a key on the ring. Deterministic across processes and platforms.
pub fn key_hash(key: &[u8]) -> u64 {
    fmix64(fnv1a(FNV_OFFSET, key))
}

fn point_hash(name_state: u64, vnode: u32) -> u64 {
    fmix64(fnv1a(name_state, &vnode.to_le_bytes()))
}

/// Per-server ring inputs: name hash and weight (0 when not on the ring).
fn signature(servers: &[ServerState]) -> Vec<(u64, u32)> {
    servers
        .iter()
        .map(|s| {
            let w = if s.backup { 0 } else { s.effective_weight() };
            (fnv1a(FNV_OFFSET, s.name.as_bytes()), w)
        })
        .collect()
}

/// The ring and the settings of one hash backend.
#[derive(Clone, Debug)]
pub struct ConsistentHash {
    ring: Vec<(u64, u32)>,
    signature: Vec<(u64, u32)>,
    balance_factor: Option<u32>,
    keyless: RoundRobin,
}

impl ConsistentHash {
    /// A ring over the usable non-backup servers. A `balance_factor` below 100 is raised to 100.
    pub fn new(servers: &[ServerState], balance_factor: Option<u32>) -> Self {
        let mut h = ConsistentHash {
            ring: Vec::new(),
            signature: Vec::new(),
            balance_factor: balance_factor.map(|f| f.max(100)),
            keyless: RoundRobin::new(servers),
        };
        h.rebuild(servers);
        h
    }

    /// Number of points on the ring.
    pub fn points(&self) -> usize {
        self.ring.len()
    }

    fn rebuild(&mut self, servers: &[ServerState]) {
        self.signature = signature(servers);
        self.ring.clear();
        for (i, &(name, w)) in self.signature.iter().enumerate() {
            let Ok(id) = u32::try_from(i) else { break };
            for v in 0..w.saturating_mul(VNODES_PER_WEIGHT) {
                self.ring.push((point_hash(name, v), id));
            }
        }
        self.ring.sort_unstable();
    }

    /// Rebuild the ring if a server's name, weight or usability changed.
    pub fn update(&mut self, servers: &[ServerState]) {
        if signature(servers) != self.signature {
            self.rebuild(servers);
        }
        self.keyless.update(servers);
    }

    /// The server for `key`; without a key, round robin (HAProxy falls back the same way).
    pub fn pick(
        &mut self,
        servers: &[ServerState],
        key: Option<&[u8]>,
        avoid: &[ServerId],
    ) -> Option<ServerId> {
        let Some(key) = key else {
            return self.keyless.pick(servers, avoid);
        };
        let bound = self.balance_factor.map(|f| LoadBound::new(servers, f));
        let h = key_hash(key);
        let start = self.ring.partition_point(|p| p.0 < h);
        let levels: &[(Preference, bool)] = if bound.is_some() {
            &[
                (Preference::Free, true),
                (Preference::Free, false),
                (Preference::NotAvoided, false),
                (Preference::Any, false),
            ]
        } else {
            &[
                (Preference::Free, false),
                (Preference::NotAvoided, false),
                (Preference::Any, false),
            ]
        };
        let n = self.ring.len();
        for &(pref, bounded) in levels {
            let found = (0..n)
                .map(|k| self.ring[(start + k) % n].1 as usize)
                .find(|&i| {
                    eligible(servers, i, avoid, pref)
                        && (!bounded || bound.as_ref().is_some_and(|b| b.admits(servers, i)))
                });
            if let Some(i) = found {
                return Some(server_id(i));
            }
        }
        // The ring is stale (states changed without `update`): do not fail the connection.
        self.keyless.pick(servers, avoid)
    }
}

/// The per-server connection bound for one pick.
#[derive(Clone, Copy, Debug)]
pub struct LoadBound {
    total_conns: u64,
    total_weight: u64,
    factor: u64,
}

impl LoadBound {
    /// The bound for placing one more connection on the usable non-backup `servers`.
    pub fn new(servers: &[ServerState], factor: u32) -> Self {
        let mut total_conns = 0u64;
        let mut total_weight = 0u64;
        for s in servers
            .iter()
            .filter(|s| !s.backup && s.usable_for_balance())
        {
            total_conns += u64::from(s.active_conns);
            total_weight += u64::from(s.effective_weight());
        }
        LoadBound {
            total_conns,
            total_weight,
            factor: u64::from(factor.max(100)),
        }
    }

    /// Most connections `servers[i]` may hold after this pick.
    pub fn slots(&self, server: &ServerState) -> u64 {
        let w = u128::from(server.effective_weight());
        let num = u128::from(self.total_conns + 1) * u128::from(self.factor) * w;
        let den = 100 * u128::from(self.total_weight.max(1));
        let slots = num.div_ceil(den);
        u64::try_from(slots).unwrap_or(u64::MAX).max(1)
    }

    fn admits(&self, servers: &[ServerState], i: usize) -> bool {
        servers
            .get(i)
            .is_some_and(|s| u64::from(s.active_conns) < self.slots(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::OperState;
    use proptest::prelude::*;

    fn servers(weights: &[u32]) -> Vec<ServerState> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| ServerState::new(format!("srv{i}"), w))
            .collect()
    }

    fn map_keys(h: &mut ConsistentHash, s: &[ServerState], keys: &[Vec<u8>]) -> Vec<ServerId> {
        keys.iter()
            .map(|k| h.pick(s, Some(k), &[]).unwrap())
            .collect()
    }

    #[test]
    fn hash_is_pinned() {
        // Constant-seeded: these values must never change, or keys move on upgrade.
        assert_eq!(key_hash(b""), fmix64(FNV_OFFSET));
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(key_hash(b"10.0.0.1"), key_hash(b"10.0.0.2"));
    }

    #[test]
    fn keys_spread_over_equal_servers() {
        let s = servers(&[1, 1, 1, 1]);
        let mut h = ConsistentHash::new(&s, None);
        assert_eq!(h.points(), 4 * VNODES_PER_WEIGHT as usize);
        let mut counts = [0u32; 4];
        for i in 0u32..10_000 {
            let id = h.pick(&s, Some(&i.to_be_bytes()), &[]).unwrap();
            counts[id.index()] += 1;
        }
        for c in counts {
            assert!((1500..=3500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn no_key_falls_back_to_round_robin() {
        let s = servers(&[1, 1, 1]);
        let mut h = ConsistentHash::new(&s, None);
        let seq: Vec<u32> = (0..3).map(|_| h.pick(&s, None, &[]).unwrap().0).collect();
        assert_eq!(seq, [0, 1, 2]);
    }

    proptest! {
        /// When a server leaves, only its keys move; when it returns, they come back.
        #[test]
        fn only_keys_of_a_leaving_server_move(
            weights in proptest::collection::vec(1u32..5, 2..12),
            leaver in any::<proptest::sample::Index>(),
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..16), 1..100),
        ) {
            let mut s = servers(&weights);
            let mut h = ConsistentHash::new(&s, None);
            let before = map_keys(&mut h, &s, &keys);
            let k = leaver.index(s.len());
            s[k].oper = OperState::Down;
            h.update(&s);
            let after = map_keys(&mut h, &s, &keys);
            for (b, a) in before.iter().zip(&after) {
                if b.index() == k {
                    prop_assert_ne!(a.index(), k);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
            s[k].oper = OperState::Up;
            h.update(&s);
            prop_assert_eq!(map_keys(&mut h, &s, &keys), before);
        }

        /// With a balance factor, no pick puts a server above its bound, and with equal weights
        /// no server ever holds more than ceil(average * factor / 100) connections.
        #[test]
        fn bounded_load_is_never_exceeded(
            n in 1usize..10,
            factor in 100u32..300,
            ops in proptest::collection::vec((any::<u16>(), 0u8..4), 1..300),
        ) {
            let mut s = servers(&vec![1; n]);
            let mut h = ConsistentHash::new(&s, Some(factor));
            for (key, op) in ops {
                if op == 0 {
                    // Close one connection somewhere.
                    if let Some(i) = (0..n).map(|j| (j + key as usize) % n).find(|&j| s[j].active_conns > 0) {
                        s[i].active_conns -= 1;
                    }
                    continue;
                }
                let total: u64 = s.iter().map(|x| u64::from(x.active_conns)).sum();
                let id = h.pick(&s, Some(&key.to_be_bytes()), &[]).unwrap();
                let cap = ((total + 1) * u64::from(factor)).div_ceil(100 * n as u64).max(1);
                prop_assert!(u64::from(s[id.index()].active_conns) < cap,
                    "server {} holds {} with cap {}", id.0, s[id.index()].active_conns, cap);
                s[id.index()].active_conns += 1;
            }
        }
    }
}
