//! A backend's stick tables, shared between connections.
//!
//! Each table is split into shards by a hash of the key, each behind its own short-held mutex, so
//! connections on different keys do not contend. A small table keeps a single shard: then LRU
//! order is exact across the whole table, as the core `StickTable` guarantees per shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::affinity::ticket_keys::{Limits, TicketKeys};
use crate::affinity::{stable_hash, TableKind, Tables};
use crate::stick::{
    Learn, Lookup, Origin, StickEntry, StickKey, StickStats, StickTable, StickTableConfig,
    UpdateFeed,
};
use crate::{ServerId, Timestamp};

/// Tables below this many entries per shard are not sharded.
const MIN_SHARD_ENTRIES: usize = 4096;
/// Upper bound on shards per table.
const MAX_SHARDS: usize = 16;

/// One sharded stick table.
#[derive(Debug)]
pub struct SharedTable {
    kind: TableKind,
    config: StickTableConfig,
    shards: Box<[Mutex<StickTable>]>,
    /// The server numbering the entries use: bumped by every [`SharedTable::remap_servers`], so
    /// a connection still running under the configuration before a reload cannot write (or
    /// read) a server index of the old numbering into the table the new one took over.
    layout: AtomicU64,
    /// The update feed the peers protocol reads, once a peers section shares the table.
    feed: OnceLock<Feed>,
}

/// A table's update feed and the wake-up of whoever pushes it to peers.
#[derive(Debug)]
pub struct Feed {
    /// The ordered, bounded record of stores.
    pub updates: Mutex<UpdateFeed>,
    /// Notified after every store.
    pub changed: tokio::sync::Notify,
}

impl SharedTable {
    /// A table of `config.size` entries, sharded when large. `hash_seed` keys the index hash:
    /// keys come from clients, so a production daemon passes a secret seed (hash flooding),
    /// the simulator a fixed one (determinism).
    pub fn new(kind: TableKind, config: StickTableConfig, hash_seed: u64) -> Self {
        let n = (config.capacity() / MIN_SHARD_ENTRIES).clamp(1, MAX_SHARDS);
        let per_shard = config.capacity().div_ceil(n).max(1) as u64;
        let shards = (0..n)
            .map(|_| {
                Mutex::new(StickTable::with_hash_seed(
                    StickTableConfig {
                        size: per_shard,
                        ..config.clone()
                    },
                    hash_seed,
                ))
            })
            .collect();
        SharedTable {
            kind,
            config,
            shards,
            layout: AtomicU64::new(0),
            feed: OnceLock::new(),
        }
    }

