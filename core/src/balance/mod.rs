//! Choosing a server for a connection that no affinity rule placed: HAProxy's `balance`.
//!
//! One file per algorithm ([`roundrobin`], [`leastconn`], [`first`], [`hash`]) and one entry point,
//! [`Balancer::pick`], that every caller uses: the engine for a fresh connection and for a
//! redispatch after a failed connect (with the failed servers in [`PickContext::avoid`]).
//!
//! Rules shared by every algorithm, as in HAProxy:
//! - Only servers that are UP, READY and have a weight above 0 are picked
//!   ([`ServerState::usable_for_balance`]); DOWN, MAINT, DRAIN and weight-0 servers are skipped.
//! - Backup servers are used only when no non-backup server is usable, and then only the first
//!   usable backup in declaration order (HAProxy without `option allbackups`). tether adds one
//!   case: when every usable non-backup server is avoided (they all failed this connection), a
//!   backup not yet tried is preferred to trying a failed server again.
//! - Avoidance is a preference, not a ban: an avoided server is picked only when no other usable
//!   server is left ("the next server that is not this one", `fwrr_get_next_server`).
//! - A server at its `maxconn` is passed over while a server with free slots exists. tether has no
//!   backend queue, so when every candidate is full the pick still returns one rather than none.
//! - Only [`Balancer::pick`] moves an algorithm's state: sticky connections, which never call it,
//!   do not advance the round robin.

pub mod first;
pub mod hash;
pub mod leastconn;
pub mod random;
pub mod roundrobin;

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::server::{ServerId, ServerState};

pub use first::First;
pub use hash::ConsistentHash;
pub use leastconn::LeastConn;
pub use random::Random;
pub use roundrobin::RoundRobin;

/// A backend's balancing algorithm, as written in the configuration:
/// `"roundrobin"`, `"leastconn"`, `"first"`, `"hash"`, `{ hash = { balance-factor = 150 } }`,
/// `"random"` or `{ random = { draws = 3 } }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Smooth weighted round robin in declaration order (HAProxy `roundrobin`).
    #[default]
    RoundRobin,
    /// Fewest open connections relative to weight (HAProxy `leastconn`).
    LeastConn,
    /// First server in declaration order with a free slot (HAProxy `first`).
    First,
    /// Consistent hashing of a key (client address, SNI...), optionally with bounded load
    /// (HAProxy `hash-type consistent` + `hash-balance-factor`).
    Hash {
        /// Percentage of the average load a server may carry (> 100); `None` disables the bound.
        balance_factor: Option<u32>,
    },
    /// The least loaded of `draws` weighted random servers (HAProxy `random(<draws>)`).
    Random {
        /// Servers drawn per pick (HAProxy's default: 2).
        draws: u32,
    },
}

/// HAProxy's default number of draws for `balance random`.
pub const DEFAULT_DRAWS: u32 = 2;

impl Algorithm {
    /// Does the algorithm send the same input to the same server every time? HAProxy does not
    /// redispatch such connections on every retry (`BE_LB_KIND_HI`), see [`crate::retry`].
    pub fn is_deterministic(&self) -> bool {
        matches!(self, Algorithm::Hash { .. })
    }

    /// The configuration name of the algorithm.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "roundrobin",
            Algorithm::LeastConn => "leastconn",
            Algorithm::First => "first",
            Algorithm::Hash { .. } => "hash",
            Algorithm::Random { .. } => "random",
        }
    }
}

