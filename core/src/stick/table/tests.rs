//! Unit tests of the stick table, and a model-based proptest against a plain `Vec` LRU with the
//! same semantics written from the spec (not from the implementation).

use super::*;
use proptest::prelude::*;

fn cfg(key_len: usize, size: usize, expire_ms: u64, nopurge: bool) -> StickTableConfig {
    StickTableConfig {
        nopurge,
        ..StickTableConfig::new(key_len, size, Duration::from_millis(expire_ms))
    }
}

fn t(ms: u64) -> Timestamp {
    Timestamp(ms)
}

fn key32(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = i;
    for chunk in k.chunks_exact_mut(8) {
        // splitmix64: random-looking, deterministic keys.
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    k
}

impl StickTable {
    /// Every structural invariant: touch queue, records, free list, index and counters agree.
    fn assert_consistent(&self) {
        let records = self.records.len() / self.lines_per;
        assert_eq!(self.records.len() % self.lines_per, 0);
        assert!(self.queued <= self.ring.len());
        let mut seen = vec![false; records];
        let mut count = 0;
        for k in 0..self.queued {
            let at = self.ring_pos(k);
            let Some(idx) = self.live_item(at) else {
                continue;
            };
            assert!(
                !std::mem::replace(&mut seen[idx], true),
                "entry {idx} queued twice"
            );
            let key = self.key(&self.key_at(idx));
            let tag = (self.word(idx, W_SERVER_TAG) >> 32) as u32;
            assert_eq!(key.tag(), tag, "stale tag at {idx}");
            assert_eq!(self.ring_tags[at], tag, "stale queue tag at {at}");
            match self.probe(&key, tag) {
                Probe::Found(pos, found) => {
                    assert_eq!(found, idx);
                    assert_eq!(self.slot_of(idx), pos);
                }
                Probe::Vacant => panic!("entry {idx} not reachable through the index"),
            }
            count += 1;
        }
        assert_eq!(count, self.len);
        assert!(self.len <= self.capacity);
        assert_eq!(self.index.occupied(), self.len);
        // Overflow counts match a recount (records of free entries are never consulted).
        self.index.assert_counts(|idx| self.tag_at(idx));
        let mut free = 0;
        let mut f = self.free;
        while f != NIL {
            assert!(
                !std::mem::replace(&mut seen[f as usize], true),
                "free entry {f} in use"
            );
            assert_eq!(
                self.links[f as usize] & LIVE,
                0,
                "free entry {f} marked live"
            );
            free += 1;
            f = self.links[f as usize];
            assert!(free <= records);
        }
        assert_eq!(free + self.len, records);
        // Every stored record points at its live item, inside the queue.
        let window: Vec<usize> = (0..self.queued).map(|k| self.ring_pos(k)).collect();
        for idx in (0..records).filter(|&i| self.links[i] & LIVE != 0) {
            let at = (self.links[idx] & !LIVE) as usize;
            assert!(window.contains(&at), "entry {idx} points outside the queue");
            assert_eq!(
                self.ring[at] as usize, idx,
                "entry {idx} points at a foreign item"
            );
        }
        assert!(records <= self.capacity);
        assert_eq!(self.ring.len(), self.capacity * QUEUE_FACTOR);
    }
}

#[test]
fn hit_miss_and_last_writer_wins() {
    let mut st = StickTable::new(cfg(32, 10, 1000, false));
    assert_eq!(st.lookup(b"a", t(0)), Lookup::Miss);
    assert_eq!(
        st.learn(b"a", ServerId(1), t(0)),
        Learn::Inserted { evicted: false }
    );
    assert_eq!(st.lookup(b"a", t(10)), Lookup::Hit(ServerId(1)));
    assert_eq!(st.learn(b"a", ServerId(1), t(20)), Learn::Refreshed);
    assert_eq!(
        st.learn(b"a", ServerId(2), t(30)),
        Learn::Updated {
            previous: ServerId(1)
        }
    );
    assert_eq!(st.lookup(b"a", t(40)), Lookup::Hit(ServerId(2)));
    let s = st.stats();
    assert_eq!(
        (
            s.hits,
            s.misses,
            s.learned,
            s.inserted,
            s.updated,
            s.refreshed
        ),
        (2, 1, 2, 1, 1, 1)
    );
    assert_eq!((s.entries, s.capacity), (1, 10));
    st.assert_consistent();
}

#[test]
fn expires_exactly_at_the_deadline() {
    let mut st = StickTable::new(cfg(8, 10, 1000, false));
    st.learn(b"k", ServerId(3), t(5000));
    assert_eq!(st.get(b"k", t(5999)).map(|e| e.server), Some(ServerId(3)));
    assert_eq!(st.get(b"k", t(6000)), None);
    assert_eq!(st.next_expiry(), Some(t(6000)));
    // One ms before: hit, which pushes the deadline to 5999 + 1000.
    assert_eq!(st.lookup(b"k", t(5999)), Lookup::Hit(ServerId(3)));
    assert_eq!(st.get(b"k", t(6998)).unwrap().expires_at, t(6999));
    // At the deadline: expired, removed, counted as expired and as a miss.
    assert_eq!(st.lookup(b"k", t(6999)), Lookup::Expired(ServerId(3)));
    assert!(st.is_empty());
    assert_eq!(st.lookup(b"k", t(6999)), Lookup::Miss);
    let s = st.stats();
    assert_eq!((s.hits, s.misses, s.expired), (1, 2, 1));
}

#[test]
fn evicts_exactly_the_least_recently_touched() {
    let mut st = StickTable::new(cfg(4, 3, 1_000_000, false));
    st.learn(b"a", ServerId(0), t(1));
    st.learn(b"b", ServerId(1), t(2));
    st.learn(b"c", ServerId(2), t(3));
    // Touch a (hit) and b (refresh): c is now the least recently used.
    assert_eq!(st.lookup(b"a", t(4)), Lookup::Hit(ServerId(0)));
    assert_eq!(st.learn(b"b", ServerId(1), t(5)), Learn::Refreshed);
    assert_eq!(
        st.learn(b"d", ServerId(3), t(6)),
        Learn::Inserted { evicted: true }
    );
    assert_eq!(st.get(b"c", t(6)), None);
    let order: Vec<_> = st
        .entries_by_recency(t(6))
        .iter()
        .map(|e| e.key[0])
        .collect();
    assert_eq!(order, b"dba");
    assert_eq!(
        st.learn(b"e", ServerId(4), t(7)),
        Learn::Inserted { evicted: true }
    );
    assert_eq!(st.get(b"a", t(7)), None);
    assert_eq!(st.stats().evicted, 2);
    assert_eq!(st.len(), 3);
    st.assert_consistent();
}

#[test]
fn full_table_drops_expired_entries_before_evicting() {
    let mut st = StickTable::new(cfg(4, 2, 100, true));
    st.learn(b"a", ServerId(0), t(0));
    st.learn(b"b", ServerId(1), t(50));
    // Full, nothing expired: nopurge refuses.
    assert_eq!(st.learn(b"c", ServerId(2), t(60)), Learn::Refused);
    assert_eq!(st.set(b"c", ServerId(2), t(60)), Learn::Refused);
    // Updating an existing key is never refused.
    assert_eq!(
        st.learn(b"b", ServerId(5), t(60)),
        Learn::Updated {
            previous: ServerId(1)
        }
    );
    // At 100, "a" has expired: it frees a place, which is not an eviction.
    assert_eq!(
        st.learn(b"c", ServerId(2), t(100)),
        Learn::Inserted { evicted: false }
    );
    let s = st.stats();
    assert_eq!((s.refused, s.expired, s.evicted), (2, 1, 0));
    assert_eq!(st.get(b"a", t(100)), None);
    st.assert_consistent();
}

#[test]
fn size_zero_stores_nothing() {
    let mut st = StickTable::new(cfg(4, 0, 100, false));
    assert_eq!(st.learn(b"a", ServerId(0), t(0)), Learn::Refused);
    assert_eq!(st.lookup(b"a", t(0)), Lookup::Miss);
    assert_eq!(st.capacity(), 0);
    st.assert_consistent();
}

#[test]
fn padded_and_truncated_keys_are_the_same_entry() {
    let mut st = StickTable::new(cfg(4, 8, 100, false));
    st.learn(b"ab", ServerId(7), t(0));
    assert_eq!(st.lookup(b"ab\0\0", t(1)), Lookup::Hit(ServerId(7)));
    assert_eq!(st.lookup(b"ab\0", t(1)), Lookup::Hit(ServerId(7)));
    st.learn(b"wxyz-long", ServerId(8), t(1));
    assert_eq!(st.lookup(b"wxyz", t(2)), Lookup::Hit(ServerId(8)));
    assert_eq!(st.get(b"wxyzzz", t(2)).unwrap().key.as_bytes(), b"wxyz");
    assert_eq!(st.len(), 2);
}

#[test]
fn remove_clear_and_set_are_per_key_operator_actions() {
    let mut st = StickTable::new(cfg(4, 8, 100, false));
    st.learn(b"a", ServerId(1), t(0));
    st.learn(b"b", ServerId(2), t(0));
    assert_eq!(
        st.set(b"c", ServerId(3), t(0)),
        Learn::Inserted { evicted: false }
    );
    assert_eq!(
        st.set(b"a", ServerId(9), t(0)),
        Learn::Updated {
            previous: ServerId(1)
        }
    );
    assert_eq!(st.stats().sets, 2);
    assert_eq!(st.stats().learned, 2);
    assert_eq!(st.remove(b"b"), Some(ServerId(2)));
    assert_eq!(st.remove(b"b"), None);
    assert_eq!(st.len(), 2);
    st.assert_consistent();
    st.clear();
    assert!(st.is_empty());
    assert_eq!(st.stats().removed, 3);
    assert_eq!(st.lookup(b"a", t(1)), Lookup::Miss);
    st.learn(b"d", ServerId(4), t(1));
    assert_eq!(st.lookup(b"d", t(2)), Lookup::Hit(ServerId(4)));
    st.assert_consistent();
}

#[test]
fn dumps_are_sorted_by_key_and_skip_expired() {
    let mut st = StickTable::new(cfg(2, 8, 100, false));
    st.learn(b"zz", ServerId(1), t(50));
    st.learn(b"aa", ServerId(2), t(0));
    st.learn(b"mm", ServerId(1), t(10));
    // "aa" expires at 100, "mm" at 110, "zz" at 150.
    let keys: Vec<String> = st
        .entries(t(105))
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(keys, ["6d6d", "7a7a"]);
    let all: Vec<String> = st.entries(t(5)).iter().map(|e| e.key.to_string()).collect();
    assert_eq!(all, ["6161", "6d6d", "7a7a"]);
    let one = st.entries_for_server(ServerId(1), t(5));
    assert_eq!(one.len(), 2);
    assert!(one.iter().all(|e| e.server == ServerId(1)));
}

#[test]
fn purge_expired_removes_in_deadline_order() {
    let mut st = StickTable::new(cfg(4, 8, 100, false));
    for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        st.learn(*k, ServerId(0), t(i as u64 * 10));
    }
    assert_eq!(st.next_expiry(), Some(t(100)));
    assert_eq!(st.purge_expired(t(99)), 0);
    assert_eq!(st.purge_expired(t(110)), 2);
    assert_eq!(st.next_expiry(), Some(t(120)));
    assert_eq!(st.stats().expired, 2);
    assert_eq!(st.purge_expired(t(1000)), 2);
    assert_eq!(st.next_expiry(), None);
    st.assert_consistent();
}

