//! Deterministic slices of a big simulation job, and joining them back.
//!
//! A planner's sweep (many parameter points, many seeds) outgrows one machine. tether does not
//! schedule anything: `--shard K/N` runs the K-th of N slices — every item whose index is K
//! modulo N — and writes a [`Partial`]; any batch engine runs the slices (a Kubernetes Indexed
//! Job's `JOB_COMPLETION_INDEX`, a Slurm array's `SLURM_ARRAY_TASK_ID`); `tether sim merge`
//! joins the partials into the same output as one unsharded run. Each item runs in a fresh
//! process either way, so an item's result does not depend on which slice ran it.

use std::fmt;
use std::str::FromStr;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// Which slice of a job this run is: `index` of `count`, counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This slice, `0..count`.
    pub index: u32,
    /// How many slices the job is cut into.
    pub count: u32,
}

impl Shard {
    /// The whole job as one slice.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether item `i` of the job belongs to this slice.
    pub fn owns(self, i: usize) -> bool {
        i % self.count as usize == self.index as usize
    }

    /// The indices of a job of `len` items that this slice runs, in order.
    pub fn select(self, len: usize) -> impl Iterator<Item = usize> {
        (0..len).filter(move |&i| self.owns(i))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with `0 <= K < N`, as a batch engine's 0-based task index gives it.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "shard {text:?}: expected K/N with 0 <= K < N, e.g. --shard \"$JOB_COMPLETION_INDEX/8\""
            )
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// One item's result, with its index in the whole job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item<T> {
    /// Position in the unsharded job.
    pub index: usize,
    /// What running it gave.
    pub result: T,
}

/// What one slice wrote: enough to check it belongs with the others, and its items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial<T> {
    /// What kind of job (`"sweep"`, `"seeds"`).
    pub kind: String,
    /// Everything that defines the job (scenario digest, parameters, seeds): slices of one job
    /// carry the same text, and merge refuses to join different ones.
    pub job: String,
    /// Items in the whole job.
    pub total: usize,
    /// Which slice this is.
    pub shard: Shard,
    /// This slice's results, by index.
    pub items: Vec<Item<T>>,
}

/// Why slices cannot be joined.
#[derive(Debug, Error, PartialEq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no partial results given")]
    Empty,
    /// A partial of another kind or job.
    #[error("{file}: from another job ({found}); expected {expected}")]
    OtherJob {
        /// The partial that does not belong.
        file: String,
        /// Its job.
        found: String,
        /// The first partial's job.
        expected: String,
    },
    /// An item present twice.
    #[error("item {index} appears in two partials (a slice was given twice?)")]
    Duplicate {
        /// The item.
        index: usize,
    },
    /// Items no slice produced.
    #[error(
        "{missing} of {total} items missing (first: {first}); run the missing slices: {slices}"
    )]
    Missing {
        /// How many.
        missing: usize,
        /// Of how many.
        total: usize,
        /// The first missing index.
        first: usize,
        /// The slices that own missing items, as `K/N`.
        slices: String,
    },
    /// An unreadable partial.
    #[error("{file}: not a tether partial result: {reason}")]
    Unreadable {
        /// The file.
        file: String,
        /// What the parser said.
        reason: String,
    },
}

/// Reads a partial written by [`Partial::to_json`]; `file` names it in errors.
pub fn read<T: DeserializeOwned>(file: &str, text: &str) -> Result<Partial<T>, MergeError> {
    serde_json::from_str(text).map_err(|e| MergeError::Unreadable {
        file: file.to_owned(),
        reason: e.to_string(),
    })
}