const ALGORITHM_NAMES: &[&str] = &["roundrobin", "leastconn", "first", "hash", "random"];

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HashParams {
    #[serde(default)]
    balance_factor: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RandomParams {
    draws: u32,
}

/// `{ NAME = { KEY = VALUE } }`, for the algorithms with a parameter.
struct OneParam(&'static str, &'static str, u32);

impl Serialize for OneParam {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Params(&'static str, u32);
        impl Serialize for Params {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(self.0, &self.1)?;
                m.end()
            }
        }
        let mut m = serializer.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &Params(self.1, self.2))?;
        m.end()
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Algorithm::Hash {
                balance_factor: Some(f),
            } => OneParam("hash", "balance-factor", f).serialize(serializer),
            Algorithm::Random { draws } if draws != DEFAULT_DRAWS => {
                OneParam("random", "draws", draws).serialize(serializer)
            }
            other => serializer.serialize_str(other.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AlgorithmVisitor;
        impl<'de> Visitor<'de> for AlgorithmVisitor {
            type Value = Algorithm;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "\"roundrobin\", \"leastconn\", \"first\", \"hash\", \"random\", \
                     { hash = { balance-factor = N } } or { random = { draws = N } }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Algorithm, E> {
                match v {
                    "roundrobin" => Ok(Algorithm::RoundRobin),
                    "leastconn" => Ok(Algorithm::LeastConn),
                    "first" => Ok(Algorithm::First),
                    "hash" => Ok(Algorithm::Hash {
                        balance_factor: None,
                    }),
                    "random" => Ok(Algorithm::Random {
                        draws: DEFAULT_DRAWS,
                    }),
                    other => Err(E::unknown_variant(other, ALGORITHM_NAMES)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Algorithm, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let algorithm = match key.as_str() {
                    "hash" => Algorithm::Hash {
                        balance_factor: map.next_value::<HashParams>()?.balance_factor,
                    },
                    "random" => Algorithm::Random {
                        draws: map.next_value::<RandomParams>()?.draws,
                    },
                    _ => return Err(de::Error::unknown_variant(&key, &["hash", "random"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::invalid_length(2, &self));
                }
                Ok(algorithm)
            }
        }
        deserializer.deserialize_any(AlgorithmVisitor)
    }
}

/// What a pick may take into account beyond the servers themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickContext<'a> {
    /// The key consistent hashing maps (client address bytes, SNI...). Ignored by the other
    /// algorithms; a hash backend without a key falls back to round robin, as HAProxy does.
    pub hash_key: Option<&'a [u8]>,
    /// Servers to pass over if any other is usable: the ones this connection already failed on.
    pub avoid: &'a [ServerId],
}

impl PickContext<'static> {
    /// No key, nothing to avoid.
    pub const EMPTY: PickContext<'static> = PickContext {
        hash_key: None,
        avoid: &[],
    };
}

/// How strongly a candidate is preferred; algorithms try each level in turn and pick within the
/// first one that has a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preference {
    /// Not avoided, not full.
    Free,
    /// Not avoided, maybe full.
    NotAvoided,
    /// Anything usable, avoided servers included.
    Any,
}

pub(crate) const PREFERENCES: [Preference; 3] =
    [Preference::Free, Preference::NotAvoided, Preference::Any];

/// Is `servers[i]` a non-backup usable server acceptable at `pref`?
pub(crate) fn eligible(
    servers: &[ServerState],
    i: usize,
    avoid: &[ServerId],
    pref: Preference,
) -> bool {
    let Some(s) = servers.get(i) else {
        return false;
    };
    if s.backup || !s.usable_for_balance() {
        return false;
    }
    let avoided = || avoid.iter().any(|a| a.index() == i);
    match pref {
        Preference::Free => !s.is_full() && !avoided(),
        Preference::NotAvoided => !avoided(),
        Preference::Any => true,
    }
}

/// Is any non-backup server usable? If not, the backup pool takes over.
pub(crate) fn any_active(servers: &[ServerState]) -> bool {
    servers.iter().any(|s| !s.backup && s.usable_for_balance())
}

/// The first usable backup server, preferring one that is not avoided.
fn first_backup(servers: &[ServerState], avoid: &[ServerId]) -> Option<ServerId> {
    let usable = |s: &ServerState| s.backup && s.usable_for_balance();
    let not_avoided = servers
        .iter()
        .enumerate()
        .position(|(i, s)| usable(s) && !avoid.iter().any(|a| a.index() == i));
    not_avoided
        .or_else(|| servers.iter().position(usable))
        .map(server_id)
}

pub(crate) fn server_id(i: usize) -> ServerId {
    ServerId(u32::try_from(i).unwrap_or(u32::MAX))
}

enum Engine {
    RoundRobin(RoundRobin),
    LeastConn(LeastConn),
    First(First),
    Hash(ConsistentHash),
    Random(Random),
}

/// A backend's balancer: the configured algorithm and its state.
pub struct Balancer {
    algorithm: Algorithm,
    engine: Engine,
}

