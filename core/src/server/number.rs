//! HAProxy's server numbers (`puid`): what the stats (`sid`), the runtime API (`srv_id`) and
//! the peers protocol (`server_id`) call a server, so tools and peers that know a server by
//! number agree with HAProxy on the same config.
//!
//! A server keeps the `id` it is given. The others are numbered in declaration order by HAProxy
//! 2.6's pass: a counter starts at 1 and moves on by one after every server (numbered or not);
//! an unnumbered server takes the lowest number at or above the counter that no server holds.
//! So `a, b id 1, c` numbers a 2, b 1, c 4 (not 3).

use std::collections::BTreeSet;

/// The numbers of a backend's servers, in declaration order, from their explicit ids (the
/// explicit ones must be distinct and non-zero: config validation sees to it).
pub fn numbers(explicit: &[Option<u32>]) -> Vec<u32> {
    let mut taken: BTreeSet<u32> = explicit.iter().flatten().copied().collect();
    let mut next = 1u32;
    explicit
        .iter()
        .map(|id| {
            let number = id.unwrap_or_else(|| {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.insert(next);
                next
            });
            next += 1;
            number
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::numbers;
    use proptest::prelude::*;

    #[test]
    fn haproxy_2_6_numbers_around_explicit_ids() {
        // Read from HAProxy 2.6's `show stat` (sid) on the same backend.
        let ids = [None, Some(1), None, Some(7), None, None];
        assert_eq!(numbers(&ids), [2, 1, 4, 7, 6, 8]);
        assert_eq!(numbers(&[None, None, None]), [1, 2, 3]);
    }

    proptest! {
        #[test]
        fn explicit_ids_are_kept_and_every_number_is_distinct(
            ids in proptest::collection::vec(proptest::option::of(1u32..40), 0..30),
        ) {
            // Distinct explicit ids, as validation guarantees.
            let mut seen = std::collections::BTreeSet::new();
            let ids: Vec<Option<u32>> =
                ids.into_iter().map(|id| id.filter(|n| seen.insert(*n))).collect();
            let n = numbers(&ids);
            prop_assert_eq!(n.len(), ids.len());
            for (id, number) in ids.iter().zip(&n) {
                prop_assert!(*number >= 1);
                if let Some(id) = id {
                    prop_assert_eq!(id, number);
                }
            }
            let distinct: std::collections::BTreeSet<_> = n.iter().collect();
            prop_assert_eq!(distinct.len(), n.len());
            if ids.iter().all(Option::is_none) {
                let positions: Vec<u32> = (1..=ids.len() as u32).collect();
                prop_assert_eq!(n, positions);
            }
        }
    }
}
