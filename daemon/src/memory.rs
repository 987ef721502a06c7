//! Giving memory back to the system once connections go.
//!
//! mimalloc keeps the pages of freed blocks for reuse and purges them (returns them to the
//! system) only from later allocator calls. When connections close and the daemon goes quiet,
//! nothing calls it, and the RSS of the busiest moment stays for good. A tick watches the open
//! connections; when they have fallen well below their peak it asks every worker thread to
//! free its pooled relay buffers and collect its allocator heap the next time it goes idle
//! ([`on_thread_park`]), which purges the free pages.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_core::engine::flow::Context;
use tether_core::engine::Net;

// The library that defines `mi_collect` is linked with this crate.
use mimalloc as _;

/// How often the open connections are looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// Fewer connections gone than this is not worth a collection.
pub const MIN_DROP: u64 = 256;

/// Bumped for every release asked for; each thread collects once per value.
static RELEASE_EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN_EPOCH: Cell<u64> = const { Cell::new(0) };
}

extern "C" {
    /// mimalloc's `mi_collect`: frees what the calling thread's heap holds unused and, with
    /// `force`, purges the free pages it can reach.
    fn mi_collect(force: bool);
}

/// Decides when memory is given back: once the open connections have fallen to half their
/// peak since the last release, by at least [`MIN_DROP`]. The peak is the process's own
/// high-water mark between two looks, so connections that come and go between ticks count.
#[derive(Debug, Default)]
pub struct LowLoad {
    peak: u64,
}

impl LowLoad {
    /// Takes the current count of open connections and the most open at once since the last
    /// look; true when memory should be given back.
    pub fn observe(&mut self, open: u64, peak_between: u64) -> bool {
        self.peak = self.peak.max(open).max(peak_between);
        let fell = self.peak - open;
        if fell >= MIN_DROP && open <= self.peak / 2 {
            self.peak = open;
            true
        } else {
            false
        }
    }
}

/// Asks every worker thread to collect its heap when it next goes idle.
pub fn request_release() {
    RELEASE_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// tokio's `on_thread_park` hook: a thread about to sleep collects its allocator heap if a
/// release was asked for since it last did. One relaxed load otherwise.
pub fn on_thread_park() {
    let epoch = RELEASE_EPOCH.load(Ordering::Relaxed);
    if SEEN_EPOCH.with(|s| s.replace(epoch)) != epoch {
        tether_core::engine::buffers::release_pooled();
        // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any
        // time; the global allocator of this binary is mimalloc, whose library defines it.
        unsafe { mi_collect(true) };
    }
}

/// Watches `ctx`'s open connections for ever, asking for a release when they fall.
pub async fn release_on_low_load<N: Net>(ctx: Arc<Context<N>>) {
    let mut low = LowLoad::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let open = ctx.actconn.load(Ordering::Relaxed);
        let peak_between = ctx.actconn_peak.swap(open, Ordering::Relaxed);
        if low.observe(open, peak_between) {
            tracing::debug!("connections fell: giving freed memory back");
            request_release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_once_connections_fall_to_half_their_peak() {
        let mut l = LowLoad::default();
        // Growing and steady load: nothing to give back.
        for open in [0, 100, 2_000, 4_000, 3_900, 4_000] {
            assert!(!l.observe(open, open), "{open}");
        }
        // Not yet half.
        assert!(!l.observe(2_500, 2_500));
        // Half gone: release, and the peak starts again from here.
        assert!(l.observe(1_000, 1_000));
        assert!(!l.observe(900, 900));
        assert!(!l.observe(1_000, 1_000));
        // All gone, and more than MIN_DROP of them.
        assert!(l.observe(0, 0));
        assert!(!l.observe(0, 0));
    }

    #[test]
    fn a_peak_between_two_looks_counts() {
        let mut l = LowLoad::default();
        assert!(!l.observe(0, 0));
        // Thousands came and went between two ticks: the memory they used is to give back.
        assert!(l.observe(0, 3_000));
        assert!(!l.observe(0, 0));
    }

    #[test]
    fn a_small_fall_is_not_worth_a_collection() {
        let mut l = LowLoad::default();
        assert!(!l.observe(MIN_DROP - 1, MIN_DROP - 1));
        assert!(!l.observe(0, 0));
        assert!(!l.observe(MIN_DROP, MIN_DROP));
        assert!(l.observe(0, 0));
    }

    #[test]
    fn each_thread_collects_once_per_request() {
        let before = SEEN_EPOCH.with(Cell::get);
        request_release();
        on_thread_park();
        let seen = SEEN_EPOCH.with(Cell::get);
        assert!(seen > before);
        on_thread_park();
        assert_eq!(SEEN_EPOCH.with(Cell::get), seen);
    }
}