    /// Starts recording stores for peers (idempotent), keeping the last `backlog` of them.
    pub fn enable_feed(&self, backlog: usize) -> &Feed {
        self.feed.get_or_init(|| Feed {
            updates: Mutex::new(UpdateFeed::new(backlog)),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The update feed, when a peers section shares this table.
    pub fn feed(&self) -> Option<&Feed> {
        self.feed.get()
    }

    /// Records a store in the feed (called under the shard's lock, so the feed's order is the
    /// table's). Refused stores are not recorded.
    fn record(&self, key: &[u8], server: ServerId, outcome: Learn, origin: Origin) {
        let Some(feed) = self.feed.get() else { return };
        if outcome == Learn::Refused {
            return;
        }
        let key = StickKey::new(key, self.config.key_bytes());
        let layout = self.layout();
        feed.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(key, server, layout, origin);
        feed.changed.notify_one();
    }

    /// Stores an entry a peer (or the previous process) sent, for numbering `layout`: last
    /// writer wins, living `lifetime_ms` (what the sender conveyed, capped at this table's
    /// `expire` by [`StickTable::restore`]; 0 stores nothing), and recorded with `origin` so it
    /// is not pushed back as a local update. Nothing when the table was renumbered since.
    pub fn apply_remote(
        &self,
        layout: u64,
        key: &[u8],
        server: ServerId,
        now: Timestamp,
        lifetime_ms: u64,
        origin: Origin,
    ) -> Option<Learn> {
        let mut shard = self.shard(key);
        if self.layout() != layout {
            return None;
        }
        let deadline = Timestamp(now.0.saturating_add(lifetime_ms));
        let outcome = shard.restore(key, server, deadline, now)?;
        self.record(key, server, outcome, origin);
        Some(outcome)
    }

    /// The current server numbering (see [`SharedTable::remap_servers`]).
    pub fn layout(&self) -> u64 {
        self.layout.load(Ordering::Acquire)
    }

    /// The kind of key stored here.
    pub fn kind(&self) -> TableKind {
        self.kind
    }

    /// The configuration the table was built with (size is the total over shards).
    pub fn config(&self) -> &StickTableConfig {
        &self.config
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, StickTable> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            // The key as the table holds it (zero-padded or cut to its length): "ab" and
            // "ab\0" are one key, so they must live in one shard.
            let k = crate::stick::StickKey::new(key, self.config.key_bytes());
            (stable_hash(k.as_bytes()) % self.shards.len() as u64) as usize
        };
        lock(&self.shards[i])
    }

    /// Looks a key up (a hit refreshes it).
    pub fn lookup(&self, key: &[u8], now: Timestamp) -> Lookup {
        self.shard(key).lookup(key, now)
    }

    /// Stores `key -> server`.
    pub fn learn(&self, key: &[u8], server: ServerId, now: Timestamp) -> Learn {
        let mut shard = self.shard(key);
        let outcome = shard.learn(key, server, now);
        self.record(key, server, outcome, Origin::Local);
        outcome
    }

    /// Operator action: point a key at a server.
    pub fn set(&self, key: &[u8], server: ServerId, now: Timestamp) -> Learn {
        let mut shard = self.shard(key);
        let outcome = shard.set(key, server, now);
        self.record(key, server, outcome, Origin::Local);
        outcome
    }

    /// Stores an entry carried over from the process this one took over from, with its
    /// deadline there (see [`StickTable::restore`]); recorded as the previous process's.
    pub fn restore(
        &self,
        key: &[u8],
        server: ServerId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Option<Learn> {
        let mut shard = self.shard(key);
        let outcome = shard.restore(key, server, expires_at, now)?;
        self.record(key, server, outcome, Origin::Predecessor);
        Some(outcome)
    }

    /// Reads one entry without refreshing it.
    pub fn get(&self, key: &[u8], now: Timestamp) -> Option<StickEntry> {
        self.shard(key).get(key, now)
    }

    /// Removes one key.
    pub fn remove(&self, key: &[u8]) -> Option<ServerId> {
        self.shard(key).remove(key)
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            lock(s).clear();
        }
    }

    /// Drops expired entries; returns how many.
    pub fn purge_expired(&self, now: Timestamp) -> usize {
        self.shards.iter().map(|s| lock(s).purge_expired(now)).sum()
    }

    /// When the next [`SharedTable::purge_expired`] has work: the earliest shard's.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).next_expiry())
            .min()
    }

    /// All live entries, sorted by key (deterministic whatever the sharding).
    pub fn entries(&self, now: Timestamp) -> Vec<StickEntry> {
        let mut all: Vec<StickEntry> = self
            .shards
            .iter()
            .flat_map(|s| lock(s).entries(now))
            .collect();
        all.sort_by_key(|e| e.key);
        all
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters summed over shards.
    pub fn stats(&self) -> StickStats {
        let mut t = StickStats::default();
        for s in self.shards.iter() {
            let s = lock(s).stats();
            t.entries += s.entries;
            t.capacity += s.capacity;
            t.hits += s.hits;
            t.misses += s.misses;
            t.learned += s.learned;
            t.inserted += s.inserted;
            t.updated += s.updated;
            t.refreshed += s.refreshed;
            t.sets += s.sets;
            t.evicted += s.evicted;
            t.expired += s.expired;
            t.refused += s.refused;
            t.removed += s.removed;
        }
        t
    }

    /// Looks a key up for a backend numbering servers as `layout`: a miss when the table has
    /// been renumbered since (the connection belongs to the configuration before a reload).
    pub fn lookup_in(&self, layout: u64, key: &[u8], now: Timestamp) -> Lookup {
        let mut shard = self.shard(key);
        if self.layout() != layout {
            return Lookup::Miss;
        }
        shard.lookup(key, now)
    }

    /// Stores `key -> server` for a backend numbering servers as `layout`; nothing when the
    /// table has been renumbered since. Checked under the shard's lock, and the renumbering
    /// bumps the layout before it takes the locks, so no stale index slips in.
    pub fn learn_in(
        &self,
        layout: u64,
        key: &[u8],
        server: ServerId,
        now: Timestamp,
    ) -> Option<Learn> {
        let mut shard = self.shard(key);
        if self.layout() != layout {
            return None;
        }
        let outcome = shard.learn(key, server, now);
        self.record(key, server, outcome, Origin::Local);
        Some(outcome)
    }

    /// Renumbers or drops entries after a reload changed the server list.
    pub fn remap_servers(&self, mut f: impl FnMut(ServerId) -> Option<ServerId>) {
        self.layout.fetch_add(1, Ordering::AcqRel);
        for s in self.shards.iter() {
            lock(s).remap_servers(&mut f);
        }
    }
}

fn lock(m: &Mutex<StickTable>) -> MutexGuard<'_, StickTable> {
    // A panic while holding a shard cannot leave a StickTable half-updated in a way that matters
    // more than losing the whole table, so keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The set of tables of one backend, one per [`TableKind`] its affinity uses. Tables are shared
/// (`Arc`) so a reloaded backend keeps the entries its predecessor learned.
#[derive(Debug, Default)]
pub struct BackendTables {
    tables: Vec<Arc<SharedTable>>,
    /// Each table's server numbering when this backend was built ([`BackendTables::pin`]).
    layouts: Vec<u64>,
    ticket_keys: Option<Arc<Mutex<TicketKeys>>>,
    /// The learner's numbering when this backend was built.
    ticket_layout: u64,
}

impl BackendTables {
    /// One table per kind in `kinds`, each with `config`.
    pub fn new(kinds: &[TableKind], config: &StickTableConfig) -> Self {
        Self::reusing(kinds, config, &[], 0)
    }

    /// Like [`BackendTables::new`], but takes an existing table of the same kind and
    /// configuration from `previous` instead of creating it.
    pub fn reusing(
        kinds: &[TableKind],
        config: &StickTableConfig,
        previous: &[Arc<SharedTable>],
        hash_seed: u64,
    ) -> Self {
        let mut tables: Vec<Arc<SharedTable>> = Vec::new();
        for &k in kinds {
            if tables.iter().any(|t| t.kind == k) {
                continue;
            }
            let old = previous
                .iter()
                .find(|t| t.kind == k && t.config == *config)
                .cloned();
            tables.push(
                old.unwrap_or_else(|| Arc::new(SharedTable::new(k, config.clone(), hash_seed))),
            );
        }
        BackendTables {
            tables,
            layouts: Vec::new(),
            ticket_keys: None,
            ticket_layout: 0,
        }
        .pin()
    }

    /// Records the tables' current server numbering as this backend's: call after renumbering
    /// taken-over tables.
    pub fn pin(mut self) -> Self {
        self.layouts = self.tables.iter().map(|t| t.layout()).collect();
        self
    }

    fn with_layout(&self, kind: TableKind) -> Option<(&SharedTable, u64)> {
        let i = self.tables.iter().position(|t| t.kind == kind)?;
        Some((&*self.tables[i], self.layouts.get(i).copied().unwrap_or(0)))
    }

    /// Gives the backend a ticket key-name learner (`ticket-key` affinity): `previous` when a
    /// reload keeps the one its predecessor filled, else a new one.
    pub fn with_ticket_keys(mut self, previous: Option<Arc<Mutex<TicketKeys>>>) -> Self {
        let learner =
            previous.unwrap_or_else(|| Arc::new(Mutex::new(TicketKeys::new(Limits::default()))));
        self.ticket_layout = learner.lock().unwrap_or_else(|e| e.into_inner()).layout();
        self.ticket_keys = Some(learner);
        self
    }

    /// The ticket key-name learner, shared so a reload can keep it.
    pub fn ticket_keys_arc(&self) -> Option<&Arc<Mutex<TicketKeys>>> {
        self.ticket_keys.as_ref()
    }

    /// The table of a kind.
    pub fn get(&self, kind: TableKind) -> Option<&SharedTable> {
        self.tables.iter().find(|t| t.kind == kind).map(|t| &**t)
    }

    /// All tables, in the order the affinity configuration named them.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SharedTable>> {
        self.tables.iter()
    }
}

impl Tables for BackendTables {
    fn lookup(&self, kind: TableKind, key: &[u8], now: Timestamp) -> Option<Lookup> {
        self.with_layout(kind)
            .map(|(t, layout)| t.lookup_in(layout, key, now))
    }

    fn learn(
        &self,
        kind: TableKind,
        key: &[u8],
        server: ServerId,
        now: Timestamp,
    ) -> Option<Learn> {
        let (t, layout) = self.with_layout(kind)?;
        t.learn_in(layout, key, server, now)
    }

    fn ticket_keys(&self) -> Option<&Mutex<TicketKeys>> {
        self.ticket_keys.as_deref()
    }

    fn ticket_layout(&self) -> u64 {
        self.ticket_layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_and_its_padded_form_are_one_entry_in_a_sharded_table() {
        let config = StickTableConfig::new(32, 100_000, std::time::Duration::from_secs(60));
        let t = SharedTable::new(TableKind::SessionId, config, 7);
        assert!(t.shards.len() > 1, "the test needs a sharded table");
        let now = Timestamp(0);
        for i in 0u8..64 {
            let short = [i, 1, 2];
            let mut padded = [0u8; 32];
            padded[..3].copy_from_slice(&short);
            t.learn(&short, ServerId(u32::from(i)), now);
            assert_eq!(
                t.get(&padded, now).map(|e| e.server),
                Some(ServerId(u32::from(i))),
                "key {i}"
            );
        }
    }
}
