//! The stats listener's connection table: a bounded number of connections, where a newcomer
//! evicts the oldest connection that is only waiting for a request (idle, dribbling its head or
//! its TLS handshake) instead of waiting behind it. Slow clients can then occupy every slot
//! without locking anyone out: each arrival pushes the slowest out, and a request being answered
//! is not cut — unless its response has been stuck for [`super::server::STALLED_AFTER`] on a
//! client that does not read it, which then counts as waiting too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One open connection as the table sees it.
#[derive(Debug, Default)]
pub struct SlotState {
    answering: AtomicBool,
    evicted: Notify,
}

impl SlotState {
    /// A whole request arrived (`true`) or its response went out (`false`).
    pub fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::Relaxed);
    }

    /// Resolves once a newcomer has taken this connection's slot: close it.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

/// The bounded table of open stats connections.
#[derive(Debug)]
pub struct ConnectionSlots {
    cap: usize,
    open: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    by_age: BTreeMap<u64, Arc<SlotState>>,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    table: Arc<ConnectionSlots>,
    /// What the connection reports and waits on.
    pub state: Arc<SlotState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().by_age.remove(&self.id);
    }
}

impl ConnectionSlots {
    /// A table of at most `cap` connections.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            cap,
            open: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection, evicting the oldest one waiting for a request when the table is
    /// full. `None`: every slot is answering a request; the caller closes the newcomer.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut t = self.lock();
        if t.by_age.len() >= self.cap {
            let oldest_waiting = t
                .by_age
                .iter()
                .find(|(_, s)| !s.answering.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(s) = t.by_age.remove(&oldest_waiting) {
                s.evicted.notify_one();
            }
        }
        let id = t.next;
        t.next += 1;
        let state = Arc::new(SlotState::default());
        t.by_age.insert(id, state.clone());
        Some(Slot {
            id,
            table: self.clone(),
            state,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().by_age.len()
    }

    /// No connection open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn was_evicted(s: &Slot) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), s.state.evicted())
                .await
                .is_ok()
        })
    }

    #[test]
    fn a_full_table_evicts_the_oldest_waiting_connection() {
        let slots = ConnectionSlots::new(3);
        let a = slots.admit().unwrap();
        let b = slots.admit().unwrap();
        let c = slots.admit().unwrap();
        a.state.set_answering(true);
        let d = slots.admit().expect("b was only waiting");
        assert_eq!(slots.len(), 3);
        assert!(was_evicted(&b), "the oldest waiting connection goes");
        assert!(!was_evicted(&a), "a request being answered is never cut");
        assert!(!was_evicted(&c));
        drop(b);
        assert_eq!(slots.len(), 3, "an evicted slot is not freed twice");
        c.state.set_answering(true);
        d.state.set_answering(true);
        assert!(
            slots.admit().is_none(),
            "everyone answering: the newcomer waits outside"
        );
        drop(a);
        assert!(slots.admit().is_some());
    }

    #[test]
    fn freed_slots_admit_without_evicting() {
        let slots = ConnectionSlots::new(2);
        let a = slots.admit().unwrap();
        drop(slots.admit().unwrap());
        let _c = slots.admit().unwrap();
        assert!(!was_evicted(&a));
        assert_eq!(slots.len(), 2);
    }
}