#[test]
fn remap_drops_or_renumbers_servers() {
    let mut st = StickTable::new(cfg(4, 8, 100, false));
    st.learn(b"a", ServerId(0), t(0));
    st.learn(b"b", ServerId(1), t(0));
    st.learn(b"c", ServerId(2), t(0));
    // Server 1 was removed from the config; server 2 became index 1.
    st.remap_servers(|s| match s.0 {
        0 => Some(ServerId(0)),
        1 => None,
        n => Some(ServerId(n - 1)),
    });
    assert_eq!(st.get(b"a", t(1)).unwrap().server, ServerId(0));
    assert_eq!(st.get(b"b", t(1)), None);
    assert_eq!(st.get(b"c", t(1)).unwrap().server, ServerId(1));
    assert_eq!(st.stats().removed, 1);
    st.assert_consistent();
}

#[test]
fn reconfigured_keeps_the_most_recent_entries() {
    let mut st = StickTable::new(cfg(4, 8, 1000, false));
    for i in 0..6u8 {
        st.learn(&[i; 4], ServerId(u32::from(i)), t(u64::from(i)));
    }
    let st = st.reconfigured(cfg(2, 3, 500, false), t(10));
    assert_eq!(st.len(), 3);
    let keys: Vec<u8> = st
        .entries_by_recency(t(10))
        .iter()
        .map(|e| e.key[0])
        .collect();
    assert_eq!(keys, [5, 4, 3]);
    // Deadlines capped at now + new expire.
    assert!(st.entries(t(10)).iter().all(|e| e.expires_at == t(510)));
    assert_eq!(st.stats().inserted, 0);
    st.assert_consistent();
}

