//! One peers connection as a sans-IO state machine, in the quinn-proto manner: feed it the
//! bytes read ([`Session::handle_input`]) and the time ([`Session::handle_timeout`]), take the
//! bytes to write ([`Session::poll_transmit`]), when to wake it next
//! ([`Session::poll_timeout`]) and what happened ([`Session::poll_event`]). It never touches a
//! socket, a clock or a random number, so the daemon (tokio) and the simulator (turmoil) run it
//! identically.
//!
//! What it does, as HAProxy 2.6's `peers.c`: the hello and status exchange; table definitions
//! mapped by name, key type and length (other tables are declined: their updates are skipped,
//! never applied); updates decoded with their server id and server name (the `server_key`
//! dictionary, 128 slots); an acknowledgement after each batch received; resync request,
//! finished/partial and confirm; a heartbeat after 3 s without sending, and the session closed
//! after 5 s without hearing anything. Any protocol violation closes the session with
//! [`SessionError`]: it never panics and never applies a half-decoded update.

use std::collections::VecDeque;
use std::sync::Arc;

use super::wire::{self, Message, RemoteLayout, WireError};
use crate::stick::StickKey;
use crate::Timestamp;

/// Milliseconds without sending after which a heartbeat goes out (HAProxy: 3 s).
pub const HEARTBEAT_MS: u64 = 3_000;
/// Milliseconds without receiving anything after which the session is dead (HAProxy: 5 s).
pub const IDLE_TIMEOUT_MS: u64 = 5_000;
/// Most remote table definitions one session keeps.
pub const MAX_REMOTE_TABLES: usize = 64;
/// Dictionary slots for server names (HAProxy: `PEER_STKT_CACHE_MAX_ENTRIES`).
pub const DICT_SLOTS: u64 = 128;
/// Most bytes waiting to be sent before the session refuses more updates
/// ([`Session::can_send`]); the driver then waits for the socket.
pub const TX_HIGH_WATER: usize = 256 * 1024;

/// A table this side shares: what goes into its definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTable {
    /// Its name on the wire: the backend's name, as HAProxy names a backend's table.
    pub name: String,
    /// Key length in bytes (binary keys).
    pub key_len: usize,
    /// Entry lifetime, sent in the definition.
    pub expire_ms: u64,
}

/// What both ends of every session of a peers section share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// This process's peer name (`localpeer`, `-L`).
    pub local_name: String,
    /// The tables shared, indexed by position in every [`Event`] and call.
    pub tables: Vec<LocalTable>,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Undecodable bytes.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// The other side answered the hello with a non-200 status.
    #[error("peer refused the hello with status {0}")]
    Refused(u16),
    /// We refused the other side's hello.
    #[error("refused the hello with status {status}: {why}")]
    RefusedHello {
        /// The status sent.
        status: u16,
        /// Why.
        why: String,
    },
    /// Nothing heard for [`IDLE_TIMEOUT_MS`].
    #[error("no message for {IDLE_TIMEOUT_MS} ms")]
    Timeout,
    /// The other side sent an error message.
    #[error("peer reported error {0}")]
    PeerError(u8),
    /// Too many table definitions.
    #[error("more than {MAX_REMOTE_TABLES} table definitions")]
    TooManyTables,
    /// An update arrived before any table was defined or switched to.
    #[error("update without a current table")]
    NoTable,
    /// A `server_key` dictionary id out of range or never filled.
    #[error("server key dictionary id {0} is unknown")]
    Dictionary(u64),
    /// Closed by the owner.
    #[error("closed: {0}")]
    Closed(&'static str),
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake succeeded with the peer of this name.
    Open {
        /// The other side's name.
        peer: String,
    },
    /// An entry from the other side.
    Update(RemoteUpdate),
    /// The other side acknowledged our updates of `table` up to `update`.
    Acked {
        /// Local table index.
        table: usize,
        /// Last update id received there.
        update: u32,
    },
    /// The other side defined a table we do not share (or share with another key): its
    /// updates are skipped.
    Declined {
        /// The table's name.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The other side asked for every entry: send them ([`Session::send_update`] with an
    /// expiry), then [`Session::send_resync_finished`].
    ResyncRequested,
    /// The other side finished teaching us (we confirmed it already).
    ResyncFinished {
        /// It said it was not up to date itself.
        partial: bool,
    },
    /// The other side confirmed the end of our teaching.
    ResyncConfirmed,
    /// A heartbeat arrived.
    Heartbeat,
    /// The session is over; nothing more will be sent or reported.
    Closed(SessionError),
}

/// An entry received, mapped to a local table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUpdate {
    /// Local table index.
    pub table: usize,
    /// The key, at the table's length.
    pub key: StickKey,
    /// The sender's `server_id` (HAProxy's `puid`, from 1).
    pub server_id: Option<u32>,
    /// The sender's server name (HAProxy 2.6 `server_key`), when sent.
    pub server_name: Option<Arc<str>>,
    /// Remaining lifetime, when the sender said (a resync).
    pub expire_ms: Option<u32>,
}

