//! The stick table: fixed-length key → server, with expiry and exact LRU eviction.
//!
//! Layout (all preallocated for `size` entries at construction, so memory is bounded and the data
//! path never allocates), chosen so that a hit on a table far larger than the CPU caches costs two
//! dependent cache misses — the index line, then the entry — and so that the code between them
//! has few branches that wait on a miss, letting the CPU run ahead into the next operation:
//! - `index` ([`index`]) — 64-byte buckets of 12 record numbers with a tag byte each (a byte of
//!   the key hash) and an overflow count; a probe reads one line and matches the twelve tags with
//!   word arithmetic. About 8 bytes per entry (two thirds of the lanes used when full).
//! - `records: Vec<Line>` — one 64-byte-aligned cache line per entry (two when the key is longer
//!   than 40 bytes): expiry, server, hash tag, then the key as little-endian words. Header and key
//!   share the line, so confirming a hit and refreshing it touch nothing else.
//! - `ring: Vec<u32>` + `ring_tags: Vec<u32>` — the *touch queue*, a ring of `2 × size` items
//!   (entry index and its hash tag), least recently touched first — and `links: Vec<u32>`, per
//!   record its item's position. A touch appends the entry at the back and points the link at the
//!   new item; the previous item turns stale by itself, because an item is live only while its
//!   record's link points back at it. So a touch writes only to the link and to the ring's tail:
//!   no pointer chase, and no store to a random place in the ring (a store that misses the cache
//!   holds up the store buffer and, behind it, the next lookups). Eviction,
//!   [`StickTable::purge_expired`] and [`StickTable::next_expiry`] take the first live item from
//!   the front, popping stale ones; the item's tag names the victim's index line, so the line, the
//!   link and the record load in parallel. When the ring is full it is compacted in place, in
//!   order, by a loop with no branch on what it reads; that reads one link per item (the links,
//!   4 bytes per entry, stay in the caches, unlike the records) and frees at least `size` items.
//!
//! With a 32-byte key that is 64 + 8 + 2 × 8 + 4 ≈ 92 bytes per entry (HAProxy: ≈ 184), under
//! the 96-byte budget; the order of live queue items is exactly the LRU order a linked list would
//! keep, which the model-based proptest checks after every operation.
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

use serde::{Deserialize, Serialize};

use super::key::{clamp_key_len, StickKey, MAX_KEY_LEN};
use crate::config::defaults;
use crate::config::units::{duration_text, size_text};
use crate::{ServerId, Timestamp};

mod index;

use index::{Index, Slot};

/// Largest `size` a table accepts (16 Mi entries ≈ 1.5 GB with 32-byte keys). Larger sizes are
/// clamped by [`StickTable::new`] and rejected by [`StickTableConfig::validate`]: the table
/// preallocates, and a typo must not reserve the machine's memory.
pub const MAX_SIZE: usize = 1 << 24;

/// Seed used when the owner does not pass one: fixed so that runs are reproducible.
const DEFAULT_SEED: u64 = 0x2d35_8dcc_aa6c_78a5;

/// Marks a stored record's link (its queue position), so a free record never looks like the
/// target of a queue item.
const LIVE: u32 = 1 << 31;

/// End of the free list / no entry. Has no [`LIVE`] bit, and is no record number.
const NIL: u32 = !LIVE;

/// Type of a table's keys (HAProxy `stick-table type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StickKeyType {
    /// Raw bytes, zero-padded or truncated to `key-len`.
    #[default]
    Binary,
    /// An IPv4 address (IPv6 clients are mapped).
    Ip,
    /// Text, truncated to `key-len`.
    String,
}

/// What a table is declared as: `stick-table type binary len <key_len> size <size> expire
/// <expire> [nopurge]` in haproxy.cfg, `[backend.stick-table]` in a native config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StickTableConfig {
    /// Key type (HAProxy rules only; native keys are binary).
    #[serde(default, rename = "type")]
    pub key_type: StickKeyType,
    /// Maximum number of entries (`size`, `"60k"` = 61440); a table holds at most
    /// [`MAX_SIZE`].
    #[serde(default = "defaults::table_size", with = "size_text")]
    pub size: u64,
    /// How long an entry lives after it was last touched (`expire`).
    #[serde(default = "defaults::table_expire", with = "duration_text")]
    pub expire: Duration,
    /// Key length in bytes (`len`); keys are zero-padded or truncated to it. A table holds
    /// 1..=[`super::MAX_KEY_LEN`].
    #[serde(default = "defaults::key_len")]
    pub key_len: u32,
    /// Refuse new keys when full instead of evicting the least recently used entry.
    #[serde(default)]
    pub nopurge: bool,
    /// The peers section replicating this table (`peers NAME`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<String>,
}