#[test]
fn memory_stays_under_96_bytes_per_entry_with_32_byte_keys() {
    for size in [1000usize, 61440, 100_000] {
        let mut st = StickTable::new(cfg(32, size, 3_600_000, false));
        let before = st.memory_bytes();
        for i in 0..size as u64 + 10 {
            st.learn(&key32(i), ServerId((i % 4) as u32), t(i));
        }
        assert_eq!(st.len(), size);
        assert_eq!(st.memory_bytes(), before, "the table must not grow");
        let per = st.memory_bytes() as f64 / size as f64;
        assert!(per <= 96.0, "{per} bytes per entry at size {size}");
    }
}

#[test]
fn touch_queue_compacts_in_place_and_keeps_exact_order() {
    let mut st = StickTable::new(cfg(32, 4, 1_000_000, false));
    let mut order: Vec<u64> = Vec::new(); // most recent first
    for i in 0..4u64 {
        st.learn(&key32(i), ServerId(i as u32), t(0));
        order.insert(0, i);
    }
    let before = st.memory_bytes();
    let mut compactions = 0;
    for step in 0..1000u64 {
        let (queued, front) = (st.queued, st.front);
        // Key 3 is never touched, so it pins the front of the queue and only compaction can make
        // room; key 0 is hot and keys 1 and 2 are touched in turn.
        let k = if step % 2 == 0 { 0 } else { 1 + step % 4 / 2 };
        assert_eq!(
            st.lookup(&key32(k), t(step)),
            Lookup::Hit(ServerId(k as u32))
        );
        order.retain(|&x| x != k);
        order.insert(0, k);
        if st.queued < queued && st.front == front {
            compactions += 1;
        }
        let got: Vec<u64> = st
            .entries_by_recency(t(step))
            .iter()
            .map(|e| u64::from(e.server.0))
            .collect();
        assert_eq!(got, order);
        st.assert_consistent();
    }
    assert!(compactions > 10, "only {compactions} compactions");
    assert_eq!(st.memory_bytes(), before, "the queue must not grow");
    // Eviction takes exactly the least recently touched.
    let lru = *order.last().unwrap();
    assert_eq!(lru, 3);
    st.learn(&key32(99), ServerId(99), t(1000));
    assert_eq!(st.get(&key32(lru), t(1000)), None);
    assert_eq!(st.len(), 4);
    st.assert_consistent();
}