/// Counters of one session.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Updates sent.
    pub updates_sent: u64,
    /// Updates received and mapped to a local table.
    pub updates_received: u64,
    /// Updates of declined tables, skipped.
    pub updates_skipped: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// When we last received anything.
    pub last_rx: Timestamp,
    /// When the handshake completed.
    pub opened_at: Option<Timestamp>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// We connected and sent the hello; waiting for the status line.
    AwaitStatus,
    /// We accepted; waiting for the hello.
    AwaitHello,
    /// Messages flow.
    Open,
    /// Over.
    Closed,
}

#[derive(Clone, Debug)]
struct RemoteTable {
    remote_id: u64,
    layout: RemoteLayout,
    local: Option<usize>,
    last_get: u32,
    last_acked: u32,
}

/// One peers connection, either side. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    state: State,
    /// The peer's name: known at connect, learned from the hello on accept.
    peer: String,
    /// Names allowed to connect (accepting side).
    allowed: Vec<String>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<Event>,
    remote: Vec<RemoteTable>,
    current_rx: Option<usize>,
    /// Per local table: defined to the other side yet.
    defined: Vec<bool>,
    current_tx: Option<usize>,
    dict_rx: Vec<Option<Arc<str>>>,
    dict_tx_next: u64,
    last_tx: Timestamp,
    stats: SessionStats,
}

impl Session {
    /// We connect to `peer`: the hello is queued at once.
    pub fn connect(config: Arc<SessionConfig>, peer: &str, now: Timestamp) -> Self {
        let mut s = Self::new(config, peer.to_owned(), Vec::new(), State::AwaitStatus, now);
        let hello = wire::Hello {
            version: wire::VERSION,
            remote: peer,
            local: &s.config.local_name,
        }
        .to_string();
        s.tx.extend_from_slice(hello.as_bytes());
        s
    }

    /// We accepted a connection; only peers named in `allowed` are let in.
    pub fn accept(config: Arc<SessionConfig>, allowed: Vec<String>, now: Timestamp) -> Self {
        Self::new(config, String::new(), allowed, State::AwaitHello, now)
    }

    fn new(
        config: Arc<SessionConfig>,
        peer: String,
        allowed: Vec<String>,
        state: State,
        now: Timestamp,
    ) -> Self {
        let n = config.tables.len();
        Session {
            config,
            state,
            peer,
            allowed,
            rx: Vec::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            remote: Vec::new(),
            current_rx: None,
            defined: vec![false; n],
            current_tx: None,
            dict_rx: vec![None; DICT_SLOTS as usize],
            dict_tx_next: 0,
            last_tx: now,
            stats: SessionStats {
                last_rx: now,
                ..SessionStats::default()
            },
        }
    }

    /// The other side's name (empty until an accepted session has read the hello).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the handshake is done and the session not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether more updates may be queued now (open, and the send buffer below
    /// [`TX_HIGH_WATER`]).
    pub fn can_send(&self) -> bool {
        self.is_open() && self.tx.len() < TX_HIGH_WATER
    }

