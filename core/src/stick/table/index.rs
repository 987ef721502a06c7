//! The stick table's index: key hash → record number, in 64-byte buckets.
//!
//! A bucket is one cache line holding [`LANES`] record numbers, one tag byte per lane (a byte of
//! the key hash, never 0; 0 marks an empty lane) and an *overflow count*. A key lives in its home
//! bucket or, when that was full at insertion, in the first bucket after it with an empty lane;
//! every bucket passed on the way counts it in its overflow count. So a probe reads one line,
//! compares all twelve tags at once with word arithmetic (no loop, no branch per lane), checks the
//! few candidates, and goes on to the next bucket only while the overflow count says that some
//! key of an earlier home lies beyond. Removal clears the lane and decrements the counts from the
//! home bucket up to the lane's bucket: nothing moves, so no other entry's position changes.
//!
//! Compared with a linear-probing index of 8-byte slots this shrinks the index by a quarter (≈ 8
//! bytes per entry instead of ≈ 10.7), makes a probe one line whatever the load, and replaces the
//! variable-length probe loop, whose branches depend on the loaded slots and mispredict, by a
//! mask computation: a lookup of a large table can then run ahead into the next one while its
//! misses are outstanding.

/// Lanes (entries) per bucket: 12 × 4-byte record numbers + 12 tag bytes + a 4-byte overflow
/// count make one 64-byte line.
pub(super) const LANES: usize = 12;

/// Average entries per bucket when the table is full: `capacity / LOAD` buckets (rounded up),
/// i.e. at most two thirds of the lanes used, so few buckets are full (Poisson(8): ≈ 6 % reach
/// 13) and most misses stop at the home bucket. Costs 8 bytes per entry.
const LOAD: usize = 8;

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;
/// The tag bytes of lanes 8..12 in `tags[1]` (its upper half is the overflow count).
const HIGH_LANES: u64 = 0x0000_0000_8080_8080;
const OVERFLOW_ONE: u64 = 1 << 32;

/// One cache line of the index.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Bucket {
    /// Record number per lane (meaningful only where the lane's tag is non-zero).
    idx: [u32; LANES],
    /// Tag bytes: lanes 0..8 in `tags[0]`, lanes 8..12 in the low half of `tags[1]`; the high
    /// half of `tags[1]` is the overflow count.
    tags: [u64; 2],
}

const EMPTY_BUCKET: Bucket = Bucket {
    idx: [0; LANES],
    tags: [0; 2],
};

/// Where an entry sits in the index.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    bucket: usize,
    lane: usize,
}

/// `0x80` in every byte of `x` that is zero, `0` elsewhere (exact: no borrow between bytes).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The lanes of a lane mask (one `0x80` byte per lane, lanes 8..12 in the upper 64 bits), lowest
/// first.
#[inline(always)]
fn lanes(lo: u64, hi: u64) -> u128 {
    u128::from(lo) | u128::from(hi & HIGH_LANES) << 64
}

/// Lane number of the lowest lane of a non-zero mask.
#[inline(always)]
fn first_lane(mask: u128) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

impl Bucket {
    /// Lanes whose tag is `tag` (non-zero, so empty lanes never match).
    #[inline(always)]
    fn matching(&self, tag: u8) -> u128 {
        let pattern = u64::from(tag) * ONES;
        lanes(
            zero_bytes(self.tags[0] ^ pattern),
            zero_bytes(self.tags[1] ^ pattern),
        )
    }

    #[inline(always)]
    fn empty(&self) -> u128 {
        lanes(zero_bytes(self.tags[0]), zero_bytes(self.tags[1]))
    }

    #[inline(always)]
    fn overflow(&self) -> u64 {
        self.tags[1] >> 32
    }

    fn set_tag(&mut self, lane: usize, tag: u8) {
        let shift = (lane % 8) * 8;
        let w = &mut self.tags[lane / 8];
        *w = (*w & !(0xff << shift)) | u64::from(tag) << shift;
    }
}

/// The index: a fixed number of buckets, chosen from the capacity at construction.
#[derive(Clone, Debug)]
pub(super) struct Index {
    buckets: Vec<Bucket>,
}

/// The tag byte stored in a lane for a key whose 32-bit hash tag is `tag`: its low byte (the home
/// bucket comes from the high bits), never 0.
#[inline(always)]
fn short_tag(tag: u32) -> u8 {
    (tag as u8).max(1)
}

impl Index {
    /// An empty index for a table of `capacity` entries: always at least one empty lane, so
    /// insertion terminates.
    pub(super) fn new(capacity: usize) -> Self {
        Self::with_buckets(capacity.div_ceil(LOAD).max(1))
    }

    /// An empty index of exactly `n` (≥ 1) buckets; tests use small ones to make buckets overflow.
    pub(super) fn with_buckets(n: usize) -> Self {
        Index {
            buckets: vec![EMPTY_BUCKET; n.max(1)],
        }
    }

    /// Entries the index can hold.
    #[cfg(test)]
    pub(super) fn lanes(&self) -> usize {
        self.buckets.len() * LANES
    }