impl Balancer {
    /// A balancer for `servers` (indexed by [`ServerId`]), `balance random` drawing from seed 0.
    pub fn new(algorithm: Algorithm, servers: &[ServerState]) -> Self {
        Self::seeded(algorithm, servers, 0)
    }

    /// A balancer for `servers` whose `balance random` draws start from `seed` (the runner's:
    /// the core has no randomness of its own).
    pub fn seeded(algorithm: Algorithm, servers: &[ServerState], seed: u64) -> Self {
        let engine = match algorithm {
            Algorithm::RoundRobin => Engine::RoundRobin(RoundRobin::new(servers)),
            Algorithm::LeastConn => Engine::LeastConn(LeastConn::new()),
            Algorithm::First => Engine::First(First),
            Algorithm::Hash { balance_factor } => {
                Engine::Hash(ConsistentHash::new(servers, balance_factor))
            }
            Algorithm::Random { draws } => Engine::Random(Random::new(servers, draws, seed)),
        };
        Balancer { algorithm, engine }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Choose a server for a new (or redispatched) connection; `None` when no server is usable.
    pub fn pick(&mut self, servers: &[ServerState], ctx: &PickContext) -> Option<ServerId> {
        // Backups stand in when no active server is usable, or when every usable active server
        // is avoided and a backup is not: a redispatch goes to a server not yet tried.
        let active = any_active(servers);
        let fresh_active = active
            && (0..servers.len()).any(|i| eligible(servers, i, ctx.avoid, Preference::NotAvoided));
        if !fresh_active {
            let backup = first_backup(servers, ctx.avoid);
            let backup_fresh = backup.is_some_and(|b| !ctx.avoid.contains(&b));
            if !active || backup_fresh {
                return backup;
            }
        }
        match &mut self.engine {
            Engine::RoundRobin(rr) => rr.pick(servers, ctx.avoid),
            Engine::LeastConn(lc) => lc.pick(servers, ctx.avoid),
            Engine::First(f) => f.pick(servers, ctx.avoid),
            Engine::Hash(h) => h.pick(servers, ctx.hash_key, ctx.avoid),
            Engine::Random(r) => r.pick(servers, ctx.avoid),
        }
    }

    /// Tell the balancer that weights or states changed (health transition, admin action,
    /// reload): the round robin restarts its cycle, the hash ring is rebuilt.
    pub fn update(&mut self, servers: &[ServerState]) {
        match &mut self.engine {
            Engine::RoundRobin(rr) => rr.update(servers),
            Engine::LeastConn(_) | Engine::First(_) => {}
            Engine::Hash(h) => h.update(servers),
            Engine::Random(r) => r.update(servers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{AdminState, OperState};
    use proptest::prelude::*;

    pub(crate) fn servers(weights: &[u32]) -> Vec<ServerState> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| ServerState::new(format!("srv{i}"), w))
            .collect()
    }

    #[test]
    fn algorithm_names_deserialize() {
        #[derive(Deserialize)]
        struct Cfg {
            balance: Algorithm,
        }
        for (text, want) in [
            ("roundrobin", Algorithm::RoundRobin),
            ("leastconn", Algorithm::LeastConn),
            ("first", Algorithm::First),
            (
                "hash",
                Algorithm::Hash {
                    balance_factor: None,
                },
            ),
        ] {
            let c: Cfg = toml::from_str(&format!("balance = \"{text}\"")).unwrap();
            assert_eq!(c.balance, want);
            assert_eq!(serde_json::to_string(&want).unwrap(), format!("\"{text}\""));
        }
        let c: Cfg = toml::from_str("balance = { hash = { balance-factor = 150 } }").unwrap();
        assert_eq!(
            c.balance,
            Algorithm::Hash {
                balance_factor: Some(150)
            }
        );
        let json = serde_json::to_string(&c.balance).unwrap();
        assert_eq!(json, r#"{"hash":{"balance-factor":150}}"#);
        assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), c.balance);
        let c: Cfg = toml::from_str("balance = \"random\"").unwrap();
        assert_eq!(c.balance, Algorithm::Random { draws: 2 });
        assert_eq!(serde_json::to_string(&c.balance).unwrap(), "\"random\"");
        let c: Cfg = toml::from_str("balance = { random = { draws = 3 } }").unwrap();
        assert_eq!(c.balance, Algorithm::Random { draws: 3 });
        let json = serde_json::to_string(&c.balance).unwrap();
        assert_eq!(json, r#"{"random":{"draws":3}}"#);
        assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), c.balance);
        let err = toml::from_str::<Cfg>("balance = \"uri\"").err().unwrap();
        assert!(err.to_string().contains("roundrobin"), "{err}");
        assert!(toml::from_str::<Cfg>("balance = { hash = { factor = 1 } }").is_err());
    }

