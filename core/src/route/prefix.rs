//! Address networks flattened into a prefix table: the address space cut into disjoint ranges,
//! each labelled with every network (atom) that covers it, so one binary search over the range
//! starts answers "which of these 100,000 networks contain this address" with all of them,
//! nested ones included. IPv4 ranges get their own 32-bit table (denser in cache).

use super::cidr::{ip_key, Cidr};
use super::hasher::FastMap;
use std::net::IpAddr;

/// Where IPv4-mapped addresses start in the 128-bit space.
const V4_BASE: u128 = 0xffff_0000_0000;
const V4_END: u128 = V4_BASE | 0xffff_ffff;

/// Disjoint ranges over keys of type `K`, each pointing at a set of atoms.
#[derive(Debug, Default)]
struct RangeTable<K> {
    starts: Vec<K>,
    set_of: Vec<u32>,
}

/// Interned atom sets, shared by both tables.
#[derive(Debug, Default)]
struct Sets {
    spans: Vec<(u32, u32)>,
    atoms: Vec<u32>,
    ids: FastMap<Vec<u32>, u32>,
}

impl Sets {
    fn intern(&mut self, set: &[u32]) -> u32 {
        if let Some(&id) = self.ids.get(set) {
            return id;
        }
        let id = self.spans.len() as u32;
        let from = self.atoms.len() as u32;
        self.atoms.extend_from_slice(set);
        self.spans.push((from, self.atoms.len() as u32));
        self.ids.insert(set.to_vec(), id);
        id
    }

    fn get(&self, id: u32) -> &[u32] {
        let (a, b) = self.spans[id as usize];
        &self.atoms[a as usize..b as usize]
    }
}