impl<T: Serialize> Partial<T> {
    /// The partial as JSON, one item per line so diffs stay readable.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Joins the partials (each with the file it came from) into the whole job's results, in index
/// order. Every item must be present exactly once, and all partials from the same job.
pub fn merge<T>(partials: Vec<(String, Partial<T>)>) -> Result<Vec<T>, MergeError> {
    let Some((_, first)) = partials.first() else {
        return Err(MergeError::Empty);
    };
    let (kind, job, total) = (first.kind.clone(), first.job.clone(), first.total);
    let mut slots: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut counts = Vec::new();
    for (file, p) in partials {
        if p.kind != kind || p.job != job || p.total != total {
            return Err(MergeError::OtherJob {
                file,
                found: format!("{} {} ({} items)", p.kind, p.job, p.total),
                expected: format!("{kind} {job} ({total} items)"),
            });
        }
        counts.push(p.shard.count);
        for item in p.items {
            let slot = slots.get_mut(item.index).ok_or(MergeError::Unreadable {
                file: file.clone(),
                reason: format!("item {} beyond the job's {total}", item.index),
            })?;
            if slot.replace(item.result).is_some() {
                return Err(MergeError::Duplicate { index: item.index });
            }
        }
    }
    let missing: Vec<usize> = (0..total).filter(|&i| slots[i].is_none()).collect();
    if let Some(&first) = missing.first() {
        let count = counts.into_iter().max().unwrap_or(1).max(1);
        let mut owners: Vec<u32> = missing
            .iter()
            .map(|&i| (i % count as usize) as u32)
            .collect();
        owners.sort_unstable();
        owners.dedup();
        let slices: Vec<String> = owners.iter().map(|k| format!("{k}/{count}")).collect();
        return Err(MergeError::Missing {
            missing: missing.len(),
            total,
            first,
            slices: slices.join(", "),
        });
    }
    Ok(slots.into_iter().flatten().collect())
}

/// A stable 64-bit digest (FNV-1a) of a scenario's text, so slices run from copies of the same
/// file at different paths still match, and an edited file does not.
pub fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partial(shard: Shard, total: usize) -> Partial<usize> {
        Partial {
            kind: "sweep".into(),
            job: "j".into(),
            total,
            shard,
            items: shard
                .select(total)
                .map(|i| Item {
                    index: i,
                    result: i * 10,
                })
                .collect(),
        }
    }

    #[test]
    fn shard_parses_as_k_of_n_from_zero() {
        assert_eq!("2/8".parse(), Ok(Shard { index: 2, count: 8 }));
        for bad in ["8/8", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_slice_is_named() {
        let parts = vec![("a".into(), partial(Shard { index: 0, count: 3 }, 7))];
        let err = merge(parts).unwrap_err();
        assert!(err.to_string().contains("1/3, 2/3"), "{err}");
    }

    #[test]
    fn a_slice_given_twice_or_from_another_job_is_refused() {
        let s = Shard { index: 0, count: 2 };
        let twice = vec![("a".into(), partial(s, 4)), ("b".into(), partial(s, 4))];
        assert_eq!(merge(twice), Err(MergeError::Duplicate { index: 0 }));
        let mut other = partial(Shard { index: 1, count: 2 }, 4);
        other.job = "k".into();
        let mixed = vec![("a".into(), partial(s, 4)), ("b".into(), other)];
        assert!(matches!(merge(mixed), Err(MergeError::OtherJob { .. })));
    }

    #[test]
    fn a_partial_survives_its_json() {
        let p = partial(Shard { index: 1, count: 3 }, 10);
        assert_eq!(read::<usize>("f", &p.to_json()), Ok(p));
        assert!(read::<usize>("f", "{").is_err());
    }

    proptest! {
        /// Any cut of a job into slices, merged in any order, gives the unsharded job back.
        #[test]
        fn slices_merge_to_the_whole_job(total in 0usize..200, count in 1u32..20, rot in 0usize..20) {
            let mut parts: Vec<(String, Partial<usize>)> = (0..count)
                .map(|k| (format!("p{k}"), partial(Shard { index: k, count }, total)))
                .collect();
            let n = parts.len();
            parts.rotate_left(rot % n);
            let whole: Vec<usize> = (0..total).map(|i| i * 10).collect();
            if total == 0 {
                prop_assert_eq!(merge(parts), Ok(Vec::new()));
            } else {
                prop_assert_eq!(merge(parts), Ok(whole));
            }
        }

        /// Every item belongs to exactly one slice.
        #[test]
        fn every_item_has_one_slice(i in 0usize..10_000, count in 1u32..64) {
            let owners = (0..count).filter(|&k| Shard { index: k, count }.owns(i)).count();
            prop_assert_eq!(owners, 1);
        }
    }
}
