//! The stick table: fixed-length key → server, with expiry and exact LRU eviction.
//!
//! Layout (all preallocated for `size` entries at construction, so memory is bounded and the data
//! path never allocates):
//! - `meta: Vec<Meta>` — a slab of 24-byte records: intrusive `prev`/`next` LRU links (`u32`
//!   indices), the server, the 32-bit hash tag of the key and the expiry in milliseconds.
//! - `keys: Vec<u8>` — the keys, `key_len` bytes each, at `index * key_len`.
//! - `slots: Vec<u64>` — an open-addressing index (linear probing, backward-shift deletion, no
//!   tombstones) of `tag << 32 | (index + 1)`, 0 meaning empty, at most 75 % full. The tag lets a
//!   probe skip foreign entries without touching their keys.
//!
//! With a 32-byte key that is 24 + 32 + 8 × 4/3 ≈ 67 bytes per entry (HAProxy: ≈ 184).
//!
//! Semantics:
//! - An entry is expired iff `now >= expires_at`; every hit, learn or set moves it to
//!   `now + expire` and makes it the most recently used.
//! - When full, expired entries at the LRU end are dropped first; if none, the least recently
//!   touched entry is evicted — or, with `nopurge`, the new key is refused. With one `expire` per
//!   table and a non-decreasing `now`, LRU order is also expiry order, which is what HAProxy purges
//!   by, so the two agree.
//! - Expiry is lazy (on lookup/learn) plus [`StickTable::purge_expired`], both driven by the `now`
//!   the caller passes. The table never reads a clock and draws no random numbers; the hash is
//!   seeded by a constant unless the owner passes a seed ([`StickTable::with_hash_seed`]). No
//!   output depends on hash order: dumps are sorted by key bytes.

use std::time::Duration;

use super::key::{clamp_key_len, StickKey, MAX_KEY_LEN};
use crate::{ServerId, Timestamp};

/// Largest `size` a table accepts (16 Mi entries ≈ 1.1 GB with 32-byte keys). Larger sizes are
/// clamped by [`StickTable::new`] and rejected by [`StickTableConfig::validate`]: the table
/// preallocates, and a typo must not reserve the machine's memory.
pub const MAX_SIZE: usize = 1 << 24;

/// Seed used when the owner does not pass one: fixed so that runs are reproducible.
const DEFAULT_SEED: u64 = 0x2d35_8dcc_aa6c_78a5;

/// End of a list / no entry.
const NIL: u32 = u32::MAX;

/// What a table is declared as: `stick-table type binary len <key_len> size <size> expire
/// <expire> [nopurge]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickTableConfig {
    /// Key length in bytes (`len`); keys are zero-padded or truncated to it. Valid: 1..=64.
    pub key_len: usize,
    /// Maximum number of entries (`size`); parse "60k" with [`super::parse_size`].
    pub size: usize,
    /// How long an entry lives after it was last touched (`expire`).
    pub expire: Duration,
    /// Refuse new keys when full instead of evicting the least recently used entry.
    pub nopurge: bool,
}

/// Why a [`StickTableConfig`] cannot be built as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StickConfigError {
    /// `len` outside 1..=64.
    #[error("stick table key length {0} is out of range: use 1..=64 (32 for TLS session IDs)")]
    KeyLen(usize),
    /// `size` above [`MAX_SIZE`].
    #[error("stick table size {0} is too large: use at most 16m entries")]
    Size(usize),
}

impl StickTableConfig {
    /// Check the declared values instead of letting [`StickTable::new`] silently clamp them; the
    /// config loader calls this to report the line at fault.
    pub fn validate(&self) -> Result<(), StickConfigError> {
        if self.key_len == 0 || self.key_len > MAX_KEY_LEN {
            return Err(StickConfigError::KeyLen(self.key_len));
        }
        if self.size > MAX_SIZE {
            return Err(StickConfigError::Size(self.size));
        }
        Ok(())
    }
}