impl<K: Copy + Ord> RangeTable<K> {
    /// Sweeps `(first, last, atom)` ranges (inclusive) into disjoint labelled ranges.
    /// `after(last)` is the key following `last`, `None` at the end of the space.
    fn build(ranges: &[(K, K, u32)], after: impl Fn(K) -> Option<K>, sets: &mut Sets) -> Self {
        let mut events: Vec<(K, bool, u32)> = Vec::with_capacity(ranges.len() * 2);
        for &(lo, hi, atom) in ranges {
            events.push((lo, true, atom));
            if let Some(next) = after(hi) {
                events.push((next, false, atom));
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        // Atoms covering the current point: a count per atom and the sorted set of those > 0
        // (sets are small: the nesting depth of the networks).
        let atoms = ranges.iter().map(|r| r.2 as usize + 1).max().unwrap_or(0);
        let mut count = vec![0u32; atoms];
        let mut active: Vec<u32> = Vec::new();
        let mut table = RangeTable {
            starts: Vec::new(),
            set_of: Vec::new(),
        };
        let empty = sets.intern(&[]);
        let mut last = empty;
        let mut i = 0;
        while i < events.len() {
            let key = events[i].0;
            while i < events.len() && events[i].0 == key {
                let (_, open, atom) = events[i];
                let n = &mut count[atom as usize];
                if open {
                    *n += 1;
                    if *n == 1 {
                        let at = active.partition_point(|&a| a < atom);
                        active.insert(at, atom);
                    }
                } else {
                    *n -= 1;
                    if *n == 0 {
                        let at = active.partition_point(|&a| a < atom);
                        active.remove(at);
                    }
                }
                i += 1;
            }
            let id = sets.intern(&active);
            if id != last {
                table.starts.push(key);
                table.set_of.push(id);
                last = id;
            }
        }
        table
    }

    fn lookup(&self, key: K) -> Option<u32> {
        let i = self.starts.partition_point(|&s| s <= key);
        (i > 0).then(|| self.set_of[i - 1])
    }
}

/// An IPv4 range table with a direct index on the first 16 bits: each /16 knows where its
/// ranges start, so a lookup is one index read and a search among the few ranges of one /16,
/// instead of a binary search over every range (about 17 cache misses at 100,000 networks).
#[derive(Debug, Default)]
struct V4Table {
    table: RangeTable<u32>,
    /// `first[p]`: the index of the first range starting at or after `p << 16`.
    first: Vec<u32>,
}

impl V4Table {
    fn new(table: RangeTable<u32>) -> Self {
        if table.starts.is_empty() {
            return V4Table {
                table,
                first: Vec::new(),
            };
        }
        let mut first = Vec::with_capacity((1 << 16) + 1);
        let mut i = 0usize;
        for p in 0..=(1u32 << 16) {
            let start = u64::from(p) << 16;
            while i < table.starts.len() && u64::from(table.starts[i]) < start {
                i += 1;
            }
            first.push(i as u32);
        }
        V4Table { table, first }
    }

    fn lookup(&self, key: u32) -> Option<u32> {
        if self.first.is_empty() {
            return None;
        }
        let p = (key >> 16) as usize;
        let (lo, hi) = (self.first[p] as usize, self.first[p + 1] as usize);
        let i = lo + self.table.starts[lo..hi].partition_point(|&s| s <= key);
        (i > 0).then(|| self.table.set_of[i - 1])
    }
}

/// The networks of every address test of a rule set.
#[derive(Debug, Default)]
pub(crate) struct PrefixTable {
    v4: V4Table,
    v6: RangeTable<u128>,
    sets: Sets,
}

impl PrefixTable {
    /// Builds the table from `(network, atom)` pairs.
    pub fn build(nets: &[(Cidr, u32)]) -> PrefixTable {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(net, atom) in nets {
            let (lo, hi) = net.range();
            if lo <= V4_END && hi >= V4_BASE {
                let a = (lo.max(V4_BASE) - V4_BASE) as u32;
                let b = (hi.min(V4_END) - V4_BASE) as u32;
                v4.push((a, b, atom));
            }
            // Networks inside the IPv4-mapped block are answered by the IPv4 table alone.
            if lo < V4_BASE || hi > V4_END {
                v6.push((lo, hi, atom));
            }
        }
        let mut sets = Sets::default();
        let v4 = V4Table::new(RangeTable::build(&v4, |k: u32| k.checked_add(1), &mut sets));
        let v6 = RangeTable::build(&v6, |k: u128| k.checked_add(1), &mut sets);
        PrefixTable { v4, v6, sets }
    }

    /// The atoms whose networks contain `ip`.
    pub fn lookup(&self, ip: IpAddr) -> &[u32] {
        let key = ip_key(ip);
        let id = if (V4_BASE..=V4_END).contains(&key) {
            self.v4.lookup((key - V4_BASE) as u32)
        } else {
            self.v6.lookup(key)
        };
        id.map_or(&[], |id| self.sets.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_overlapping_networks_all_match() {
        let n = |s: &str| s.parse::<Cidr>().unwrap();
        let t = PrefixTable::build(&[
            (n("10.0.0.0/8"), 1),
            (n("10.1.0.0/16"), 2),
            (n("10.1.2.3"), 3),
            (n("0.0.0.0/0"), 4),
            (n("::/0"), 5),
            (n("2001:db8::/32"), 6),
            (n("255.255.255.255/32"), 7),
        ]);
        let at = |s: &str| t.lookup(s.parse().unwrap()).to_vec();
        assert_eq!(at("10.1.2.3"), [1, 2, 3, 4, 5]);
        assert_eq!(at("10.1.2.4"), [1, 2, 4, 5]);
        assert_eq!(at("10.2.0.0"), [1, 4, 5]);
        assert_eq!(at("11.0.0.0"), [4, 5]);
        assert_eq!(at("255.255.255.255"), [4, 5, 7]);
        assert_eq!(at("2001:db8::9"), [5, 6]);
        assert_eq!(at("2001:db9::9"), [5]);
        assert_eq!(
            PrefixTable::build(&[]).lookup("1.2.3.4".parse().unwrap()),
            &[] as &[u32]
        );
    }
}