    /// Home bucket of a 32-bit hash tag (multiply-shift range reduction: no power of two needed).
    #[inline(always)]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// The entry with hash tag `tag` for which `is_key(record)` holds, with its slot.
    #[inline(always)]
    pub(super) fn find(
        &self,
        tag: u32,
        mut is_key: impl FnMut(usize) -> bool,
    ) -> Option<(Slot, usize)> {
        let short = short_tag(tag);
        let mut b = self.home(tag);
        // Bounded: overflow counts never cover every bucket while a lane is empty.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            let mut m = bucket.matching(short);
            while m != 0 {
                let lane = first_lane(m);
                let idx = bucket.idx[lane] as usize;
                if is_key(idx) {
                    return Some((Slot { bucket: b, lane }, idx));
                }
                m &= m - 1;
            }
            if bucket.overflow() == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// The slot of record `idx`, stored with hash tag `tag`.
    pub(super) fn slot_of(&self, tag: u32, idx: usize) -> Slot {
        self.find(tag, |i| i == idx).map_or_else(
            || {
                debug_assert!(false, "stored entry {idx} missing from the index");
                Slot { bucket: 0, lane: 0 }
            },
            |(slot, _)| slot,
        )
    }

    /// Store record `idx` under hash tag `tag` (which must not be stored yet) in the first empty
    /// lane from its home bucket on, counting it in every full bucket passed.
    pub(super) fn insert(&mut self, tag: u32, idx: usize) -> Slot {
        let mut b = self.home(tag);
        for _ in 0..self.buckets.len() {
            let empty = self.buckets[b].empty();
            if empty != 0 {
                let lane = first_lane(empty);
                let bucket = &mut self.buckets[b];
                bucket.set_tag(lane, short_tag(tag));
                bucket.idx[lane] = idx as u32;
                return Slot { bucket: b, lane };
            }
            self.buckets[b].tags[1] += OVERFLOW_ONE;
            b = self.next(b);
        }
        debug_assert!(false, "index full");
        Slot { bucket: b, lane: 0 }
    }

    /// Empty `slot`, which holds an entry with hash tag `tag`, and uncount it from the buckets
    /// between its home and its slot.
    pub(super) fn remove(&mut self, slot: Slot, tag: u32) {
        let bucket = &mut self.buckets[slot.bucket];
        bucket.set_tag(slot.lane, 0);
        bucket.idx[slot.lane] = 0;
        let mut b = self.home(tag);
        while b != slot.bucket {
            self.buckets[b].tags[1] -= OVERFLOW_ONE;
            b = self.next(b);
        }
    }

    /// Empty every bucket.
    pub(super) fn clear(&mut self) {
        self.buckets.fill(EMPTY_BUCKET);
    }

    /// Bytes reserved.
    pub(super) fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// Occupied lanes.
    #[cfg(test)]
    pub(super) fn occupied(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.empty().count_ones() as usize)
            .map(|empty| LANES - empty)
            .sum()
    }

    /// Check every overflow count against a recount from the stored entries, given each
    /// record's hash tag.
    #[cfg(test)]
    pub(super) fn assert_counts(&self, tag_of: impl Fn(usize) -> u32) {
        let n = self.buckets.len();
        let mut counts = vec![0u64; n];
        for (b, bucket) in self.buckets.iter().enumerate() {
            let mut full = !bucket.empty() & lanes(0x8080_8080_8080_8080, HIGH_LANES);
            while full != 0 {
                let lane = first_lane(full);
                let tag = tag_of(bucket.idx[lane] as usize);
                assert_eq!(
                    (bucket.tags[lane / 8] >> ((lane % 8) * 8)) as u8,
                    short_tag(tag),
                    "lane tag of bucket {b} lane {lane}"
                );
                let mut h = self.home(tag);
                while h != b {
                    counts[h] += 1;
                    h = self.next(h);
                }
                full &= full - 1;
            }
        }
        for (b, bucket) in self.buckets.iter().enumerate() {
            assert_eq!(bucket.overflow(), counts[b], "overflow count of bucket {b}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn lane_masks_are_exact() {
        let mut b = EMPTY_BUCKET;
        assert_eq!(b.empty().count_ones(), LANES as u32);
        for lane in 0..LANES {
            b.set_tag(lane, 0x80 | lane as u8);
        }
        b.tags[1] += 5 * OVERFLOW_ONE;
        assert_eq!(b.empty(), 0);
        for lane in 0..LANES {
            let m = b.matching(0x80 | lane as u8);
            assert_eq!(m.count_ones(), 1);
            assert_eq!(first_lane(m), lane);
        }
        // A tag byte equal to a byte of the overflow count never matches.
        assert_eq!(b.matching(5), 0);
        assert_eq!(b.overflow(), 5);
        b.set_tag(3, 0);
        assert_eq!(first_lane(b.empty()), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Against a plain list of (tag, record): with one to three buckets and tags drawn from a
        /// handful of values, buckets fill, overflow and wrap around, and every key stays
        /// findable, every absent key absent, every count exact.
        #[test]
        fn behaves_like_a_list(
            nbuckets in 1usize..4,
            ops in proptest::collection::vec((any::<bool>(), 0u32..6, 0u32..4), 1..200),
        ) {
            let mut index = Index::with_buckets(nbuckets);
            let mut model: Vec<(u32, usize)> = Vec::new(); // (tag, record)
            let mut tags = vec![0u32; 64];
            let mut next_record = 0usize;
            for (insert, low, high) in ops {
                // Tags vary in their home (high bits) and their short tag (low byte).
                let tag = high << 30 | low;
                if insert && model.len() + 1 < index.lanes() {
                    let idx = next_record % 64;
                    next_record += 1;
                    if model.iter().any(|&(_, r)| r == idx) {
                        continue;
                    }
                    index.insert(tag, idx);
                    tags[idx] = tag;
                    model.push((tag, idx));
                } else if let Some(k) = model.iter().position(|&(t, _)| t == tag) {
                    let (t, idx) = model.remove(k);
                    let slot = index.slot_of(t, idx);
                    index.remove(slot, t);
                }
                index.assert_counts(|idx| tags[idx]);
                prop_assert_eq!(index.occupied(), model.len());
                for &(t, idx) in &model {
                    let found = index.find(t, |i| i == idx).map(|(_, i)| i);
                    prop_assert_eq!(found, Some(idx));
                }
                prop_assert_eq!(index.find(tag, |i| i == 64), None);
            }
        }
    }
}