#[test]
fn a_touch_leaves_the_old_item_stale_without_writing_it() {
    let mut st = StickTable::new(cfg(32, 4, 1_000_000, false));
    st.learn(&key32(0), ServerId(0), t(0));
    st.learn(&key32(1), ServerId(1), t(0));
    let (old_at, idx0) = (st.front, st.ring[st.front]);
    assert_eq!(st.live_item(old_at), Some(idx0 as usize));
    assert_eq!(st.lookup(&key32(0), t(1)), Lookup::Hit(ServerId(0)));
    // The old item still names the record, untouched, but no longer counts.
    assert_eq!(st.ring[old_at], idx0);
    assert_eq!(st.live_item(old_at), None);
    assert_eq!(st.queued, 3);
    // Eviction skips it: key 1 is now the least recently used.
    st.learn(&key32(2), ServerId(2), t(2));
    st.learn(&key32(3), ServerId(3), t(3));
    st.learn(&key32(4), ServerId(4), t(4));
    assert_eq!(st.get(&key32(1), t(4)), None);
    assert_eq!(st.get(&key32(0), t(4)).map(|e| e.server), Some(ServerId(0)));
    // A freed record's item is stale too, even once the record is reused for another key.
    st.remove(&key32(0));
    st.learn(&key32(5), ServerId(5), t(5));
    st.assert_consistent();
    let servers: Vec<u32> = st
        .entries_by_recency(t(5))
        .iter()
        .map(|e| e.server.0)
        .collect();
    assert_eq!(servers, vec![5, 4, 3, 2]);
}

