//! A stick table's update feed: what changed, in order, for the peers protocol.
//!
//! Every store gets the next update id (a wrapping `u32`, as HAProxy's `localupdate`); the
//! last `capacity` updates are kept, so a peer can ask "entries changed since update N" and
//! get them, or learn that the backlog no longer reaches back that far ([`Since::Gap`]: it
//! needs a full resync). Each update says where it came from, so updates learned from a peer
//! are not pushed again as local ones (HAProxy does not echo them either). Memory is bounded by
//! `capacity`; nothing here reads a clock.

use std::collections::VecDeque;

use super::StickKey;
use crate::ServerId;

/// Where an entry's last store came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Traffic or an operator on this process.
    Local,
    /// The peer of this index in the peers section.
    Peer(u16),
}

/// One recorded store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its update id.
    pub id: u32,
    /// The key.
    pub key: StickKey,
    /// The server stored (under `layout`'s numbering).
    pub server: ServerId,
    /// The table's server numbering when stored.
    pub layout: u64,
    /// Who stored it.
    pub origin: Origin,
}

/// The answer to [`UpdateFeed::since`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// Updates after the cursor, oldest first (at most the `max` asked for), and the cursor to
    /// ask from next time.
    Entries(Vec<FeedEntry>, u32),
    /// The backlog no longer holds the update after the cursor: send the whole table.
    Gap,
}

/// The bounded, ordered record of a table's stores. See the module documentation.
#[derive(Clone, Debug)]
pub struct UpdateFeed {
    last: u32,
    backlog: VecDeque<FeedEntry>,
    capacity: usize,
}

impl UpdateFeed {
    /// A feed keeping the last `capacity` updates (at least 1).
    pub fn new(capacity: usize) -> Self {
        UpdateFeed {
            last: 0,
            backlog: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a store and returns its update id.
    pub fn record(&mut self, key: StickKey, server: ServerId, layout: u64, origin: Origin) -> u32 {
        self.last = self.last.wrapping_add(1);
        if self.backlog.len() == self.capacity {
            self.backlog.pop_front();
        }
        self.backlog.push_back(FeedEntry {
            id: self.last,
            key,
            server,
            layout,
            origin,
        });
        self.last
    }

    /// The id of the last update recorded (0: none yet).
    pub fn last_id(&self) -> u32 {
        self.last
    }

    /// Updates after `after` (a cursor: 0 or an id this feed returned), at most `max` of them.
    pub fn since(&self, after: u32, max: usize) -> Since {
        let behind = self.last.wrapping_sub(after) as usize;
        if behind > self.backlog.len() {
            return Since::Gap;
        }
        let start = self.backlog.len() - behind;
        let out: Vec<FeedEntry> = self.backlog.iter().skip(start).take(max).copied().collect();
        let next = out.last().map_or(after, |e| e.id);
        Since::Entries(out, next)
    }

    /// Who stored `key` last, if the backlog still remembers.
    pub fn origin_of(&self, key: &[u8]) -> Option<Origin> {
        self.backlog
            .iter()
            .rev()
            .find(|e| e.key.as_bytes() == key)
            .map(|e| e.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> StickKey {
        StickKey::new(&[b], 4)
    }

    proptest! {
        /// Reading from any cursor returns exactly the recorded updates after it, in order, or a
        /// gap when (and only when) the backlog lost some of them; paging through never skips
        /// or repeats one; memory stays within the capacity.
        #[test]
        fn since_is_exact(cap in 1usize..20, n in 0usize..60, after in 0u32..70, max in 1usize..8) {
            let mut feed = UpdateFeed::new(cap);
            let mut all = Vec::new();
            for i in 0..n {
                let origin = if i % 3 == 0 { Origin::Peer(1) } else { Origin::Local };
                all.push(feed.record(key(i as u8), ServerId(i as u32), 0, origin));
            }
            prop_assert!(feed.backlog.len() <= cap);
            let after = after.min(n as u32);
            let lost = (n as u32).saturating_sub(cap as u32);
            let mut cursor = after;
            let mut seen = Vec::new();
            loop {
                match feed.since(cursor, max) {
                    Since::Gap => {
                        prop_assert!(cursor < lost, "gap at {} though {} kept", cursor, lost);
                        break;
                    }
                    Since::Entries(e, next) => {
                        prop_assert!(cursor >= lost || n == 0);
                        if e.is_empty() { prop_assert_eq!(next, cursor); break; }
                        prop_assert!(e.len() <= max);
                        seen.extend(e.iter().map(|x| x.id));
                        cursor = next;
                    }
                }
            }
            if after >= lost {
                prop_assert_eq!(seen, all[after as usize..].to_vec());
            }
        }
    }

    #[test]
    fn ids_wrap_without_gap() {
        let mut feed = UpdateFeed::new(4);
        feed.last = u32::MAX - 1;
        let a = feed.record(key(1), ServerId(0), 0, Origin::Local);
        let b = feed.record(key(2), ServerId(0), 0, Origin::Local);
        assert_eq!((a, b), (u32::MAX, 0));
        match feed.since(u32::MAX - 1, 10) {
            Since::Entries(e, next) => {
                assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), [u32::MAX, 0]);
                assert_eq!(next, 0);
            }
            Since::Gap => panic!("no gap expected"),
        }
        assert_eq!(feed.origin_of(&key(2)), Some(Origin::Local));
    }
}
