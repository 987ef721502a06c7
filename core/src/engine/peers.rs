//! The peers service: HAProxy's peers protocol driven over any [`Net`].
//!
//! One task accepts peer connections on the section's `bind`; one task per remote peer keeps a
//! connection to it, reconnecting with backoff. Each connection runs a sans-IO
//! [`Session`] and:
//! - pushes the local updates of every shared table from the last update the peer acknowledged
//!   (the table's [`UpdateFeed`](crate::stick::UpdateFeed)); a first connection, or one whose
//!   cursor fell out of the bounded backlog, gets the whole table instead;
//! - applies the peer's updates, last writer wins, mapping servers by name (HAProxy 2.6's
//!   `server_key`) or else by id (position from 1), recorded as the peer's so they are not
//!   pushed back;
//! - asks the first peer it reaches for a full resync once per start, and teaches every entry to
//!   a peer that asks;
//! - on a simultaneous connect keeps the accepted connection, closes the other and waits a
//!   random 50–2050 ms (from the seed passed in) before connecting again, as HAProxy does.
//!
//! Everything runs in its own tasks with short table locks: a slow, dead or hostile peer never
//! holds up the data plane. Time is the engine [`Clock`] (virtual under turmoil).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout};

use super::clock::Clock;
use super::net::Net;
use super::process::ProcessView;
use super::runtime::Runtime;
use super::tables::SharedTable;
use crate::config::peers::PeersSection;
use crate::peers::session::{
    Event, LocalTable, OutgoingUpdate, RemoteUpdate, Session, SessionConfig,
};
use crate::peers::SessionError;
use crate::stick::{Origin, Since};
use crate::{ServerId, Timestamp};

/// Updates kept per table for peers that fall behind (beyond: a full resync).
pub const FEED_BACKLOG: usize = 65_536;
/// Updates sent per table per step (HAProxy: 200 per batch).
const BATCH: usize = 200;
/// How often a connection looks for new local updates when nothing else wakes it.
const TICK: Duration = Duration::from_millis(20);
/// Bound on connecting and on a write making no progress.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between reconnects (HAProxy: 5 s).
const MAX_BACKOFF_MS: u64 = 5_000;
/// How often a connection checks that a reload left its tables in place.
const RELOAD_CHECK_MS: u64 = 1_000;

/// One stick table shared by a peers section, as the driver needs it.
#[derive(Clone, Debug)]
pub struct PeerTable {
    /// Its name on the wire: the backend's name (further tables of the backend:
    /// `backend.kind`).
    pub name: String,
    /// The table.
    pub table: Arc<SharedTable>,
    /// The server numbering the names below belong to.
    pub layout: u64,
    /// Server names and numbers (HAProxy's `puid`, the id on the wire) by [`ServerId`].
    pub servers: Vec<(String, u32)>,
}

/// Where the service finds the tables to share; called for every new connection, so it
/// follows reloads.
pub trait TableSource: Send + Sync + 'static {
    /// The tables whose stick-table names peers section `section`, in a stable order.
    fn peer_tables(&self, section: &str) -> Vec<PeerTable>;
}

impl<N: Net> TableSource for ProcessView<N> {
    fn peer_tables(&self, section: &str) -> Vec<PeerTable> {
        runtime_tables(&self.runtime(), section)
    }
}

/// The tables of `runtime` whose stick-table says `peers = section`, by backend name.
pub fn runtime_tables(runtime: &Runtime, section: &str) -> Vec<PeerTable> {
    let mut out = Vec::new();
    for (name, backend) in &runtime.backends {
        let servers: Vec<(String, u32)> = (backend.servers.iter().enumerate())
            .map(|(i, s)| (s.name.to_string(), backend.number(ServerId(i as u32))))
            .collect();
        for (i, t) in backend.tables.iter().enumerate() {
            if t.config().peers.as_deref() != Some(section) {
                continue;
            }
            let name = if i == 0 {
                name.clone()
            } else {
                format!("{name}.{:?}", t.kind()).to_lowercase()
            };
            out.push(PeerTable {
                name,
                table: t.clone(),
                layout: t.layout(),
                servers: servers.clone(),
            });
        }
    }
    out
}