#[test]
fn records_fill_whole_cache_lines() {
    for (len, lines) in [(1, 1), (32, 1), (40, 1), (41, 2), (64, 2)] {
        let mut st = StickTable::new(cfg(len, 100, 1000, false));
        assert_eq!(st.lines_per, lines, "key_len {len}");
        for i in 0..300u64 {
            st.learn(&key32(i).repeat(2), ServerId(i as u32), t(i));
        }
        st.assert_consistent();
        for e in st.entries_by_recency(t(300)) {
            assert_eq!(e.key.len(), len);
            assert_eq!(st.lookup(&e.key, t(300)), Lookup::Hit(e.server));
        }
    }
    assert_eq!(std::mem::size_of::<Line>(), 64);
    assert_eq!(std::mem::align_of::<Line>(), 64);
}

#[test]
fn many_random_keys_all_findable_after_churn() {
    let mut st = StickTable::new(cfg(32, 5000, 1_000_000, false));
    for i in 0..20_000u64 {
        st.learn(&key32(i), ServerId(i as u32), t(i));
        if i % 7 == 0 {
            st.remove(&key32(i / 2));
        }
    }
    st.assert_consistent();
    let live: Vec<_> = st.entries_by_recency(t(20_000));
    assert_eq!(live.len(), st.len());
    for e in &live {
        assert_eq!(st.lookup(&e.key, t(20_001)), Lookup::Hit(e.server));
    }
}