/// Outcome of a match ([`StickTable::lookup`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Live entry: use this server. The entry's expiry and recency were refreshed.
    Hit(ServerId),
    /// An entry existed but had expired; it was removed. Counted as expired and as a miss, so the
    /// affinity outcome can say "miss-expired" and which server it would have been.
    Expired(ServerId),
    /// No entry for this key.
    Miss,
}

/// Outcome of a store ([`StickTable::learn`] / [`StickTable::set`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Learn {
    /// A new entry was created. `evicted` is true when the least recently used live entry had to
    /// be evicted to make room (dropping already-expired entries does not count as eviction).
    Inserted {
        /// A live entry was evicted to make room.
        evicted: bool,
    },
    /// The key pointed at another server; last writer wins.
    Updated {
        /// The server the key pointed at before.
        previous: ServerId,
    },
    /// The key already pointed at this server; only expiry and recency were refreshed.
    Refreshed,
    /// The table is full and declared `nopurge` (or has size 0): nothing was stored.
    Refused,
}

/// One live entry, as shown by `show table` and the stats page.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StickEntry {
    /// The normalised key (dereferences to `[u8]`, displays as hex).
    pub key: StickKey,
    /// Server the key sticks to.
    pub server: ServerId,
    /// When the entry expires unless touched again.
    pub expires_at: Timestamp,
}

/// Cumulative counters plus the current fill, for the stats page and metrics.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StickStats {
    /// Entries stored now (may include expired entries not yet purged).
    pub entries: u64,
    /// Maximum number of entries (the configured size).
    pub capacity: u64,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing usable (includes `expired` lookups).
    pub misses: u64,
    /// Entries created or moved to another server by `learn` (`inserted + updated`).
    pub learned: u64,
    /// Entries created by `learn`.
    pub inserted: u64,
    /// Entries moved to another server by `learn`.
    pub updated: u64,
    /// `learn` calls that found the same server and only refreshed the entry.
    pub refreshed: u64,
    /// Operator `set` calls that stored something.
    pub sets: u64,
    /// Live entries evicted (least recently used) to make room.
    pub evicted: u64,
    /// Entries removed because they had expired (lazily, when full, or by `purge_expired`).
    pub expired: u64,
    /// Stores refused because the table was full with `nopurge` (or has size 0).
    pub refused: u64,
    /// Entries removed by the operator (`remove`, `clear`) or dropped by `remap_servers`.
    pub removed: u64,
}

/// Per-entry record in the slab. 24 bytes.
#[derive(Copy, Clone, Debug)]
struct Meta {
    /// Towards the more recently used entry (NIL at the head); next free entry when free.
    prev: u32,
    /// Towards the less recently used entry (NIL at the tail).
    next: u32,
    server: u32,
    /// Upper 32 bits of the key hash: locates the entry's home slot without rehashing the key.
    tag: u32,
    expires_at: u64,
}

/// Whether a store comes from traffic or from the operator, for the counters.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Origin {
    Learn,
    Set,
}

/// Result of probing the index for a key.
enum Probe {
    /// Key present: slot position and entry index.
    Found(usize, usize),
    /// Key absent: the empty slot where it would go.
    Vacant(usize),
}

/// A fixed-capacity map from normalised keys to servers with expiry and exact LRU eviction.
/// See the module documentation for layout and semantics.
#[derive(Clone, Debug)]
pub struct StickTable {
    cfg: StickTableConfig,
    key_len: usize,
    capacity: usize,
    expire_ms: u64,
    seed: u64,
    meta: Vec<Meta>,
    keys: Vec<u8>,
    slots: Vec<u64>,
    /// Most recently used entry.
    head: u32,
    /// Least recently used entry.
    tail: u32,
    /// Free list of slab entries (linked through `prev`).
    free: u32,
    len: usize,
    stats: StickStats,
}

impl StickTable {
    /// Build an empty table and reserve all its memory. Out-of-range `key_len` is clamped to
    /// 1..=64 and `size` to [`MAX_SIZE`]; [`StickTable::config`] returns the config as given
    /// (call [`StickTableConfig::validate`] first to reject such values instead).
    pub fn new(cfg: StickTableConfig) -> Self {
        Self::with_hash_seed(cfg, DEFAULT_SEED)
    }