impl Default for StickTableConfig {
    fn default() -> Self {
        StickTableConfig {
            key_type: StickKeyType::default(),
            size: defaults::table_size(),
            expire: defaults::table_expire(),
            key_len: defaults::key_len(),
            nopurge: false,
            peers: None,
        }
    }
}

/// Why a [`StickTableConfig`] cannot be built as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StickConfigError {
    /// `len` outside 1..=64.
    #[error("stick table key length {0} is out of range: use 1..=64 (32 for TLS session IDs)")]
    KeyLen(u32),
    /// `size` above [`MAX_SIZE`].
    #[error("stick table size {0} is too large: use at most 16m entries")]
    Size(u64),
}

impl StickTableConfig {
    /// A binary-key table of `size` entries with keys of `key_len` bytes, evicting when full.
    pub fn new(key_len: usize, size: usize, expire: Duration) -> Self {
        StickTableConfig {
            key_type: StickKeyType::Binary,
            size: size as u64,
            expire,
            key_len: u32::try_from(key_len).unwrap_or(u32::MAX),
            nopurge: false,
            peers: None,
        }
    }

    /// Entries at most, as the table holds them.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.size)
            .unwrap_or(usize::MAX)
            .min(MAX_SIZE)
    }

    /// Bytes of a key, as the table holds them.
    pub fn key_bytes(&self) -> usize {
        clamp_key_len(usize::try_from(self.key_len).unwrap_or(usize::MAX))
    }

    /// Check the declared values instead of letting [`StickTable::new`] silently clamp them; the
    /// config loader calls this to report the line at fault.
    pub fn validate(&self) -> Result<(), StickConfigError> {
        if self.key_len == 0 || self.key_len as usize > MAX_KEY_LEN {
            return Err(StickConfigError::KeyLen(self.key_len));
        }
        if self.size > MAX_SIZE as u64 {
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

/// One cache line. Entry records are made of whole lines, so that with keys of up to 40 bytes an
/// entry's header and key sit in a single line and a hit costs one miss after the index slot.
#[derive(Copy, Clone, Debug)]
#[repr(C, align(64))]
struct Line([u64; WORDS_PER_LINE]);

const WORDS_PER_LINE: usize = 8;
const EMPTY_LINE: Line = Line([0; WORDS_PER_LINE]);

/// Record word 0: the expiry in milliseconds.
const W_EXPIRES: usize = 0;
/// Record word 1: the server (low 32 bits) and the key's hash tag (high 32 bits).
const W_SERVER_TAG: usize = 1;
// Record word 2 is unused (the queue link lives in `links`, which compaction reads without
// touching records); keys start at word 3 so that the line layout stays as it was.
/// Record words 3..: the key, little-endian, zero-padded to whole words.
const W_KEY: usize = 3;

/// The touch queue holds this many items per entry of capacity. Every touch appends one item and
/// turns the previous one stale; a full queue is compacted, which reads one link per item and
/// frees at least `(QUEUE_FACTOR - 1) × capacity` items, so compaction adds at most
/// `QUEUE_FACTOR / (QUEUE_FACTOR - 1)` link reads per touch. Items are 8 bytes (record and hash
/// tag, in `ring` and `ring_tags`), so 2 keeps the queue at 16 bytes per entry; the links are a 4-byte array that the caches
/// hold, so the two reads per touch are cheap.
const QUEUE_FACTOR: usize = 2;

/// Whether a store comes from traffic or from the operator, for the counters.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Origin {
    Learn,
    Set,
}

/// Result of probing the index for a key.
enum Probe {
    /// Key present: index slot and entry index.
    Found(Slot, usize),
    /// Key absent.
    Vacant,
}

/// A key normalised to the table's length (zero-padded or truncated, as [`StickKey`] does), split
/// into the little-endian words records store (so comparing it against a record is a handful of
/// word compares), and hashed once.
struct KeyWords {
    words: [u64; MAX_KEY_LEN / 8],
    hash: u64,
}

impl KeyWords {
    /// `key_len` is the table's, already clamped to 1..=`MAX_KEY_LEN`.
    #[inline(always)]
    fn new(raw: &[u8], key_len: usize, seed: u64) -> Self {
        // The data path's case (a whole sample, a key of whole words: 32-byte session IDs) as
        // straight-line code, unrolled per word count: no length tests, no loops.
        if raw.len() >= key_len && key_len % 8 == 0 {
            match key_len / 8 {
                1 => return Self::whole::<1>(raw, seed),
                2 => return Self::whole::<2>(raw, seed),
                3 => return Self::whole::<3>(raw, seed),
                4 => return Self::whole::<4>(raw, seed),
                5 => return Self::whole::<5>(raw, seed),
                6 => return Self::whole::<6>(raw, seed),
                7 => return Self::whole::<7>(raw, seed),
                8 => return Self::whole::<8>(raw, seed),
                _ => {}
            }
        }
        Self::padded(raw, key_len, seed)
    }

    /// The first `N` words of `raw` (which holds at least `8 × N` bytes).
    #[inline(always)]
    fn whole<const N: usize>(raw: &[u8], seed: u64) -> Self {
        let mut words = [0u64; MAX_KEY_LEN / 8];
        for (i, w) in words.iter_mut().enumerate().take(N) {
            *w = le_word(&raw[i * 8..]);
        }
        let hash = hash_words(&words[..N], seed);
        KeyWords { words, hash }
    }

    /// Any sample and key length: zero-padded or truncated.
    #[inline(never)]
    fn padded(raw: &[u8], key_len: usize, seed: u64) -> Self {
        let mut words = [0u64; MAX_KEY_LEN / 8];
        let raw = &raw[..raw.len().min(key_len)];
        let whole = raw.len() / 8;
        for (i, w) in words.iter_mut().enumerate().take(whole) {
            *w = le_word(&raw[i * 8..]);
        }
        if raw.len() % 8 != 0 {
            // The sample is shorter than the key (zero padding) or the key is not whole words.
            let mut b = [0u8; 8];
            b[..raw.len() % 8].copy_from_slice(&raw[whole * 8..]);
            words[whole] = u64::from_le_bytes(b);
        }
        let hash = hash_words(&words[..key_len.div_ceil(8)], seed);
        KeyWords { words, hash }
    }

    /// The 32-bit tag that places the key (home slot) and filters index probes.
    fn tag(&self) -> u32 {
        (self.hash >> 32) as u32
    }
}

/// A fixed-capacity map from normalised keys to servers with expiry and exact LRU eviction.
/// See the module documentation for layout and semantics.
#[derive(Clone, Debug)]
pub struct StickTable {
    cfg: StickTableConfig,
    key_len: usize,
    /// Words of a key (`key_len` rounded up to 8 bytes).
    key_words: usize,
    /// Cache lines per record.
    lines_per: usize,
    capacity: usize,
    expire_ms: u64,
    seed: u64,
    /// Entry records, `lines_per` lines each; grows (within its reservation) up to `capacity`.
    records: Vec<Line>,
    index: Index,
    /// Per record: its position in the touch queue with [`LIVE`] set when stored; the next free
    /// record when free. Kept apart from the records (4 bytes each, so a 1M table's links fit in
    /// the caches) because compaction reads one link per queue item.
    links: Vec<u32>,
    /// The touch queue: a ring of record indices, least recently touched first. The item at ring
    /// position `r` is live iff its record is stored and points back at `r`
    /// ([`StickTable::live_item`]); any other item is stale.
    ring: Vec<u32>,
    /// The hash tag of each ring item's entry, so that eviction finds the entry's index line
    /// without waiting for its record.
    ring_tags: Vec<u32>,
    /// Ring position of the oldest item (live or stale).
    front: usize,
    /// Items in the queue, live and stale.
    queued: usize,
    /// Free list of records (linked through `links`).
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
        let key_len = cfg.key_bytes();
        let key_words = key_len.div_ceil(8);
        let lines_per = (W_KEY + key_words).div_ceil(WORDS_PER_LINE);
        let capacity = cfg.capacity();
        let expire_ms = u64::try_from(cfg.expire.as_millis()).unwrap_or(u64::MAX);
        StickTable {
            key_len,
            key_words,
            lines_per,
            capacity,
            expire_ms,
            seed,
            records: Vec::with_capacity(capacity * lines_per),
            index: Index::new(capacity),
            links: vec![NIL; capacity],
            ring: vec![NIL; capacity * QUEUE_FACTOR],
            ring_tags: vec![0; capacity * QUEUE_FACTOR],
            front: 0,
            queued: 0,
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
        let key = self.key(key);
        let tag = key.tag();
        match self.probe(&key, tag) {
            Probe::Found(pos, idx) => {
                let server = ServerId(self.word(idx, W_SERVER_TAG) as u32);
                if now.0 >= self.word(idx, W_EXPIRES) {
                    self.remove_at(pos, idx, tag);
                    self.stats.expired += 1;
                    self.stats.misses += 1;
                    Lookup::Expired(server)
                } else {
                    self.set_word(idx, W_EXPIRES, now.0.saturating_add(self.expire_ms));
                    self.touch(idx, tag);
                    self.stats.hits += 1;
                    Lookup::Hit(server)
                }
            }
            Probe::Vacant => {
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

    /// Store an entry carried over from another process (the table a hitless upgrade hands to
    /// the new process): `key -> server` with the deadline it had there, capped at
    /// `now + expire` as [`StickTable::reconfigured`] caps it, so an entry never outlives what
    /// this table's `expire` allows. A deadline already past stores nothing (`None`); otherwise
    /// as [`StickTable::set`] (may evict, may be refused), counted as a set.
    pub fn restore(
        &mut self,
        key: &[u8],
        server: ServerId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Option<Learn> {
        if expires_at.0 <= now.0 {
            return None;
        }
        let key = self.key(key);
        let deadline = expires_at.0.min(now.0.saturating_add(self.expire_ms));
        let outcome = self.store_raw(&key, server.0, deadline, now);
        match outcome {
            Learn::Refused => self.stats.refused += 1,
            _ => self.stats.sets += 1,
        }
        Some(outcome)
    }

    /// Inspect one key without side effects (`show table key=`): `None` if absent or expired.
    pub fn get(&self, key: &[u8], now: Timestamp) -> Option<StickEntry> {
        let key = self.key(key);
        let tag = key.tag();
        match self.probe(&key, tag) {
            Probe::Found(_, idx) if now.0 < self.word(idx, W_EXPIRES) => Some(self.entry(idx)),
            _ => None,
        }
    }

    /// Delete one key (`clear table key=`). Returns the server it pointed at, expired or not.
    pub fn remove(&mut self, key: &[u8]) -> Option<ServerId> {
        let key = self.key(key);
        let tag = key.tag();
        match self.probe(&key, tag) {
            Probe::Found(pos, idx) => {
                let server = ServerId(self.word(idx, W_SERVER_TAG) as u32);
                self.remove_at(pos, idx, tag);
                self.stats.removed += 1;
                Some(server)
            }
            Probe::Vacant => None,
        }
    }

    /// Delete every entry (`clear table`). Memory stays reserved; counters are cumulative and kept.
    pub fn clear(&mut self) {
        self.stats.removed += self.len as u64;
        self.index.clear();
        self.records.clear();
        self.front = 0;
        self.queued = 0;
        self.free = NIL;
        self.len = 0;
    }

    /// Remove expired entries, oldest first, and return how many. Walks from the least recently
    /// used end and stops at the first live entry: exact when `now` never goes backwards (then
    /// expiry order is LRU order); otherwise it may leave some expired entries for the lazy checks,
    /// but it never removes a live one.
    pub fn purge_expired(&mut self, now: Timestamp) -> usize {
        let mut purged = 0;
        while let Some(idx) = self.oldest() {
            if now.0 < self.word(idx, W_EXPIRES) {
                break;
            }
            self.remove_oldest(idx);
            purged += 1;
        }
        self.stats.expired += purged as u64;
        purged
    }

    /// When the next [`StickTable::purge_expired`] has work to do: the expiry of the least recently
    /// used entry (the earliest one when `now` is non-decreasing). `None` when empty.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        (0..self.queued)
            .find_map(|k| self.live_item(self.ring_pos(k)))
            .map(|idx| Timestamp(self.word(idx, W_EXPIRES)))
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
        self.collect(now, |s| s == server.0)
    }

    /// Live entries from most to least recently used: the order eviction would take in reverse.
    pub fn entries_by_recency(&self, now: Timestamp) -> Vec<StickEntry> {
        let mut out = Vec::new();
        for k in (0..self.queued).rev() {
            match self.live_item(self.ring_pos(k)) {
                Some(idx) if now.0 < self.word(idx, W_EXPIRES) => out.push(self.entry(idx)),
                _ => {}
            }
        }
        out
    }

    /// Keep entries across a reload whose server list changed: `f` maps each old server to its
    /// new id, or `None` to drop the entry (server removed). Expiry and recency are unchanged.
    /// `f` is called once per entry, from most to least recently used.
    pub fn remap_servers(&mut self, mut f: impl FnMut(ServerId) -> Option<ServerId>) {
        // Walk ring positions captured up front: a removal only frees its record (turning its
        // item stale), so every position still to visit keeps its content.
        if self.queued == 0 {
            return;
        }
        let n = self.ring.len();
        let mut at = self.ring_pos(self.queued - 1);
        for _ in 0..self.queued {
            let item = self.live_item(at);
            at = if at == 0 { n - 1 } else { at - 1 };
            let Some(idx) = item else {
                continue;
            };
            let w = self.word(idx, W_SERVER_TAG);
            match f(ServerId(w as u32)) {
                Some(new) => {
                    self.set_word(idx, W_SERVER_TAG, (w & !0xffff_ffff) | u64::from(new.0))
                }
                None => {
                    self.remove_tagged(idx, self.tag_at(idx));
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
        for k in 0..self.queued {
            let Some(idx) = self.live_item(self.ring_pos(k)) else {
                continue;
            };
            let expires_at = self.word(idx, W_EXPIRES);
            if now.0 >= expires_at {
                continue;
            }
            let key = next.key(&self.key_at(idx));
            let server = self.word(idx, W_SERVER_TAG) as u32;
            next.store_raw(&key, server, expires_at.min(cap), now);
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
            + self.records.capacity() * std::mem::size_of::<Line>()
            + self.index.memory_bytes()
            + self.links.capacity() * std::mem::size_of::<u32>()
            + self.ring.capacity() * std::mem::size_of::<u32>()
            + self.ring_tags.capacity() * std::mem::size_of::<u32>()
    }

    // ---- internals ----

    fn store(&mut self, key: &[u8], server: ServerId, now: Timestamp, origin: Origin) -> Learn {
        let key = self.key(key);
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
    fn store_raw(&mut self, key: &KeyWords, server: u32, expires_at: u64, now: Timestamp) -> Learn {
        let tag = key.tag();
        match self.probe(key, tag) {
            Probe::Found(pos, idx) => {
                if now.0 < self.word(idx, W_EXPIRES) {
                    let previous = self.word(idx, W_SERVER_TAG) as u32;
                    self.set_word(idx, W_SERVER_TAG, u64::from(server) | u64::from(tag) << 32);
                    self.set_word(idx, W_EXPIRES, expires_at);
                    self.touch(idx, tag);
                    return if previous == server {
                        Learn::Refreshed
                    } else {
                        Learn::Updated {
                            previous: ServerId(previous),
                        }
                    };
                }
                // Expired: semantically absent. Drop it and insert afresh.
                self.remove_at(pos, idx, tag);
                self.stats.expired += 1;
            }
            Probe::Vacant => {}
        }
        if self.capacity == 0 {
            return Learn::Refused;
        }
        let mut evicted = false;
        // Full: drop expired entries from the LRU end; if there were none, evict (or refuse).
        if self.len == self.capacity && self.purge_expired(now) == 0 {
            if self.cfg.nopurge {
                return Learn::Refused;
            }
            if let Some(idx) = self.oldest() {
                self.remove_oldest(idx);
                self.stats.evicted += 1;
                evicted = true;
            }
        }
        let idx = self.alloc(key, server, tag, expires_at);
        self.index.insert(tag, idx);
        self.push_back(idx, tag);
        self.len += 1;
        Learn::Inserted { evicted }
    }

    /// Take a record (free list first, else the next never-used one) and fill it.
    fn alloc(&mut self, key: &KeyWords, server: u32, tag: u32, expires_at: u64) -> usize {
        let idx = if self.free != NIL {
            let idx = self.free as usize;
            self.free = self.links[idx];
            idx
        } else {
            let idx = self.records.len() / self.lines_per;
            let grown = self.records.len() + self.lines_per;
            self.records.resize(grown, EMPTY_LINE);
            idx
        };
        self.set_word(idx, W_EXPIRES, expires_at);
        self.set_word(idx, W_SERVER_TAG, u64::from(server) | u64::from(tag) << 32);
        for (i, &w) in key.words[..self.key_words].iter().enumerate() {
            self.set_word(idx, W_KEY + i, w);
        }
        idx
    }

    /// Remove entry `idx` whose index slot is `pos`: free the record (which turns its queue item
    /// stale) and empty the slot.
    fn remove_at(&mut self, pos: Slot, idx: usize, tag: u32) {
        self.links[idx] = self.free;
        self.free = idx as u32;
        self.len -= 1;
        self.index.remove(pos, tag);
    }

    /// Remove entry `idx`, just returned by [`StickTable::oldest`]. Its hash tag comes from its
    /// queue item, not from its record, so the index line and the record load in parallel.
    fn remove_oldest(&mut self, idx: usize) {
        self.remove_tagged(idx, self.ring_tags[self.front]);
    }

    /// Remove entry `idx`, stored under hash tag `tag`, finding its index slot first.
    fn remove_tagged(&mut self, idx: usize, tag: u32) {
        let pos = self.index.slot_of(tag, idx);
        self.remove_at(pos, idx, tag);
    }

    #[inline(always)]
    fn probe(&self, key: &KeyWords, tag: u32) -> Probe {
        match self.index.find(tag, |idx| self.key_matches(idx, key)) {
            Some((pos, idx)) => Probe::Found(pos, idx),
            None => Probe::Vacant,
        }
    }

    /// The hash tag stored with entry `idx`.
    fn tag_at(&self, idx: usize) -> u32 {
        (self.word(idx, W_SERVER_TAG) >> 32) as u32
    }

    #[inline(always)]
    fn key_matches(&self, idx: usize, key: &KeyWords) -> bool {
        if self.lines_per == 1 {
            // Words past the key are zero in both: compare the whole line tail at fixed width.
            return words_equal::<{ WORDS_PER_LINE - W_KEY }>(
                &self.records[idx].0[W_KEY..],
                &key.words,
            );
        }
        let base = idx * self.lines_per;
        key.words[..self.key_words]
            .iter()
            .enumerate()
            .all(|(i, &w)| {
                let at = W_KEY + i;
                self.records[base + at / WORDS_PER_LINE].0[at % WORDS_PER_LINE] == w
            })
    }

    /// Index slot holding entry `idx` (which must be stored).
    #[cfg(test)]
    fn slot_of(&self, idx: usize) -> Slot {
        self.index.slot_of(self.tag_at(idx), idx)
    }

    #[inline(always)]
    fn key(&self, raw: &[u8]) -> KeyWords {
        KeyWords::new(raw, self.key_len, self.seed)
    }

    fn word(&self, idx: usize, w: usize) -> u64 {
        self.records[idx * self.lines_per + w / WORDS_PER_LINE].0[w % WORDS_PER_LINE]
    }

    fn set_word(&mut self, idx: usize, w: usize, v: u64) {
        self.records[idx * self.lines_per + w / WORDS_PER_LINE].0[w % WORDS_PER_LINE] = v;
    }

    /// The stored key bytes of entry `idx`.
    fn key_at(&self, idx: usize) -> StickKey {
        let mut buf = [0u8; MAX_KEY_LEN];
        for (i, chunk) in buf.chunks_exact_mut(8).take(self.key_words).enumerate() {
            chunk.copy_from_slice(&self.word(idx, W_KEY + i).to_le_bytes());
        }
        StickKey::new(&buf[..self.key_len], self.key_len)
    }

    fn entry(&self, idx: usize) -> StickEntry {
        StickEntry {
            key: self.key_at(idx),
            server: ServerId(self.word(idx, W_SERVER_TAG) as u32),
            expires_at: Timestamp(self.word(idx, W_EXPIRES)),
        }
    }

    fn collect(&self, now: Timestamp, keep: impl Fn(u32) -> bool) -> Vec<StickEntry> {
        let mut out = Vec::new();
        for k in 0..self.queued {
            let Some(idx) = self.live_item(self.ring_pos(k)) else {
                continue;
            };
            if now.0 < self.word(idx, W_EXPIRES) && keep(self.word(idx, W_SERVER_TAG) as u32) {
                out.push(self.entry(idx));
            }
        }
        out.sort_unstable_by_key(|e| e.key);
        out
    }

    // ---- touch queue ----

    /// Ring position of the `k`-th queue item from the front (`k < ring.len()`).
    fn ring_pos(&self, k: usize) -> usize {
        let at = self.front.wrapping_add(k);
        if at >= self.ring.len() {
            at.wrapping_sub(self.ring.len())
        } else {
            at
        }
    }

    /// The record named by the queue item at ring position `at`, if that item is live: the
    /// record is stored and points back at `at`. Deciding this from the record, instead of
    /// clearing the old item on every touch, keeps a touch free of a store to a random place in
    /// the ring, which on a cache miss stalls the store buffer and with it the next lookups.
    fn live_item(&self, at: usize) -> Option<usize> {
        let idx = self.ring[at] as usize;
        let stored = idx * self.lines_per < self.records.len();
        (stored && self.links[idx] == at as u32 | LIVE).then_some(idx)
    }

    /// The least recently used entry: the first live item from the front, popping stale ones.
    fn oldest(&mut self) -> Option<usize> {
        while self.queued > 0 {
            if let Some(idx) = self.live_item(self.front) {
                return Some(idx);
            }
            self.front = self.ring_pos(1);
            self.queued -= 1;
        }
        None
    }

    /// Make entry `idx` the most recently used: append it; its previous item turns stale because
    /// the record now points at the new one.
    #[inline(always)]
    fn touch(&mut self, idx: usize, tag: u32) {
        let at = (self.links[idx] & !LIVE) as usize;
        if at == self.ring_pos(self.queued - 1) {
            return; // already the most recent
        }
        self.push_back(idx, tag);
    }

    /// Append entry `idx` as the most recently used, compacting first if the ring is full.
    #[inline(always)]
    fn push_back(&mut self, idx: usize, tag: u32) {
        if self.queued == self.ring.len() {
            self.compact();
        }
        let at = self.ring_pos(self.queued);
        self.ring[at] = idx as u32;
        self.ring_tags[at] = tag;
        self.queued += 1;
        self.links[idx] = at as u32 | LIVE;
    }

    /// Squeeze the stale items out of the queue, keeping the live ones in order. Runs when the
    /// ring is full, which leaves at least `ring.len() - capacity` free items afterwards. Nothing
    /// in the loop branches on what it reads (each item's liveness is in a random link), so the
    /// CPU keeps many of those reads in flight.
    #[cold]
    #[inline(never)]
    fn compact(&mut self) {
        let n = self.ring.len();
        let mut read = self.front;
        let mut write = self.front;
        let mut kept = 0;
        for _ in 0..self.queued {
            // An item inside the queue always names a record that exists; only whether it still
            // points back is in question.
            let idx = self.ring[read] as usize;
            let tag = self.ring_tags[read];
            let link = self.links[idx];
            let live = link == read as u32 | LIVE;
            self.ring[write] = idx as u32;
            self.ring_tags[write] = tag;
            // A stale item's record gets its own link back: a store either way, no branch.
            self.links[idx] = if live { write as u32 | LIVE } else { link };
            let step = usize::from(live);
            write += step;
            if write == n {
                write = 0;
            }
            kept += step;
            read = if read + 1 == n { 0 } else { read + 1 };
        }
        self.queued = kept;
    }
}

/// 64×64→128 multiply folded to 64 bits: the mixing step of wyhash-style hashes.
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Hash a key's words, two per step. Written here rather than taken from std so it is fixed
/// across Rust versions and platforms, fast for 32-byte keys, and seedable. All keys of a table
/// have its length, so the zero padding of the last word is unambiguous.
#[inline(always)]
fn hash_words(words: &[u64], seed: u64) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
    let mut h = seed ^ P0;
    let mut pairs = words.chunks_exact(2);
    for p in &mut pairs {
        h = mum(p[0] ^ P1, p[1] ^ h);
    }
    if let [last] = pairs.remainder() {
        h = mum(last ^ P1, h);
    }
    mum(h ^ P2, words.len() as u64 ^ P1)
}

/// The first `N` words of `a` and `b` are equal: no early exit and no call, so the compiler emits
/// a few wide compares.
#[inline(always)]
fn words_equal<const N: usize>(a: &[u64], b: &[u64]) -> bool {
    let (a, b) = (&a[..N], &b[..N]);
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// The little-endian word in the first 8 bytes of `b` (which holds at least 8).
#[inline(always)]
fn le_word(b: &[u8]) -> u64 {
    let b: [u8; 8] = b[..8].try_into().expect("8 bytes");
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod tests;
