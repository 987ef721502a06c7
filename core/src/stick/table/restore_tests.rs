//! [`StickTable::restore`]: entries carried over from another process keep their deadline,
//! never beyond this table's `expire`.

use super::*;
use proptest::prelude::*;

fn table(size: usize, expire_ms: u64) -> StickTable {
    StickTable::new(StickTableConfig::new(
        8,
        size,
        Duration::from_millis(expire_ms),
    ))
}

#[test]
fn a_restored_entry_keeps_its_deadline_and_a_past_one_is_dropped() {
    let mut t = table(16, 10_000);
    let now = Timestamp(1_000);
    assert_eq!(
        t.restore(b"a", ServerId(2), Timestamp(4_000), now),
        Some(Learn::Inserted { evicted: false })
    );
    let e = t.get(b"a", now).expect("restored");
    assert_eq!((e.server, e.expires_at), (ServerId(2), Timestamp(4_000)));
    assert_eq!(t.get(b"a", Timestamp(4_000)), None, "expired on time");
    // Past or due now: nothing stored.
    assert_eq!(t.restore(b"b", ServerId(1), now, now), None);
    assert_eq!(t.get(b"b", now), None);
    // Beyond this table's expire: capped at now + expire.
    t.restore(b"c", ServerId(0), Timestamp(u64::MAX), now);
    assert_eq!(t.get(b"c", now).unwrap().expires_at, Timestamp(11_000));
    assert_eq!(t.stats().sets, 2);
}

#[test]
fn a_restore_overwrites_and_a_full_nopurge_table_refuses() {
    let mut t = StickTable::new(StickTableConfig {
        nopurge: true,
        ..StickTableConfig::new(8, 1, Duration::from_secs(10))
    });
    let now = Timestamp(0);
    t.restore(b"a", ServerId(0), Timestamp(5_000), now);
    assert_eq!(
        t.restore(b"a", ServerId(1), Timestamp(6_000), now),
        Some(Learn::Updated {
            previous: ServerId(0)
        })
    );
    assert_eq!(
        t.restore(b"b", ServerId(1), Timestamp(6_000), now),
        Some(Learn::Refused)
    );
    assert_eq!(t.stats().refused, 1);
}

proptest! {
    /// Whatever the deadlines and clock, a restored entry is live exactly until
    /// `min(deadline, now + expire)` and points at the restored server.
    #[test]
    fn restored_entries_live_until_their_capped_deadline(
        entries in proptest::collection::vec((0u8..32, 0u32..8, 0u64..50_000), 1..64),
        now in 0u64..20_000,
        expire in 1u64..30_000,
    ) {
        let mut t = table(64, expire);
        let now = Timestamp(now);
        let mut model = std::collections::BTreeMap::new();
        for (k, server, deadline) in &entries {
            let r = t.restore(&[*k], ServerId(*server), Timestamp(*deadline), now);
            prop_assert_eq!(r.is_none(), *deadline <= now.0);
            if *deadline > now.0 {
                model.insert(*k, (*server, (*deadline).min(now.0 + expire)));
            }
        }
        for k in 0u8..32 {
            let got = t.get(&[k], now).map(|e| (e.server.0, e.expires_at.0));
            prop_assert_eq!(got, model.get(&k).copied());
            if let Some((_, deadline)) = model.get(&k) {
                prop_assert_eq!(t.get(&[k], Timestamp(*deadline)), None);
                prop_assert!(t.get(&[k], Timestamp(deadline - 1)).is_some());
            }
        }
    }
}