    /// Bytes read from the connection. Errors close the session (an [`Event::Closed`] is
    /// queued too), after which input is ignored.
    pub fn handle_input(&mut self, data: &[u8], now: Timestamp) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.stats.last_rx = now;
        self.rx.extend_from_slice(data);
        let result = self.process(now);
        self.flush_acks();
        if let Err(e) = &result {
            self.close_with(e.clone());
        }
        result
    }

    /// The connection reached end of file.
    pub fn handle_eof(&mut self) {
        self.close_with(SessionError::Closed("connection closed by peer"));
    }

    /// Time passed: heartbeats and the idle timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.state {
            State::Closed => {}
            _ if now.0 >= self.stats.last_rx.0.saturating_add(IDLE_TIMEOUT_MS) => {
                self.close_with(SessionError::Timeout)
            }
            State::Open if now.0 >= self.last_tx.0.saturating_add(HEARTBEAT_MS) => {
                wire::put_control(&mut self.tx, wire::control::HEARTBEAT);
            }
            _ => {}
        }
    }

    /// When [`Session::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let idle = Timestamp(self.stats.last_rx.0.saturating_add(IDLE_TIMEOUT_MS));
        match self.state {
            State::Closed => None,
            State::Open => Some(idle.min(Timestamp(self.last_tx.0.saturating_add(HEARTBEAT_MS)))),
            _ => Some(idle),
        }
    }

    /// Appends the bytes to write to `out`; false when there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, now: Timestamp) -> bool {
        if self.tx.is_empty() {
            return false;
        }
        self.last_tx = now;
        out.append(&mut self.tx);
        true
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Closes the session (the owner's decision: shutdown, a replaced connection).
    pub fn close(&mut self, why: &'static str) {
        self.close_with(SessionError::Closed(why));
    }

    /// Queues one entry of local table `table`: its definition first if not sent yet, a switch
    /// when another table was current. `expire_ms` makes it a timed update (resync). `dict`
    /// slots rotate, the name always sent in full. Ignored unless open.
    pub fn send_update(&mut self, table: usize, update: &OutgoingUpdate<'_>) {
        if !self.is_open() || table >= self.config.tables.len() {
            return;
        }
        self.select_table(table);
        self.dict_tx_next = self.dict_tx_next % DICT_SLOTS + 1;
        wire::put_update(
            &mut self.tx,
            update.id,
            update.expire_ms,
            update.key,
            update.server_id,
            update.server_name,
            self.dict_tx_next,
        );
        self.stats.updates_sent += 1;
    }

    /// Asks the other side for all its entries.
    pub fn send_resync_request(&mut self) {
        if self.is_open() {
            wire::put_control(&mut self.tx, wire::control::RESYNC_REQUEST);
        }
    }

    /// Ends a teach started by [`Event::ResyncRequested`] (or pushed unasked, for an upgrade).
    pub fn send_resync_finished(&mut self, partial: bool) {
        if self.is_open() {
            let kind = if partial {
                wire::control::RESYNC_PARTIAL
            } else {
                wire::control::RESYNC_FINISHED
            };
            wire::put_control(&mut self.tx, kind);
        }
    }

    fn select_table(&mut self, table: usize) {
        if !self.defined[table] {
            let t = &self.config.tables[table];
            let id = table as u64 + 1;
            wire::put_define(&mut self.tx, id, &t.name, t.key_len, t.expire_ms);
            self.defined[table] = true;
        } else if self.current_tx != Some(table) {
            let mut body = Vec::with_capacity(2);
            wire::put_varint(&mut body, table as u64 + 1);
            wire::put_table_message(&mut self.tx, wire::stkt::SWITCH, &body);
        }
        self.current_tx = Some(table);
    }

    fn close_with(&mut self, e: SessionError) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.rx = Vec::new();
            self.events.push_back(Event::Closed(e));
        }
    }

    fn process(&mut self, now: Timestamp) -> Result<(), SessionError> {
        let rx = std::mem::take(&mut self.rx);
        let mut used = 0;
        let result = loop {
            let input = &rx[used..];
            let step = match self.state {
                State::AwaitStatus => self.read_status(input),
                State::AwaitHello => self.read_hello(input, now),
                State::Open => self.read_message(input),
                State::Closed => Ok(None),
            };
            match step {
                Ok(Some(n)) => used += n,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.rx = rx;
        self.rx.drain(..used.min(self.rx.len()));
        result
    }

    fn read_status(&mut self, input: &[u8]) -> Result<Option<usize>, SessionError> {
        let Some((code, n)) = wire::decode_status(input)? else {
            return Ok(None);
        };
        if code != wire::status::SUCCESS {
            return Err(SessionError::Refused(code));
        }
        self.open();
        Ok(Some(n))
    }

    fn read_hello(&mut self, input: &[u8], now: Timestamp) -> Result<Option<usize>, SessionError> {
        let hello = match wire::decode_hello(input) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.tx
                    .extend_from_slice(format!("{}\n", wire::status::ERR_PROTO).as_bytes());
                return Err(e.into());
            }
        };
        let (h, n) = hello;
        let refuse = if h.version.0 != wire::VERSION.0 || h.version.1 > wire::VERSION.1 {
            Some((
                wire::status::ERR_VERSION,
                format!("version {}.{}", h.version.0, h.version.1),
            ))
        } else if h.remote != self.config.local_name {
            Some((
                wire::status::ERR_HOST,
                format!(
                    "addressed to {:?}, we are {:?}",
                    h.remote, self.config.local_name
                ),
            ))
        } else if !self.allowed.iter().any(|p| p == h.local) {
            Some((
                wire::status::ERR_PEER,
                format!("unknown peer {:?}", h.local),
            ))
        } else {
            None
        };
        if let Some((status, why)) = refuse {
            self.tx.extend_from_slice(format!("{status}\n").as_bytes());
            return Err(SessionError::RefusedHello { status, why });
        }
        self.peer = h.local.to_owned();
        self.tx
            .extend_from_slice(format!("{}\n", wire::status::SUCCESS).as_bytes());
        let _ = now;
        self.open();
        Ok(Some(n))
    }

    fn open(&mut self) {
        self.state = State::Open;
        self.stats.opened_at = Some(self.stats.last_rx);
        self.events.push_back(Event::Open {
            peer: self.peer.clone(),
        });
    }

    /// Decodes one message off the front of `input`.
    fn read_message(&mut self, input: &[u8]) -> Result<Option<usize>, SessionError> {
        match wire::decode_message(input)? {
            Some((msg, n)) => self.on_message(msg).map(|()| Some(n)),
            None => Ok(None),
        }
    }

    fn on_message(&mut self, msg: Message<'_>) -> Result<(), SessionError> {
        use wire::control as c;
        match msg {
            Message::Control(c::RESYNC_REQUEST) => self.events.push_back(Event::ResyncRequested),
            Message::Control(k @ (c::RESYNC_FINISHED | c::RESYNC_PARTIAL)) => {
                wire::put_control(&mut self.tx, c::RESYNC_CONFIRM);
                self.events.push_back(Event::ResyncFinished {
                    partial: k == c::RESYNC_PARTIAL,
                });
            }
            Message::Control(c::RESYNC_CONFIRM) => self.events.push_back(Event::ResyncConfirmed),
            Message::Control(c::HEARTBEAT) => {
                self.stats.heartbeats_received += 1;
                self.events.push_back(Event::Heartbeat);
            }
            Message::Control(_) | Message::Unknown { .. } | Message::UnknownTable { .. } => {}
            Message::Error(e) => return Err(SessionError::PeerError(e)),
            Message::Define(def) => self.on_define(&def)?,
            Message::Switch { table_id } => {
                self.current_rx = self.remote.iter().position(|t| t.remote_id == table_id);
            }
            Message::Ack { table_id, update } => {
                let table = table_id.wrapping_sub(1);
                if table < self.config.tables.len() as u64 {
                    self.events.push_back(Event::Acked {
                        table: table as usize,
                        update,
                    });
                }
            }
            Message::Update { kind, body } => self.on_update(kind, body)?,
        }
        Ok(())
    }

    fn on_define(&mut self, def: &wire::TableDef<'_>) -> Result<(), SessionError> {
        let name = String::from_utf8_lossy(def.name);
        let local = self.config.tables.iter().position(|t| t.name == name);
        let why = match local.map(|i| &self.config.tables[i]) {
            None => Some("no table of that name here"),
            Some(_) if def.key_type != wire::key_type::BIN => Some("key type is not binary"),
            Some(t) if def.key_len != t.key_len as u64 => Some("key length differs"),
            Some(_)
                if def.data_types
                    & (1 << wire::data_type::SERVER_ID | 1 << wire::data_type::SERVER_KEY)
                    == 0 =>
            {
                Some("stores no server")
            }
            Some(_) if def.data_types >> wire::data_type::COUNT != 0 => Some("unknown data types"),
            Some(_) => None,
        };
        if let Some(why) = why {
            self.events.push_back(Event::Declined {
                name: name.into_owned(),
                why,
            });
        }
        let entry = RemoteTable {
            remote_id: def.table_id,
            layout: RemoteLayout {
                key_type: def.key_type,
                key_len: usize::try_from(def.key_len).unwrap_or(usize::MAX),
                data_types: def.data_types,
                array_len: def.array_len,
            },
            local: if why.is_none() { local } else { None },
            last_get: 0,
            last_acked: 0,
        };
        let slot = match self.remote.iter().position(|t| t.remote_id == def.table_id) {
            Some(i) => {
                self.remote[i] = entry;
                i
            }
            None if self.remote.len() >= MAX_REMOTE_TABLES => {
                return Err(SessionError::TooManyTables)
            }
            None => {
                self.remote.push(entry);
                self.remote.len() - 1
            }
        };
        self.current_rx = Some(slot);
        Ok(())
    }

    fn on_update(&mut self, kind: u8, body: &[u8]) -> Result<(), SessionError> {
        let i = self.current_rx.ok_or(SessionError::NoTable)?;
        let t = &mut self.remote[i];
        let Some(local) = t.local else {
            self.stats.updates_skipped += 1;
            return Ok(());
        };
        let u = wire::decode_update(kind, body, &t.layout)?;
        t.last_get = u.id.unwrap_or(t.last_get.wrapping_add(1));
        let server_name = match u.server_key {
            None => None,
            Some(d) => Some(self.dict_entry(d.id, d.value)?),
        };
        let key_len = self.config.tables[local].key_len;
        self.stats.updates_received += 1;
        self.events.push_back(Event::Update(RemoteUpdate {
            table: local,
            key: StickKey::new(u.key, key_len),
            server_id: u.server_id.and_then(|v| u32::try_from(v).ok()),
            server_name,
            expire_ms: u.expire_ms,
        }));
        Ok(())
    }

    fn dict_entry(&mut self, id: u64, value: Option<&[u8]>) -> Result<Arc<str>, SessionError> {
        let slot = usize::try_from(id - 1)
            .ok()
            .filter(|&s| s < self.dict_rx.len())
            .ok_or(SessionError::Dictionary(id))?;
        if let Some(v) = value {
            if v.len() > wire::MAX_SERVER_KEY {
                return Err(SessionError::Dictionary(id));
            }
            self.dict_rx[slot] = Some(Arc::from(String::from_utf8_lossy(v).as_ref()));
        }
        self.dict_rx[slot]
            .clone()
            .ok_or(SessionError::Dictionary(id))
    }

    fn flush_acks(&mut self) {
        if self.state != State::Open {
            return;
        }
        for t in &mut self.remote {
            if t.local.is_some() && t.last_get != t.last_acked {
                wire::put_ack(&mut self.tx, t.remote_id, t.last_get);
                t.last_acked = t.last_get;
            }
        }
    }
}

/// One entry to send ([`Session::send_update`]).
#[derive(Clone, Debug)]
pub struct OutgoingUpdate<'a> {
    /// Its update id (the table's update sequence number).
    pub id: u32,
    /// The key, at the table's length.
    pub key: &'a [u8],
    /// Our server id (HAProxy `puid`: position in the backend, from 1).
    pub server_id: u32,
    /// Our server name.
    pub server_name: &'a str,
    /// Remaining lifetime, for a resync.
    pub expire_ms: Option<u32>,
}

#[cfg(test)]
mod tests;
