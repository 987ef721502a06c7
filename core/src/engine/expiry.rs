//! Expired stick-table entries leave on time, as HAProxy's table expiry task makes them.
//!
//! A lookup drops the expired entry it meets and a full table drops expired entries before it
//! evicts, but an entry nobody asks for again would otherwise stay until the table fills: the
//! table's memory, its `entries` count and what peers are shown would describe yesterday's
//! clients. One task per process sleeps until the earliest expiry of any table (never sooner
//! than [`MIN_INTERVAL`] after its last pass, so a busy table costs one pass per interval) and
//! purges what is due. It runs on the engine's clock, so the simulator purges exactly as the
//! daemon does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::backend::Backend;
use super::clock::Clock;
use super::tables::SharedTable;

/// Shortest time between two purges: entries wait at most this long past their expiry (lookups
/// already treat them as gone).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Longest sleep when every table is empty: a table's first entry cannot expire sooner than its
/// `expire`, but tables without one are looked at this often anyway.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// Purges the tables of `backends` as their entries expire, until `shutdown` turns true (or its
/// sender is gone). Tables shared by several backends are purged once.
pub async fn purge_tables(
    clock: Clock,
    backends: Vec<Arc<Backend>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tables = distinct_tables(&backends);
    if tables.is_empty() {
        return;
    }
    loop {
        let now = Instant::now();
        let wake = next_wake(&tables, clock, now);
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = sleep_until(wake) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let now = clock.now();
        let purged: usize = tables.iter().map(|t| t.purge_expired(now)).sum();
        if purged > 0 {
            tracing::debug!(purged, "expired stick-table entries removed");
        }
    }
}

/// Every table of `backends` once, in backend order.
fn distinct_tables(backends: &[Arc<Backend>]) -> Vec<Arc<SharedTable>> {
    let mut tables: Vec<Arc<SharedTable>> = Vec::new();
    for t in backends.iter().flat_map(|b| b.tables.iter()) {
        if !tables.iter().any(|seen| Arc::ptr_eq(seen, t)) {
            tables.push(t.clone());
        }
    }
    tables
}

/// When the next purge has work: the earliest entry's expiry, or, with empty tables, the soonest
/// a new entry could expire; never sooner than [`MIN_INTERVAL`] from `now`.
fn next_wake(tables: &[Arc<SharedTable>], clock: Clock, now: Instant) -> Instant {
    let due = tables
        .iter()
        .map(|t| match t.next_expiry() {
            Some(at) => clock.instant(at),
            None => now + t.config().expire.min(IDLE_WAIT),
        })
        .min()
        .unwrap_or(now + IDLE_WAIT);
    due.max(now + MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::TableKind;
    use crate::config;
    use crate::engine::runtime::build;
    use crate::ServerId;

    /// Two backends sharing nothing: `a` keeps entries 10 s, `b` 30 s.
    fn backends() -> Vec<Arc<Backend>> {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"a\"\n\
             [[backend]]\nname = \"a\"\naffinity = [\"session-id\"]\n\
             [backend.stick-table]\nsize = \"1k\"\nexpire = \"10s\"\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\n\
             [[backend]]\nname = \"b\"\naffinity = [\"session-id\", \"ticket\"]\n\
             [backend.stick-table]\nsize = \"1k\"\nexpire = \"30s\"\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.2:80\"\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        build(&config, None)
            .unwrap()
            .backends
            .values()
            .cloned()
            .collect()
    }

    fn table(be: &Backend, kind: TableKind) -> &SharedTable {
        be.tables.get(kind).expect("table of that kind")
    }

    #[tokio::test(start_paused = true)]
    async fn entries_nobody_asks_for_leave_once_expired_and_live_ones_stay() {
        let bes = backends();
        let clock = Clock::start();
        let (a, b) = (&bes[0], &bes[1]);
        table(a, TableKind::SessionId).learn(b"early", ServerId(0), clock.now());
        table(b, TableKind::Ticket).learn(b"ticket", ServerId(0), clock.now());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(purge_tables(clock, bes.clone(), rx));
        tokio::time::sleep(Duration::from_secs(5)).await;
        table(a, TableKind::SessionId).learn(b"late", ServerId(0), clock.now());

        tokio::time::sleep(Duration::from_millis(5_500)).await; // t = 10.5 s
        let sid = table(a, TableKind::SessionId);
        assert_eq!(sid.len(), 1, "the entry learned at 0 s left at 10 s");
        assert_eq!(sid.stats().expired, 1);
        assert_eq!(table(b, TableKind::Ticket).len(), 1, "30 s not over");

        tokio::time::sleep(Duration::from_secs(5)).await; // t = 15.5 s
        assert_eq!(sid.len(), 0);
        tokio::time::sleep(Duration::from_secs(15)).await; // t = 30.5 s
        assert_eq!(table(b, TableKind::Ticket).len(), 0);
        assert_eq!(table(b, TableKind::Ticket).stats().expired, 1);

        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task ends when told")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_table_is_purged_at_most_once_per_interval() {
        let bes = backends();
        let clock = Clock::start();
        let sid = table(&bes[0], TableKind::SessionId);
        // An entry expiring every 10 ms: the task must not wake for each.
        for i in 0..1_000u32 {
            sid.learn(&i.to_be_bytes(), ServerId(0), clock.now());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_stop, rx) = watch::channel(false);
        let now = Instant::now();
        let wake = next_wake(&distinct_tables(&bes), clock, now);
        assert_eq!(wake, now + MIN_INTERVAL);
        tokio::spawn(purge_tables(clock, bes.clone(), rx));
        tokio::time::sleep(Duration::from_millis(1_001)).await;
        // Learned every 10 ms from 0 to 9.99 s, purged at 11 s: those learned by 1 s are gone.
        assert_eq!(sid.len(), 899);
    }

    #[test]
    fn a_table_two_backends_share_is_purged_once() {
        let bes = backends();
        let twice = vec![bes[0].clone(), bes[0].clone()];
        assert_eq!(distinct_tables(&twice).len(), 1);
        assert_eq!(distinct_tables(&bes).len(), 3);
    }
}