/// Why the service could not start or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    /// The bind address could not be bound.
    #[error("peers {section}: cannot bind {address}")]
    Bind {
        /// The section.
        section: String,
        /// The address.
        address: String,
        /// What the network said.
        #[source]
        source: io::Error,
    },
    /// Connecting or talking to the peer failed.
    #[error("peer {address}: {source}")]
    Io {
        /// The address.
        address: String,
        /// What the network said.
        #[source]
        source: io::Error,
    },
    /// The session ended before the push was confirmed.
    #[error("peer {address}: {source}")]
    Session {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: SessionError,
    },
}

/// A peer connection's state, for the stats pages.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerState {
    /// Not connected, waiting to (re)connect.
    #[default]
    Idle,
    /// Connecting or in the handshake.
    Connecting,
    /// Exchanging messages.
    Open,
}

impl PeerState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Idle => "idle",
            PeerState::Connecting => "connecting",
            PeerState::Open => "open",
        }
    }
}

/// What the stats pages show per remote peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// Peer name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Connection state.
    pub state: PeerState,
    /// When the last handshake succeeded.
    pub last_hello: Option<Timestamp>,
    /// When anything (a heartbeat, an update) was last received.
    pub last_rx: Option<Timestamp>,
    /// Updates sent to it (all connections).
    pub updates_sent: u64,
    /// Updates received from it and applied.
    pub updates_received: u64,
    /// Local updates not yet sent to it, over all tables (now).
    pub pending: u64,
    /// Full resyncs it taught us.
    pub resyncs_received: u64,
    /// Full resyncs we taught it.
    pub resyncs_sent: u64,
    /// Connections that ended in an error.
    pub errors: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// Connections replaced by a simultaneous one.
    pub collisions: u64,
}

struct PeerSlot {
    index: u16,
    name: String,
    address: String,
    /// Bumped by each session that opens with this peer: older sessions close.
    generation: watch::Sender<u64>,
    /// Sessions open with it.
    live: AtomicU32,
    /// Not before this time (ms) may the connector connect again.
    reconnect_at: Mutex<u64>,
    status: Mutex<PeerStatus>,
    /// Last update id it acknowledged, per table name.
    acked: Mutex<BTreeMap<String, u32>>,
}

struct Shared {
    section: PeersSection,
    source: Arc<dyn TableSource>,
    clock: Clock,
    peers: Vec<Arc<PeerSlot>>,
    /// A full resync from a peer is still wanted; `Some(generation)` while one is asked.
    resync: Mutex<(bool, Option<(u16, u64)>)>,
    /// The process id of the process this one took over from, until it has pushed its tables
    /// ([`PeersService::expect_predecessor`]).
    predecessor: Mutex<Option<u32>>,
    rng: Mutex<u64>,
}

impl Shared {
    fn tables(&self) -> Vec<PeerTable> {
        let t = self.source.peer_tables(&self.section.name);
        for x in &t {
            x.table.enable_feed(FEED_BACKLOG);
        }
        t
    }

    fn slot(&self, name: &str) -> Option<&Arc<PeerSlot>> {
        self.peers.iter().find(|p| p.name == name)
    }

    fn random(&self, below: u64) -> u64 {
        let mut s = lock(&self.rng);
        // xorshift64*: the seed is passed in, so runs replay.
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }

    fn session_config(&self, tables: &[PeerTable]) -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            local_name: self.section.local.clone(),
            tables: tables
                .iter()
                .map(|t| LocalTable {
                    name: t.name.clone(),
                    key_len: t.table.config().key_bytes(),
                    expire_ms: u64::try_from(t.table.config().expire.as_millis())
                        .unwrap_or(u64::MAX),
                })
                .collect(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running peers service; dropping it stops it.
pub struct PeersService {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
}

/// A cheap handle on the service's status, for the stats server.
#[derive(Clone)]
pub struct PeersView {
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for PeersView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeersView").finish_non_exhaustive()
    }
}

impl PeersView {
    /// Per remote peer, in configuration order.
    pub fn status(&self) -> Vec<PeerStatus> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        let now = shared.clock.now();
        let tables = shared.source.peer_tables(&shared.section.name);
        shared
            .peers
            .iter()
            .map(|p| {
                let mut s = lock(&p.status).clone();
                s.pending = pending(p, &tables, now);
                s
            })
            .collect()
    }

    /// This process's peer name (empty once the service stopped).
    pub fn local_name(&self) -> String {
        self.shared
            .upgrade()
            .map(|s| s.section.local.clone())
            .unwrap_or_default()
    }

    /// Where `key` of table `table` came from: see [`origin_label`].
    pub fn origin_of(&self, table: &SharedTable, key: &[u8]) -> Option<String> {
        origin_label(table, key, Some(self))
    }

    fn peer_name(&self, index: u16) -> Option<String> {
        let shared = self.shared.upgrade()?;
        let p = shared.peers.get(usize::from(index))?;
        Some(p.name.clone())
    }
}

/// Where `key` of `table` came from, as the table views (`tether table`, `show table`, the
/// table API) show it: `local` (traffic or an operator here), `peer:NAME` (learned from that
/// peer) or `previous-process` (carried over by an upgrade). `None` when unknown: the table
/// keeps no update feed (no peers section shares it) or the feed's bounded backlog no longer
/// reaches back to the entry's last store.
pub fn origin_label(table: &SharedTable, key: &[u8], peers: Option<&PeersView>) -> Option<String> {
    let feed = table.feed()?;
    let origin = lock(&feed.updates).origin_of(key)?;
    Some(match origin {
        Origin::Local => "local".to_owned(),
        Origin::Peer(i) => match peers.and_then(|p| p.peer_name(i)) {
            Some(name) => format!("peer:{name}"),
            None => format!("peer:#{i}"),
        },
        Origin::Predecessor => "previous-process".to_owned(),
    })
}

fn pending(p: &PeerSlot, tables: &[PeerTable], _now: Timestamp) -> u64 {
    let acked = lock(&p.acked);
    tables
        .iter()
        .filter_map(|t| {
            let last = lock(&t.table.feed()?.updates).last_id();
            Some(u64::from(
                last.wrapping_sub(*acked.get(&t.name).unwrap_or(&0)),
            ))
        })
        .sum()
}