    /// Like [`StickTable::new`] with a hash seed. Keys come from clients (session IDs), so a
    /// daemon facing the internet should pass a secret random seed to make probe-chain flooding
    /// impractical; the simulator passes its run seed. The seed changes no observable output.
    pub fn with_hash_seed(cfg: StickTableConfig, seed: u64) -> Self {
        let key_len = clamp_key_len(cfg.key_len);
        let capacity = cfg.size.min(MAX_SIZE);
        let expire_ms = u64::try_from(cfg.expire.as_millis()).unwrap_or(u64::MAX);
        // At most 75 % load, and always at least one empty slot so probes terminate.
        let nslots = capacity + capacity.div_ceil(3) + 1;
        StickTable {
            key_len,
            capacity,
            expire_ms,
            seed,
            meta: Vec::with_capacity(capacity),
            keys: Vec::with_capacity(capacity * key_len),
            slots: vec![0; nslots],
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
            stats: StickStats::default(),
            cfg,
        }
    }

    /// The configuration the table was built from.
    pub fn config(&self) -> &StickTableConfig {
        &self.cfg
    }

    /// Match a key: a live entry is refreshed (expiry and recency) and its server returned; an
    /// expired one is removed and reported as [`Lookup::Expired`].
    pub fn lookup(&mut self, key: &[u8], now: Timestamp) -> Lookup {
        let key = StickKey::new(key, self.key_len);
        let tag = self.tag(&key);
        match self.probe(&key, tag) {
            Probe::Found(pos, idx) => {
                let m = &mut self.meta[idx];
                let server = ServerId(m.server);
                if now.0 >= m.expires_at {
                    self.remove_at(pos, idx);
                    self.stats.expired += 1;
                    self.stats.misses += 1;
                    Lookup::Expired(server)
                } else {
                    m.expires_at = now.0.saturating_add(self.expire_ms);
                    self.move_to_front(idx as u32);
                    self.stats.hits += 1;
                    Lookup::Hit(server)
                }
            }
            Probe::Vacant(_) => {
                self.stats.misses += 1;
                Lookup::Miss
            }
        }
    }

    /// Store what traffic taught us: insert or overwrite (last writer wins) and refresh. May evict
    /// the least recently used entry; with `nopurge` and a full table the key is refused.
    pub fn learn(&mut self, key: &[u8], server: ServerId, now: Timestamp) -> Learn {
        self.store(key, server, now, Origin::Learn)
    }

    /// Operator action (`set table`): same semantics as [`StickTable::learn`], counted in
    /// `sets` instead of `learned`.
    pub fn set(&mut self, key: &[u8], server: ServerId, now: Timestamp) -> Learn {
        self.store(key, server, now, Origin::Set)
    }

    /// Inspect one key without side effects (`show table key=`): `None` if absent or expired.
    pub fn get(&self, key: &[u8], now: Timestamp) -> Option<StickEntry> {
        let key = StickKey::new(key, self.key_len);
        let tag = self.tag(&key);
        match self.probe(&key, tag) {
            Probe::Found(_, idx) if now.0 < self.meta[idx].expires_at => Some(self.entry(idx)),
            _ => None,
        }
    }

    /// Delete one key (`clear table key=`). Returns the server it pointed at, expired or not.
    pub fn remove(&mut self, key: &[u8]) -> Option<ServerId> {
        let key = StickKey::new(key, self.key_len);
        let tag = self.tag(&key);
        match self.probe(&key, tag) {
            Probe::Found(pos, idx) => {
                let server = ServerId(self.meta[idx].server);
                self.remove_at(pos, idx);
                self.stats.removed += 1;
                Some(server)
            }
            Probe::Vacant(_) => None,
        }
    }

    /// Delete every entry (`clear table`). Memory stays reserved; counters are cumulative and kept.
    pub fn clear(&mut self) {
        self.stats.removed += self.len as u64;
        self.slots.fill(0);
        self.meta.clear();
        self.keys.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free = NIL;
        self.len = 0;
    }

