//! The client session store of one probe chain: it holds only the sessions the latest connection
//! received, so each reconnection presents exactly what its predecessor got, and it counts what
//! rustls stored and took so the report can say whether a session was offered at all.

use std::sync::{Mutex, MutexGuard};

use rustls::client::ClientSessionStore;
use rustls::client::{Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// TLS 1.3 servers send a couple of tickets per handshake; more than this is not kept.
const MAX_TLS13_TICKETS: usize = 8;

/// What happened to sessions during one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionActivity {
    /// rustls took a stored session to offer in the ClientHello.
    pub offered: bool,
    /// Sessions (TLS 1.2 session or TLS 1.3 tickets) received and stored.
    pub received: u32,
}

#[derive(Debug, Default)]
struct State {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Vec<Tls13ClientSessionValue>,
    /// Whether TLS 1.3 tickets already arrived on the current connection (older ones are then
    /// dropped, so only the previous connection's tickets are ever presented).
    tls13_fresh: bool,
    activity: SessionActivity,
}

/// One chain's sessions; server names are ignored because a chain talks to one target.
#[derive(Debug, Default)]
pub struct ChainSessionStore {
    state: Mutex<State>,
}

impl ChainSessionStore {
    /// An empty store: the first connection is a full handshake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mark the start of a connection; returns what happened during the previous one.
    pub fn begin_connection(&self) -> SessionActivity {
        let mut state = self.lock();
        state.tls13_fresh = false;
        std::mem::take(&mut state.activity)
    }

    /// What happened so far during the current connection.
    pub fn activity(&self) -> SessionActivity {
        self.lock().activity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for ChainSessionStore {
    fn set_kx_hint(&self, _server_name: ServerName<'static>, group: NamedGroup) {
        self.lock().kx_hint = Some(group);
    }

    fn kx_hint(&self, _server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx_hint
    }

    fn set_tls12_session(&self, _server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        let mut state = self.lock();
        state.tls12 = Some(value);
        state.activity.received += 1;
    }

    fn tls12_session(&self, _server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let mut state = self.lock();
        let session = state.tls12.clone();
        if session.is_some() {
            state.activity.offered = true;
        }
        session
    }

    fn remove_tls12_session(&self, _server_name: &ServerName<'static>) {
        self.lock().tls12 = None;
    }

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut state = self.lock();
        if !state.tls13_fresh {
            state.tls13.clear();
            state.tls13_fresh = true;
        }
        if state.tls13.len() < MAX_TLS13_TICKETS {
            state.tls13.push(value);
        }
        state.activity.received += 1;
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let mut state = self.lock();
        // The most recent ticket first, as rustls' own cache does.
        let ticket = state.tls13.pop();
        if ticket.is_some() {
            state.activity.offered = true;
        }
        ticket
    }
}