impl PeersService {
    /// The address peers connect to (the port chosen for `:0`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// A handle for status pages.
    pub fn view(&self) -> PeersView {
        PeersView {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Per remote peer status.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.view().status()
    }

    /// Lets process `pid` (the one this process took over from in an upgrade) connect once
    /// under our own local peer name and push its tables, as HAProxy's old process teaches the
    /// new one on a reload. Closed again when that push finishes; until then anyone else
    /// claiming our name is still refused.
    pub fn expect_predecessor(&self, pid: u32) {
        *lock(&self.shared.predecessor) = Some(pid);
    }

    /// Stops every task and closes every peer connection.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for PeersService {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the peers service of `section` on `net`: binds `section.bind` (if any) first, then
/// accepts and connects in background tasks of the current runtime. `seed` draws the reconnect
/// jitter. See the [`crate::peers`] documentation.
pub async fn start<N: Net>(
    net: N,
    section: PeersSection,
    source: Arc<dyn TableSource>,
    clock: Clock,
    seed: u64,
) -> Result<PeersService, PeersError> {
    let peers = section
        .remotes()
        .enumerate()
        .map(|(i, p)| {
            Arc::new(PeerSlot {
                index: i as u16,
                name: p.name.clone(),
                address: p.address.clone(),
                generation: watch::channel(0).0,
                live: AtomicU32::new(0),
                reconnect_at: Mutex::new(0),
                status: Mutex::new(PeerStatus {
                    name: p.name.clone(),
                    address: p.address.clone(),
                    ..PeerStatus::default()
                }),
                acked: Mutex::new(BTreeMap::new()),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        section: section.clone(),
        source,
        clock,
        peers,
        resync: Mutex::new((true, None)),
        predecessor: Mutex::new(None),
        rng: Mutex::new(seed | 1),
    });
    shared.tables();
    let (stop, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut local_addr = None;
    if let Some(bind) = &section.bind {
        let listener = net.bind(bind).await.map_err(|source| PeersError::Bind {
            section: section.name.clone(),
            address: bind.clone(),
            source,
        })?;
        local_addr = N::local_addr(&listener).ok();
        tasks.push(tokio::spawn(accept_loop(
            net.clone(),
            listener,
            shared.clone(),
            stop.subscribe(),
        )));
    }
    for slot in &shared.peers {
        tasks.push(tokio::spawn(connect_loop(
            net.clone(),
            shared.clone(),
            slot.clone(),
            stop.subscribe(),
        )));
    }
    Ok(PeersService {
        shared,
        stop,
        tasks,
        local_addr,
    })
}

async fn accept_loop<N: Net>(
    net: N,
    listener: N::Listener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            a = net.accept(&listener) => a,
        };
        match accepted {
            Ok((stream, from)) => {
                let allowed = shared.peers.iter().map(|p| p.name.clone()).collect();
                let shared = shared.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let tables = shared.tables();
                    let now = shared.clock.now();
                    let mut session = Session::accept(shared.session_config(&tables), allowed, now);
                    if let Some(pid) = *lock(&shared.predecessor) {
                        session = session.allow_predecessor(pid);
                    }
                    let end = drive::<N>(&shared, stream, session, tables, None, stop).await;
                    tracing::info!(peer.from = %from, reason = %end, "peers: accepted connection closed");
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "peers: accept failed");
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connect_loop<N: Net>(
    net: N,
    shared: Arc<Shared>,
    slot: Arc<PeerSlot>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        // Wait while a session with this peer is open (maybe the one it opened to us) or the
        // backoff runs.
        loop {
            if *stop.borrow() {
                return;
            }
            let now = shared.clock.now().0;
            if slot.live.load(Ordering::Acquire) == 0 && now >= *lock(&slot.reconnect_at) {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = sleep(Duration::from_millis(50)) => {}
            }
        }
        lock(&slot.status).state = PeerState::Connecting;
        let stream = match timeout(IO_TIMEOUT, net.connect(&slot.address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                note_error(&slot, &format!("connect: {e}"));
                backoff(&shared, &slot, &mut failures);
                continue;
            }
            Err(_) => {
                note_error(&slot, "connect: timed out");
                backoff(&shared, &slot, &mut failures);
                continue;
            }
        };
        let tables = shared.tables();
        let now = shared.clock.now();
        let session = Session::connect(shared.session_config(&tables), &slot.name, now);
        let end = drive::<N>(
            &shared,
            stream,
            session,
            tables,
            Some(slot.clone()),
            stop.clone(),
        )
        .await;
        tracing::info!(peer = %slot.name, reason = %end, "peers: connection closed");
        if lock(&slot.status)
            .last_hello
            .is_some_and(|t| t.0 + 1000 < shared.clock.now().0)
        {
            failures = 0;
        }
        backoff(&shared, &slot, &mut failures);
    }
}

fn note_error(slot: &PeerSlot, e: &str) {
    let mut s = lock(&slot.status);
    s.state = PeerState::Idle;
    s.errors += 1;
    s.last_error = Some(e.to_owned());
}

fn backoff(shared: &Shared, slot: &PeerSlot, failures: &mut u32) {
    let base = (250u64 << (*failures).min(5)).min(MAX_BACKOFF_MS);
    *failures += 1;
    let at = shared.clock.now().0 + base + shared.random(250);
    let mut r = lock(&slot.reconnect_at);
    *r = (*r).max(at);
}

/// One connection: the session, its socket, its tables, until it ends. Returns why.
async fn drive<N: Net>(
    shared: &Shared,
    stream: N::Stream,
    mut session: Session,
    tables: Vec<PeerTable>,
    mut slot: Option<Arc<PeerSlot>>,
    mut stop: watch::Receiver<bool>,
) -> SessionError {
    let (mut rd, mut wr) = N::split(stream);
    let mut conn = Conn {
        tables,
        cursors: Vec::new(),
        generation: None,
        counted: false,
        predecessor: false,
        from_predecessor: 0,
    };
    if let Some(s) = &slot {
        conn.register(s, false, shared);
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut out: Vec<u8> = Vec::new();
    let mut stalled_since = None;
    let mut checked = shared.clock.now();
    let end = loop {
        let now = shared.clock.now();
        session.handle_timeout(now);
        if now.0 >= checked.0 + RELOAD_CHECK_MS {
            checked = now;
            if !same_tables(&conn.tables, &shared.tables()) {
                // A reload replaced or renumbered a table: reconnect with the new ones (the
                // peer resends from its last acknowledged update), and ask for everything again:
                // what was acknowledged into a replaced table is not in the new one.
                lock(&shared.resync).0 = true;
                session.close("tables changed by a reload");
            }
        }
        if let Some(e) = conn.events(shared, &mut session, &mut slot, now) {
            break e;
        }
        if let Some(s) = &slot {
            conn.push(&mut session, s, now);
        }
        session.poll_transmit(&mut out, now);
        let wake = session
            .poll_timeout()
            .map_or(now.0 + TICK.as_millis() as u64, |t| t.0)
            .min(now.0 + TICK.as_millis() as u64);
        let mut gen_rx = conn.generation.clone();
        tokio::select! {
            biased;
            _ = stop.changed() => session.close("shutting down"),
            _ = changed(&mut gen_rx) => {
                if let Some(s) = &slot { lock(&s.status).collisions += 1; }
                session.close("replaced by a newer connection with the same peer");
            }
            r = wr.write(&out), if !out.is_empty() => match r {
                Ok(0) | Err(_) => session.close("write failed"),
                Ok(n) => { out.drain(..n); stalled_since = None; }
            },
            r = rd.read(&mut buf) => match r {
                Ok(0) => session.handle_eof(),
                Ok(n) => { let _ = session.handle_input(&buf[..n], shared.clock.now()); }
                Err(_) => session.close("read failed"),
            },
            _ = sleep_until(shared.clock.instant(Timestamp(wake))) => {}
        }
        if out.is_empty() {
            stalled_since = None;
        } else if *stalled_since.get_or_insert(now)
            < Timestamp(now.0.saturating_sub(IO_TIMEOUT.as_millis() as u64))
        {
            session.close("peer does not read");
        }
    };
    if !out.is_empty() {
        let _ = timeout(Duration::from_millis(200), wr.write_all(&out)).await;
    }
    let _ = wr.shutdown().await;
    conn.unregister(shared, slot.as_deref(), &end);
    end
}

/// Whether two table lists are the same tables with the same server numbering.
fn same_tables(a: &[PeerTable], b: &[PeerTable]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && Arc::ptr_eq(&x.table, &y.table)
                && x.layout == y.layout
                && x.servers == y.servers
        })
}

/// Waits until the generation changes past ours (never when there is none).
async fn changed(rx: &mut Option<(watch::Receiver<u64>, u64)>) {
    match rx {
        Some((rx, mine)) => loop {
            if *rx.borrow_and_update() != *mine {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        None => std::future::pending().await,
    }
}

/// A connection's own state beside its session.
struct Conn {
    tables: Vec<PeerTable>,
    /// Per table: the last update id sent (`None`: the whole table is still to send).
    cursors: Vec<Option<u32>>,
    generation: Option<(watch::Receiver<u64>, u64)>,
    counted: bool,
    /// The other side is the process this one took over from, pushing its tables.
    predecessor: bool,
    /// Entries it pushed and were stored.
    from_predecessor: u64,
}

impl Conn {
    /// Counts this connection as the peer's live one; an accepted one replaces any other.
    fn register(&mut self, slot: &Arc<PeerSlot>, replace: bool, shared: &Shared) {
        let mine = if replace {
            let mut g = 0;
            slot.generation.send_modify(|v| {
                *v += 1;
                g = *v;
            });
            if slot.live.load(Ordering::Acquire) > 0 {
                let delay = 50 + shared.random(2000);
                *lock(&slot.reconnect_at) = shared.clock.now().0 + delay;
            }
            g
        } else {
            *slot.generation.borrow()
        };
        self.generation = Some((slot.generation.subscribe(), mine));
        slot.live.fetch_add(1, Ordering::AcqRel);
        self.counted = true;
    }

    fn unregister(&self, shared: &Shared, slot: Option<&PeerSlot>, end: &SessionError) {
        let Some(slot) = slot else { return };
        if self.counted {
            slot.live.fetch_sub(1, Ordering::AcqRel);
        }
        let mut r = lock(&shared.resync);
        if r.1.is_some_and(|(i, g)| {
            i == slot.index && Some(g) == self.generation.as_ref().map(|x| x.1)
        }) {
            r.1 = None;
        }
        drop(r);
        if !matches!(end, SessionError::Closed(_)) {
            note_error(slot, &end.to_string());
        } else if slot.live.load(Ordering::Acquire) == 0 {
            lock(&slot.status).state = PeerState::Idle;
        }
    }

    /// Handles the session's events; `Some` when it closed.
    fn events(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        slot: &mut Option<Arc<PeerSlot>>,
        now: Timestamp,
    ) -> Option<SessionError> {
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::Open { .. } if session.is_predecessor() => {
                    tracing::info!("peers: the previous process connected to push its tables");
                    self.predecessor = true;
                }
                Event::Open { peer } => {
                    if slot.is_none() {
                        let s = shared.slot(&peer)?.clone();
                        self.register(&s, true, shared);
                        *slot = Some(s);
                    }
                    let s = slot.as_ref()?;
                    self.opened(shared, session, s, now);
                }
                Event::Update(u) => self.apply(&u, slot.as_deref(), now),
                Event::Acked { table, update } => {
                    if let (Some(t), Some(s)) = (self.tables.get(table), slot.as_ref()) {
                        lock(&s.acked).insert(t.name.clone(), update);
                    }
                }
                Event::Declined { name, why } => {
                    tracing::info!(table = %name, why, "peers: remote table not shared")
                }
                Event::ResyncFinished { .. } if self.predecessor => {
                    *lock(&shared.predecessor) = None;
                    tracing::info!(
                        entries = self.from_predecessor,
                        "upgrade: stick tables received from the previous process over the peers protocol"
                    );
                }
                Event::ResyncRequested if self.predecessor => {}
                Event::ResyncRequested => {
                    self.teach(session, now);
                    if let Some(s) = slot {
                        lock(&s.status).resyncs_sent += 1;
                    }
                }
                Event::ResyncFinished { partial } => {
                    let mut r = lock(&shared.resync);
                    r.1 = None;
                    r.0 = r.0 && partial;
                    if let Some(s) = slot {
                        lock(&s.status).resyncs_received += 1;
                    }
                }
                Event::ResyncConfirmed | Event::Heartbeat => {}
                Event::Closed(e) => return Some(e),
            }
        }
        if let Some(s) = slot {
            let mut st = lock(&s.status);
            st.last_rx = Some(session.stats().last_rx);
        }
        None
    }

    /// Stores one entry the other side sent, living what it conveyed within our `expire`.
    fn apply(&mut self, u: &RemoteUpdate, slot: Option<&PeerSlot>, now: Timestamp) {
        let Some(t) = self.tables.get(u.table) else {
            return;
        };
        let origin = match slot {
            Some(s) => Origin::Peer(s.index),
            None if self.predecessor => Origin::Predecessor,
            None => return,
        };
        let Some(server) = resolve(&t.servers, u.server_name.as_deref(), u.server_id) else {
            tracing::debug!(table = %t.name, name = ?u.server_name, id = ?u.server_id, ?origin, "peers: update for an unknown server skipped");
            return;
        };
        let expire = u64::try_from(t.table.config().expire.as_millis()).unwrap_or(u64::MAX);
        let stored = t
            .table
            .apply_remote(t.layout, &u.key, server, now, u.lifetime_ms(expire), origin)
            .is_some();
        match slot {
            Some(s) => lock(&s.status).updates_received += 1,
            None => self.from_predecessor += u64::from(stored),
        }
    }

    fn opened(&mut self, shared: &Shared, session: &mut Session, s: &PeerSlot, now: Timestamp) {
        {
            let mut st = lock(&s.status);
            st.state = PeerState::Open;
            st.last_hello = Some(now);
        }
        let acked = lock(&s.acked);
        self.cursors = self
            .tables
            .iter()
            .map(|t| acked.get(&t.name).copied())
            .collect();
        drop(acked);
        let mut r = lock(&shared.resync);
        if r.0 && r.1.is_none() {
            r.1 = Some((s.index, self.generation.as_ref().map_or(0, |g| g.1)));
            session.send_resync_request();
        }
    }

    /// Sends what the peer has not had yet, a batch per table.
    fn push(&mut self, session: &mut Session, slot: &PeerSlot, now: Timestamp) {
        let mut sent = 0u64;
        for (i, t) in self.tables.iter().enumerate() {
            if !session.can_send() {
                break;
            }
            let Some(feed) = t.table.feed() else { continue };
            let Some(cursor) = self.cursors.get_mut(i) else {
                continue;
            };
            let since = match *cursor {
                None => Since::Gap,
                Some(c) => lock(&feed.updates).since(c, BATCH),
            };
            match since {
                Since::Gap => {
                    let last = lock(&feed.updates).last_id();
                    sent += send_entries(session, i, t, last, now, false);
                    *cursor = Some(last);
                }
                Since::Entries(entries, next) => {
                    for e in entries {
                        if e.origin != Origin::Local || e.layout != t.layout {
                            continue;
                        }
                        let Some((name, number)) = t.servers.get(e.server.index()) else {
                            continue;
                        };
                        session.send_update(
                            i,
                            &OutgoingUpdate {
                                id: e.id,
                                key: &e.key,
                                server_id: *number,
                                server_name: name,
                                expire_ms: None,
                            },
                        );
                        sent += 1;
                    }
                    *cursor = Some(next);
                }
            }
        }
        if sent > 0 {
            lock(&slot.status).updates_sent += sent;
        }
    }

    /// Teaches every live entry of every table, then says so.
    fn teach(&self, session: &mut Session, now: Timestamp) {
        for (i, t) in self.tables.iter().enumerate() {
            let last = t.table.feed().map_or(0, |f| lock(&f.updates).last_id());
            send_entries(session, i, t, last, now, true);
        }
        session.send_resync_finished(false);
    }
}

/// Sends every live entry of `t` (as table `i`) under update id `id`; timed when teaching.
fn send_entries(
    session: &mut Session,
    i: usize,
    t: &PeerTable,
    id: u32,
    now: Timestamp,
    timed: bool,
) -> u64 {
    if t.table.layout() != t.layout {
        return 0;
    }
    let mut n = 0;
    for e in t.table.entries(now) {
        let Some((name, number)) = t.servers.get(e.server.index()) else {
            continue;
        };
        let left = e.expires_at.0.saturating_sub(now.0);
        session.send_update(
            i,
            &OutgoingUpdate {
                id,
                key: &e.key,
                server_id: *number,
                server_name: name,
                expire_ms: timed.then(|| u32::try_from(left).unwrap_or(u32::MAX)),
            },
        );
        n += 1;
    }
    n
}

/// The local server a peer's update means: by name when sent (HAProxy 2.6), else by number.
pub fn resolve(servers: &[(String, u32)], name: Option<&str>, id: Option<u32>) -> Option<ServerId> {
    let position = match name {
        Some(name) => servers.iter().position(|(s, _)| s == name),
        None => servers.iter().position(|&(_, n)| Some(n) == id),
    };
    position.map(|i| ServerId(i as u32))
}

/// Connects to the peers address `address` as peer `local`, addressed to `remote`, sends every
/// live entry of `tables` and ends with "resync finished", then waits (at most `wait`) for the
/// receiver's confirmation. Returns how many entries went. For upgrades and tests.
pub async fn push_all<N: Net>(
    net: &N,
    address: &str,
    local: &str,
    remote: &str,
    tables: Vec<PeerTable>,
    clock: Clock,
    wait: Duration,
) -> Result<u64, PeersError> {
    let io = |source| PeersError::Io {
        address: address.to_owned(),
        source,
    };
    let stream = timeout(IO_TIMEOUT, net.connect(address))
        .await
        .map_err(|_| io(io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    let (mut rd, mut wr) = N::split(stream);
    let config = Arc::new(SessionConfig {
        local_name: local.to_owned(),
        tables: tables
            .iter()
            .map(|t| LocalTable {
                name: t.name.clone(),
                key_len: t.table.config().key_bytes(),
                expire_ms: u64::try_from(t.table.config().expire.as_millis()).unwrap_or(u64::MAX),
            })
            .collect(),
    });
    let mut session = Session::connect(config, remote, clock.now());
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut sent = 0;
    loop {
        let now = clock.now();
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::Open { .. } => {
                    for (i, t) in tables.iter().enumerate() {
                        sent += send_entries(&mut session, i, t, 0, now, true);
                    }
                    session.send_resync_finished(false);
                }
                Event::ResyncConfirmed => {
                    session.poll_transmit(&mut out, now);
                    wr.write_all(&out).await.map_err(io)?;
                    let _ = wr.shutdown().await;
                    return Ok(sent);
                }
                Event::Closed(source) => {
                    return Err(PeersError::Session {
                        address: address.to_owned(),
                        source,
                    })
                }
                _ => {}
            }
        }
        session.poll_transmit(&mut out, now);
        if !out.is_empty() {
            timeout(IO_TIMEOUT, wr.write_all(&out))
                .await
                .map_err(|_| io(io::ErrorKind::TimedOut.into()))?
                .map_err(io)?;
            out.clear();
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => session.handle_eof(),
                Ok(n) => { let _ = session.handle_input(&buf[..n], clock.now()); }
                Err(e) => return Err(io(e)),
            },
            _ = sleep_until(deadline) => return Err(io(io::ErrorKind::TimedOut.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use crate::server::ServerId;

    /// A peer's update names its server (HAProxy 2.6) or only numbers it (older peers): the
    /// number is the server's `puid`, not its position, once servers have `id`s.
    #[test]
    fn updates_find_their_server_by_name_else_by_number() {
        let servers = [
            ("a".to_string(), 2),
            ("b".to_string(), 1),
            ("c".to_string(), 4),
        ];
        assert_eq!(resolve(&servers, Some("c"), Some(1)), Some(ServerId(2)));
        assert_eq!(resolve(&servers, Some("zz"), Some(1)), None, "a name wins");
        assert_eq!(resolve(&servers, None, Some(1)), Some(ServerId(1)));
        assert_eq!(resolve(&servers, None, Some(4)), Some(ServerId(2)));
        assert_eq!(resolve(&servers, None, Some(3)), None);
        assert_eq!(resolve(&servers, None, None), None);
    }
}