#[test]
fn hash_depends_on_every_byte_and_the_seed() {
    let base = KeyWords::new(&key32(1), 32, 1).hash;
    for i in 0..32 {
        let mut k = key32(1);
        k[i] ^= 1;
        assert_ne!(KeyWords::new(&k, 32, 1).hash, base, "byte {i} ignored");
    }
    assert_ne!(KeyWords::new(&key32(1), 32, 2).hash, base);
    // Seeds change placement, never behaviour.
    let mut a = StickTable::with_hash_seed(cfg(32, 50, 100, false), 1);
    let mut b = StickTable::with_hash_seed(cfg(32, 50, 100, false), 2);
    for i in 0..200u64 {
        let (k, s) = (key32(i % 77), ServerId((i % 5) as u32));
        assert_eq!(a.learn(&k, s, t(i)), b.learn(&k, s, t(i)));
        assert_eq!(
            a.lookup(&key32(i % 91), t(i)),
            b.lookup(&key32(i % 91), t(i))
        );
    }
    assert_eq!(a.entries(t(200)), b.entries(t(200)));
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn validate_rejects_what_new_would_clamp() {
    assert!(cfg(32, 61440, 1, false).validate().is_ok());
    assert_eq!(
        cfg(0, 1, 1, false).validate(),
        Err(StickConfigError::KeyLen(0))
    );
    assert_eq!(
        cfg(65, 1, 1, false).validate(),
        Err(StickConfigError::KeyLen(65))
    );
    assert_eq!(
        cfg(32, MAX_SIZE + 1, 1, false).validate(),
        Err(StickConfigError::Size(MAX_SIZE as u64 + 1))
    );
    let st = StickTable::new(cfg(0, MAX_SIZE + 1, 1, false));
    assert_eq!(st.capacity(), MAX_SIZE);
    assert_eq!(st.config().key_len, 0);
}

// ---------------------------------------------------------------------------------------------
// Model-based test.

/// Reference: entries in a Vec, most recently used first, semantics written from the spec.
struct Model {
    key_len: usize,
    cap: usize,
    expire: u64,
    nopurge: bool,
    /// (normalised key, server, expires_at), most recently used first.
    entries: Vec<(Vec<u8>, u32, u64)>,
    stats: StickStats,
}

impl Model {
    fn norm(&self, k: &[u8]) -> Vec<u8> {
        let mut v = k.to_vec();
        v.resize(self.key_len, 0);
        v
    }
    fn find(&self, k: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }
    fn drop_expired(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| now < e.2);
        let n = before - self.entries.len();
        self.stats.expired += n as u64;
        n
    }
    fn lookup(&mut self, k: &[u8], now: u64) -> Lookup {
        let k = self.norm(k);
        match self.find(&k) {
            Some(i) if now >= self.entries[i].2 => {
                let e = self.entries.remove(i);
                self.stats.expired += 1;
                self.stats.misses += 1;
                Lookup::Expired(ServerId(e.1))
            }
            Some(i) => {
                let mut e = self.entries.remove(i);
                e.2 = now + self.expire;
                self.entries.insert(0, e.clone());
                self.stats.hits += 1;
                Lookup::Hit(ServerId(e.1))
            }
            None => {
                self.stats.misses += 1;
                Lookup::Miss
            }
        }
    }
    fn store(&mut self, k: &[u8], s: u32, now: u64, set: bool) -> Learn {
        let k = self.norm(k);
        let exp = now + self.expire;
        let out = match self.find(&k) {
            Some(i) if now < self.entries[i].2 => {
                let prev = self.entries.remove(i).1;
                self.entries.insert(0, (k, s, exp));
                if prev == s {
                    Learn::Refreshed
                } else {
                    Learn::Updated {
                        previous: ServerId(prev),
                    }
                }
            }
            found => {
                if let Some(i) = found {
                    self.entries.remove(i);
                    self.stats.expired += 1;
                }
                let mut evicted = false;
                let mut refused = self.cap == 0;
                if !refused && self.entries.len() == self.cap && self.drop_expired(now) == 0 {
                    if self.nopurge {
                        refused = true;
                    } else {
                        self.entries.pop();
                        self.stats.evicted += 1;
                        evicted = true;
                    }
                }
                if refused {
                    Learn::Refused
                } else {
                    self.entries.insert(0, (k, s, exp));
                    Learn::Inserted { evicted }
                }
            }
        };
        let st = &mut self.stats;
        match (out, set) {
            (Learn::Refused, _) => st.refused += 1,
            (_, true) => st.sets += 1,
            (Learn::Inserted { .. }, false) => {
                st.inserted += 1;
                st.learned += 1
            }
            (Learn::Updated { .. }, false) => {
                st.updated += 1;
                st.learned += 1
            }
            (Learn::Refreshed, false) => st.refreshed += 1,
        }
        out
    }
    fn remove(&mut self, k: &[u8]) -> Option<ServerId> {
        let k = self.norm(k);
        let i = self.find(&k)?;
        self.stats.removed += 1;
        Some(ServerId(self.entries.remove(i).1))
    }
    fn live(&self, now: u64) -> Vec<StickEntry> {
        self.entries
            .iter()
            .filter(|e| now < e.2)
            .map(|e| StickEntry {
                key: StickKey::new(&e.0, self.key_len),
                server: ServerId(e.1),
                expires_at: Timestamp(e.2),
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Lookup(Vec<u8>),
    Learn(Vec<u8>, u32),
    Set(Vec<u8>, u32),
    Get(Vec<u8>),
    Remove(Vec<u8>),
    Advance(u64),
    Purge,
    Clear,
    Remap,
}

/// Raw keys from a tiny alphabet and lengths around `key_len`, so that hits, collisions after
/// padding/truncation and full tables are all common.
fn raw_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, 0..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => raw_key().prop_map(Op::Lookup),
        4 => (raw_key(), 0u32..4).prop_map(|(k, s)| Op::Learn(k, s)),
        1 => (raw_key(), 0u32..4).prop_map(|(k, s)| Op::Set(k, s)),
        1 => raw_key().prop_map(Op::Get),
        1 => raw_key().prop_map(Op::Remove),
        3 => (0u64..12).prop_map(Op::Advance),
        1 => Just(Op::Purge),
        1 => Just(Op::Clear),
        1 => Just(Op::Remap),
    ]
}

fn remap(s: ServerId) -> Option<ServerId> {
    (s.0 != 3).then_some(ServerId((s.0 + 1) % 3))
}

/// Keys of `key_len`-ish length that share a long prefix and differ near their end, so that the
/// compare reaches the last words of a record (the second cache line for wide keys).
fn wide_key() -> impl Strategy<Value = Vec<u8>> {
    (30usize..66, proptest::collection::vec(0u8..3, 0..4)).prop_map(|(n, tail)| {
        let mut k = vec![7u8; n];
        k.extend(tail);
        k
    })
}

fn wide_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => wide_key().prop_map(Op::Lookup),
        4 => (wide_key(), 0u32..4).prop_map(|(k, s)| Op::Learn(k, s)),
        1 => wide_key().prop_map(Op::Get),
        1 => wide_key().prop_map(Op::Remove),
        2 => (0u64..4).prop_map(Op::Advance),
        1 => Just(Op::Purge),
        1 => Just(Op::Remap),
    ]
}