    /// Remove expired entries, oldest first, and return how many. Walks from the least recently
    /// used end and stops at the first live entry: exact when `now` never goes backwards (then
    /// expiry order is LRU order); otherwise it may leave some expired entries for the lazy checks,
    /// but it never removes a live one.
    pub fn purge_expired(&mut self, now: Timestamp) -> usize {
        let mut purged = 0;
        while self.tail != NIL && now.0 >= self.meta[self.tail as usize].expires_at {
            let idx = self.tail as usize;
            let pos = self.slot_of(idx);
            self.remove_at(pos, idx);
            purged += 1;
        }
        self.stats.expired += purged as u64;
        purged
    }

    /// When the next [`StickTable::purge_expired`] has work to do: the expiry of the least recently
    /// used entry (the earliest one when `now` is non-decreasing). `None` when empty.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        (self.tail != NIL).then(|| Timestamp(self.meta[self.tail as usize].expires_at))
    }

    /// Entries stored, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of entries (`size`, clamped to [`MAX_SIZE`]).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live entries sorted by key bytes: a dump order that depends on nothing but the contents.
    pub fn entries(&self, now: Timestamp) -> Vec<StickEntry> {
        self.collect(now, |_| true)
    }

    /// Live entries sticking to one server, sorted by key bytes (stats page, per-server view).
    pub fn entries_for_server(&self, server: ServerId, now: Timestamp) -> Vec<StickEntry> {
        self.collect(now, |m| m.server == server.0)
    }

    /// Live entries from most to least recently used: the order eviction would take in reverse.
    pub fn entries_by_recency(&self, now: Timestamp) -> Vec<StickEntry> {
        let mut out = Vec::new();
        let mut cur = self.head;
        while cur != NIL {
            let idx = cur as usize;
            if now.0 < self.meta[idx].expires_at {
                out.push(self.entry(idx));
            }
            cur = self.meta[idx].next;
        }
        out
    }

    /// Keep entries across a reload whose server list changed: `f` maps each old server to its
    /// new id, or `None` to drop the entry (server removed). Expiry and recency are unchanged.
    /// `f` is called once per entry, from most to least recently used.
    pub fn remap_servers(&mut self, mut f: impl FnMut(ServerId) -> Option<ServerId>) {
        let mut cur = self.head;
        while cur != NIL {
            let idx = cur as usize;
            cur = self.meta[idx].next;
            match f(ServerId(self.meta[idx].server)) {
                Some(new) => self.meta[idx].server = new.0,
                None => {
                    let pos = self.slot_of(idx);
                    self.remove_at(pos, idx);
                    self.stats.removed += 1;
                }
            }
        }
    }

    /// Carry the contents into a table built from a new config (reload with changed `len`,
    /// `size`, `expire` or `nopurge`). The most recently used entries are kept, up to the new size,
    /// keys re-normalised to the new length (if two collide, the more recent wins), deadlines kept
    /// but capped at `now + expire`; expired entries are dropped. Counters restart.
    pub fn reconfigured(self, cfg: StickTableConfig, now: Timestamp) -> StickTable {
        let mut next = StickTable::with_hash_seed(cfg, self.seed);
        let cap = now.0.saturating_add(next.expire_ms);
        // Oldest first, so the most recent end up at the head and win collisions.
        let mut cur = self.tail;
        while cur != NIL {
            let idx = cur as usize;
            let m = self.meta[idx];
            cur = m.prev;
            if now.0 >= m.expires_at {
                continue;
            }
            let key = StickKey::new(self.key_at(idx), next.key_len);
            next.store_raw(&key, m.server, m.expires_at.min(cap), now);
        }
        next.stats = StickStats::default();
        next
    }

    /// Counters and fill.
    pub fn stats(&self) -> StickStats {
        StickStats {
            entries: self.len as u64,
            capacity: self.capacity as u64,
            ..self.stats
        }
    }

    /// Bytes reserved by the table (struct plus the capacities of its three arrays). Fixed at
    /// construction: the table never grows.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.meta.capacity() * std::mem::size_of::<Meta>()
            + self.keys.capacity()
            + self.slots.capacity() * std::mem::size_of::<u64>()
    }

    // ---- internals ----

    fn store(&mut self, key: &[u8], server: ServerId, now: Timestamp, origin: Origin) -> Learn {
        let key = StickKey::new(key, self.key_len);
        let expires_at = now.0.saturating_add(self.expire_ms);
        let outcome = self.store_raw(&key, server.0, expires_at, now);
        let s = &mut self.stats;
        match (outcome, origin) {
            (Learn::Refused, _) => s.refused += 1,
            (_, Origin::Set) => s.sets += 1,
            (Learn::Inserted { .. }, Origin::Learn) => {
                s.inserted += 1;
                s.learned += 1;
            }
            (Learn::Updated { .. }, Origin::Learn) => {
                s.updated += 1;
                s.learned += 1;
            }
            (Learn::Refreshed, Origin::Learn) => s.refreshed += 1,
        }
        outcome
    }

    /// Insert or overwrite with an explicit deadline; counts expired/evicted but not the store.
    fn store_raw(&mut self, key: &StickKey, server: u32, expires_at: u64, now: Timestamp) -> Learn {
        let tag = self.tag(key);
        let mut vacant = match self.probe(key, tag) {
            Probe::Found(pos, idx) => {
                let m = &mut self.meta[idx];
                if now.0 < m.expires_at {
                    let previous = m.server;
                    m.server = server;
                    m.expires_at = expires_at;
                    self.move_to_front(idx as u32);
                    return if previous == server {
                        Learn::Refreshed
                    } else {
                        Learn::Updated {
                            previous: ServerId(previous),
                        }
                    };
                }
                // Expired: semantically absent. Drop it and insert afresh.
                self.remove_at(pos, idx);
                self.stats.expired += 1;
                None
            }
            Probe::Vacant(pos) => Some(pos),
        };
        if self.capacity == 0 {
            return Learn::Refused;
        }
        let mut evicted = false;
        if self.len == self.capacity {
            if self.purge_expired(now) == 0 {
                if self.cfg.nopurge {
                    return Learn::Refused;
                }
                let idx = self.tail as usize;
                let pos = self.slot_of(idx);
                self.remove_at(pos, idx);
                self.stats.evicted += 1;
                evicted = true;
            }
            // Removals shift slots: the vacant position must be found again.
            vacant = None;
        }
        let pos = match vacant {
            Some(pos) => pos,
            None => match self.probe(key, tag) {
                Probe::Vacant(pos) => pos,
                // Unreachable: the key was absent and removals do not insert.
                Probe::Found(..) => return Learn::Refused,
            },
        };
        let idx = self.alloc(key, server, tag, expires_at);
        self.slots[pos] = (u64::from(tag) << 32) | (idx as u64 + 1);
        self.push_front(idx);
        self.len += 1;
        Learn::Inserted { evicted }
    }

    /// Take a slab entry (free list first, else the next never-used one) and fill it.
    fn alloc(&mut self, key: &StickKey, server: u32, tag: u32, expires_at: u64) -> u32 {
        let m = Meta {
            prev: NIL,
            next: NIL,
            server,
            tag,
            expires_at,
        };
        if self.free != NIL {
            let idx = self.free;
            let i = idx as usize;
            self.free = self.meta[i].prev;
            self.meta[i] = m;
            let kl = self.key_len;
            self.keys[i * kl..(i + 1) * kl].copy_from_slice(key.as_bytes());
            idx
        } else {
            let idx = self.meta.len() as u32;
            self.meta.push(m);
            self.keys.extend_from_slice(key.as_bytes());
            idx
        }
    }

    /// Remove entry `idx` whose index slot is `pos`: unlink, free, backward-shift the index.
    fn remove_at(&mut self, pos: usize, idx: usize) {
        self.unlink(idx as u32);
        self.meta[idx].prev = self.free;
        self.free = idx as u32;
        self.len -= 1;
        self.remove_slot(pos);
    }

    /// Backward-shift deletion for linear probing: pull later entries of the cluster into the
    /// hole when their home slot allows it, so no tombstones are needed.
    fn remove_slot(&mut self, mut hole: usize) {
        let n = self.slots.len();
        let mut j = hole;
        loop {
            j = if j + 1 == n { 0 } else { j + 1 };
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = home_slot((s >> 32) as u32, n);
            // The entry at j may stay iff its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    fn probe(&self, key: &StickKey, tag: u32) -> Probe {
        let n = self.slots.len();
        let kl = self.key_len;
        let want = key.as_bytes();
        let mut pos = home_slot(tag, n);
        loop {
            let s = self.slots[pos];
            if s == 0 {
                return Probe::Vacant(pos);
            }
            if (s >> 32) as u32 == tag {
                let idx = (s as u32 - 1) as usize;
                if &self.keys[idx * kl..(idx + 1) * kl] == want {
                    return Probe::Found(pos, idx);
                }
            }
            pos = if pos + 1 == n { 0 } else { pos + 1 };
        }
    }

    /// Index slot holding entry `idx` (which must be stored).
    fn slot_of(&self, idx: usize) -> usize {
        let n = self.slots.len();
        let want = idx as u64 + 1;
        let mut pos = home_slot(self.meta[idx].tag, n);
        // Bounded by n: the entry is in the index, so the loop finds it within one cycle.
        for _ in 0..n {
            if self.slots[pos] & 0xffff_ffff == want {
                return pos;
            }
            pos = if pos + 1 == n { 0 } else { pos + 1 };
        }
        debug_assert!(false, "stored entry {idx} missing from the index");
        pos
    }

    fn tag(&self, key: &StickKey) -> u32 {
        (hash_key(key.as_bytes(), self.seed) >> 32) as u32
    }

    fn key_at(&self, idx: usize) -> &[u8] {
        &self.keys[idx * self.key_len..(idx + 1) * self.key_len]
    }

    fn entry(&self, idx: usize) -> StickEntry {
        let m = &self.meta[idx];
        StickEntry {
            key: StickKey::new(self.key_at(idx), self.key_len),
            server: ServerId(m.server),
            expires_at: Timestamp(m.expires_at),
        }
    }

    fn collect(&self, now: Timestamp, keep: impl Fn(&Meta) -> bool) -> Vec<StickEntry> {
        let mut out = Vec::new();
        let mut cur = self.head;
        while cur != NIL {
            let idx = cur as usize;
            let m = &self.meta[idx];
            if now.0 < m.expires_at && keep(m) {
                out.push(self.entry(idx));
            }
            cur = m.next;
        }
        out.sort_unstable_by_key(|e| e.key);
        out
    }

    fn unlink(&mut self, idx: u32) {
        let Meta { prev, next, .. } = self.meta[idx as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.meta[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.meta[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, idx: u32) {
        let old = self.head;
        {
            let m = &mut self.meta[idx as usize];
            m.prev = NIL;
            m.next = old;
        }
        if old == NIL {
            self.tail = idx;
        } else {
            self.meta[old as usize].prev = idx;
        }
        self.head = idx;
    }

    fn move_to_front(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.push_front(idx);
        }
    }
}

/// Home slot of a tag in an index of `n` slots (multiply-shift range reduction, no power of two
/// needed, so the index is sized to the table rather than rounded up).
fn home_slot(tag: u32, n: usize) -> usize {
    ((u64::from(tag) * n as u64) >> 32) as usize
}

/// 64×64→128 multiply folded to 64 bits: the mixing step of wyhash-style hashes.
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Hash a key, 16 bytes per step. Written here rather than taken from std so it is fixed across
/// Rust versions and platforms, fast for 32-byte keys, and seedable.
fn hash_key(key: &[u8], seed: u64) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
    let mut h = seed ^ P0;
    let mut chunks = key.chunks_exact(16);
    for c in &mut chunks {
        let (a, b) = c.split_at(8);
        h = mum(word(a) ^ P1, word(b) ^ h);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 16];
        buf[..rest.len()].copy_from_slice(rest);
        let (a, b) = buf.split_at(8);
        h = mum(word(a) ^ P1, word(b) ^ h);
    }
    mum(h ^ P2, key.len() as u64 ^ P1)
}

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests;