    #[test]
    fn backup_only_when_no_active_is_usable() {
        let mut s = servers(&[1, 1, 1, 1]);
        s[2].backup = true;
        s[3].backup = true;
        for algo in [
            Algorithm::RoundRobin,
            Algorithm::LeastConn,
            Algorithm::First,
            Algorithm::Hash {
                balance_factor: Some(150),
            },
        ] {
            let mut b = Balancer::new(algo, &s);
            for _ in 0..10 {
                let id = b
                    .pick(
                        &s,
                        &PickContext {
                            hash_key: Some(b"k"),
                            avoid: &[],
                        },
                    )
                    .unwrap();
                assert!(id.index() < 2, "{algo:?} picked a backup");
            }
            let mut t = s.clone();
            t[0].oper = OperState::Down;
            t[1].admin = AdminState::Maint;
            b.update(&t);
            for _ in 0..10 {
                assert_eq!(
                    b.pick(&t, &PickContext::EMPTY),
                    Some(ServerId(2)),
                    "{algo:?}"
                );
            }
            let avoid = [ServerId(2)];
            let ctx = PickContext {
                hash_key: None,
                avoid: &avoid,
            };
            assert_eq!(b.pick(&t, &ctx), Some(ServerId(3)), "{algo:?}");
            t[2].oper = OperState::Down;
            t[3].oper = OperState::Down;
            b.update(&t);
            assert_eq!(b.pick(&t, &PickContext::EMPTY), None, "{algo:?}");
        }
    }

    fn arb_algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::RoundRobin),
            Just(Algorithm::LeastConn),
            Just(Algorithm::First),
            Just(Algorithm::Hash {
                balance_factor: None
            }),
            (100u32..300).prop_map(|f| Algorithm::Hash {
                balance_factor: Some(f)
            }),
        ]
    }

    proptest! {
        /// Redispatch: a pick never lands on an avoided server while another one is usable, and
        /// never on an unusable one, whatever the algorithm and the server states.
        #[test]
        fn avoided_server_never_picked_while_another_is_usable(
            algo in arb_algorithm(),
            spec in proptest::collection::vec((0u32..5, 0u8..4, 0u32..4, 0u32..3), 1..12),
            avoid_mask in any::<u16>(),
            key in proptest::collection::vec(any::<u8>(), 0..8),
            picks in 1usize..20,
        ) {
            let s: Vec<ServerState> = spec.iter().enumerate().map(|(i, &(w, st, conns, maxconn))| {
                let mut s = ServerState::new(format!("s{i}"), w);
                match st { 1 => s.oper = OperState::Down, 2 => s.admin = AdminState::Maint,
                           3 => s.admin = AdminState::Drain, _ => {} }
                s.active_conns = conns;
                s.maxconn = maxconn;
                s
            }).collect();
            let avoid: Vec<ServerId> = (0..s.len()).filter(|i| avoid_mask & (1 << i) != 0)
                .map(server_id).collect();
            let mut b = Balancer::new(algo, &s);
            let ctx = PickContext { hash_key: Some(&key), avoid: &avoid };
            let others = (0..s.len()).any(|i| s[i].usable_for_balance() && !avoid.contains(&server_id(i)));
            for _ in 0..picks {
                match b.pick(&s, &ctx) {
                    Some(id) => {
                        prop_assert!(s[id.index()].usable_for_balance());
                        if others {
                            prop_assert!(!avoid.contains(&id), "picked avoided {:?}", id);
                        }
                    }
                    None => prop_assert!(!s.iter().any(|x| x.usable_for_balance())),
                }
            }
        }
    }
}