/// Run `ops` against a table and the reference model, checking that they agree after each step.
fn check_against_model(
    key_len: usize,
    cap: usize,
    expire: u64,
    nopurge: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut st = StickTable::new(cfg(key_len, cap, expire, nopurge));
    let mut m = Model {
        key_len,
        cap,
        expire,
        nopurge,
        entries: Vec::new(),
        stats: StickStats::default(),
    };
    let mut now = 0u64;
    for op in ops {
        let ts = Timestamp(now);
        match op {
            Op::Lookup(k) => prop_assert_eq!(st.lookup(&k, ts), m.lookup(&k, now)),
            Op::Learn(k, s) => {
                prop_assert_eq!(st.learn(&k, ServerId(s), ts), m.store(&k, s, now, false))
            }
            Op::Set(k, s) => {
                prop_assert_eq!(st.set(&k, ServerId(s), ts), m.store(&k, s, now, true))
            }
            Op::Get(k) => {
                let nk = m.norm(&k);
                let want = m
                    .live(now)
                    .into_iter()
                    .find(|e| e.key.as_bytes() == &nk[..]);
                prop_assert_eq!(st.get(&k, ts), want);
            }
            Op::Remove(k) => prop_assert_eq!(st.remove(&k), m.remove(&k)),
            Op::Advance(d) => now += d,
            Op::Purge => prop_assert_eq!(st.purge_expired(ts), m.drop_expired(now)),
            Op::Clear => {
                st.clear();
                m.stats.removed += m.entries.len() as u64;
                m.entries.clear();
            }
            Op::Remap => {
                st.remap_servers(remap);
                let before = m.entries.len();
                m.entries = m
                    .entries
                    .iter()
                    .filter_map(|e| remap(ServerId(e.1)).map(|s| (e.0.clone(), s.0, e.2)))
                    .collect();
                m.stats.removed += (before - m.entries.len()) as u64;
            }
        }
        st.assert_consistent();
        let now_ts = Timestamp(now);
        prop_assert!(st.len() <= cap);
        prop_assert_eq!(st.len(), m.entries.len());
        prop_assert_eq!(st.entries_by_recency(now_ts), m.live(now));
        let mut sorted = m.live(now);
        sorted.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        prop_assert_eq!(st.entries(now_ts), sorted);
        prop_assert_eq!(st.next_expiry(), m.entries.last().map(|e| Timestamp(e.2)));
        let want = StickStats {
            entries: m.entries.len() as u64,
            capacity: cap as u64,
            ..m.stats
        };
        prop_assert_eq!(st.stats(), want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random op sequences against the reference model, with a non-decreasing clock: every
    /// outcome, the LRU order, the dumps, the deadlines and every counter agree after each step.
    #[test]
    fn behaves_like_the_reference_model(
        key_len in 1usize..5,
        cap in 0usize..7,
        expire in 0u64..10,
        nopurge in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        check_against_model(key_len, cap, expire, nopurge, ops)?;
    }

    /// The same with keys wide enough for records of one and two cache lines (40 bytes fit a
    /// line, 41 do not), differing in their last bytes, and long runs of hits that make the touch
    /// queue compact many times.
    #[test]
    fn wide_keys_behave_like_the_reference_model(
        key_len in prop_oneof![Just(8usize), Just(40), Just(41), Just(64)],
        cap in 1usize..7,
        expire in 5u64..30,
        nopurge in any::<bool>(),
        ops in proptest::collection::vec(wide_op(), 1..200),
    ) {
        check_against_model(key_len, cap, expire, nopurge, ops)?;
    }

    /// With an arbitrary (even backwards) clock the table stays consistent and bounded, never
    /// reports a hit past the deadline, and purging never removes a live entry.
    #[test]
    fn arbitrary_clock_keeps_invariants(
        cap in 0usize..20,
        expire in 0u64..50,
        nopurge in any::<bool>(),
        ops in proptest::collection::vec((0u8..40, 0u32..3, 0u64..200, 0u8..5), 1..200),
    ) {
        let mut st = StickTable::new(cfg(3, cap, expire, nopurge));
        for (k, s, now, kind) in ops {
            let key = [k, k / 7, 0];
            let ts = Timestamp(now);
            match kind {
                0 | 1 => {
                    let before = st.get(&key, ts);
                    let got = st.lookup(&key, ts);
                    match before {
                        Some(e) => {
                            prop_assert_eq!(got, Lookup::Hit(e.server));
                            let after = st.get(&key, ts).map(|e| e.expires_at);
                            let want = (expire > 0).then(|| ts + Duration::from_millis(expire));
                            prop_assert_eq!(after, want);
                        }
                        None => prop_assert!(!matches!(got, Lookup::Hit(_))),
                    }
                }
                2 | 3 => {
                    let out = st.learn(&key, ServerId(s), ts);
                    if out != Learn::Refused && expire > 0 {
                        prop_assert_eq!(st.get(&key, ts).map(|e| e.server), Some(ServerId(s)));
                    }
                }
                _ => {
                    let live = st.entries(ts).len();
                    st.purge_expired(ts);
                    prop_assert_eq!(st.entries(ts).len(), live);
                }
            }
            st.assert_consistent();
            prop_assert!(st.len() <= cap);
        }
    }

    /// Zero-padding and truncation: any two raw keys that normalise alike reach the same entry.
    #[test]
    fn equivalent_raw_keys_share_an_entry(raw in proptest::collection::vec(any::<u8>(), 0..40), len in 1usize..=32, extra in 0usize..8) {
        let mut st = StickTable::new(cfg(len, 4, 100, false));
        st.learn(&raw, ServerId(1), Timestamp(0));
        let mut padded = raw.clone();
        if padded.len() < len { padded.resize(len, 0); } else { padded.extend(std::iter::repeat_n(0xee, extra)); }
        prop_assert_eq!(st.lookup(&padded, Timestamp(1)), Lookup::Hit(ServerId(1)));
        prop_assert_eq!(st.len(), 1);
    }
}
