//! TLS server model: real handshake framing with realistic sizes, a session cache and ticket keys.
//!
//! Whether a resumption succeeds is the whole point of affinity, so the model keeps exactly the
//! state a real server keeps: an LRU session cache with a capacity and a timeout (lost on
//! restart) and ticket keys (per server and regenerated at restart, or shared and persistent).
//! There is no cryptography: a ticket is opaque bytes naming (key id, session, issue time), so a
//! server without that key cannot "decrypt" it, exactly as in production. The bytes on the wire
//! are real TLS records — ServerHello with session ID / supported_versions / pre_shared_key,
//! a ~1.5 KB Certificate, cleartext TLS 1.2 NewSessionTicket before ChangeCipherSpec, TLS 1.3
//! encrypted records — so a balancer in front sees what it would see in production.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::rc::Rc;
use std::time::Duration;

use tether_core::engine::proxy_protocol::{self, ProxyHeader};
use tether_core::Progress;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cost::{Admission, ServerCpu};
use crate::metrics::SharedRecorder;
use crate::scenario::{ServersSpec, TicketKeys, TlsStack};
use tether_core::tls::TicketExt;

use tether_core::tls::encode::{
    push_change_cipher_spec, push_handshake, push_new_session_ticket12, push_new_session_ticket13,
    push_record, ServerHelloBuilder,
};
use tether_core::tls::extension;
use tether_core::tls::record::{self, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};
use tether_core::tls::ProtocolVersion;

use crate::tls_wire::{
    self, push_encrypted, read_record, HandshakeBuffer, Reader, WireError, RECORD_VERSION,
};

/// The port every simulated TLS endpoint listens on.
pub const TLS_PORT: u16 = 443;

/// Size of the certificate chain the servers send (one leaf plus one intermediate, compact).
pub const CERTIFICATE_LEN: usize = 1500;
const TICKET12_LEN: usize = 176;
const TICKET13_LEN: usize = 224;
const TICKET_MAGIC: u8 = b'T';
/// Length of a named ticket's key name (RFC 5077 §4).
const KEY_NAME_LEN: usize = 16;

/// A session cache with a capacity (least recently used evicted) and a timeout from creation.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    timeout_ms: u64,
    entries: BTreeMap<[u8; 32], CacheEntry>,
    by_use: BTreeMap<u64, [u8; 32]>,
    next_use: u64,
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    created_ms: u64,
    last_use: u64,
}

impl SessionCache {
    /// An empty cache.
    pub fn new(capacity: usize, timeout: Duration) -> Self {
        SessionCache {
            capacity,
            timeout_ms: timeout.as_millis() as u64,
            entries: BTreeMap::new(),
            by_use: BTreeMap::new(),
            next_use: 0,
        }
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores a new session, evicting the least recently used one when full.
    pub fn insert(&mut self, id: [u8; 32], now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&id);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let last_use = self.bump();
        self.entries.insert(
            id,
            CacheEntry {
                created_ms: now_ms,
                last_use,
            },
        );
        self.by_use.insert(last_use, id);
    }

    /// Whether `id` is held and not expired; a hit counts as a use.
    pub fn lookup(&mut self, id: &[u8; 32], now_ms: u64) -> bool {
        let Some(entry) = self.entries.get(id).copied() else {
            return false;
        };
        if now_ms >= entry.created_ms.saturating_add(self.timeout_ms) {
            self.remove(id);
            return false;
        }
        let last_use = self.bump();
        self.by_use.remove(&entry.last_use);
        self.by_use.insert(last_use, *id);
        if let Some(e) = self.entries.get_mut(id) {
            e.last_use = last_use;
        }
        true
    }

    fn remove(&mut self, id: &[u8; 32]) {
        if let Some(e) = self.entries.remove(id) {
            self.by_use.remove(&e.last_use);
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_use += 1;
        self.next_use
    }
}

/// The fields of a ClientHello the server model acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHelloView {
    /// legacy_session_id.
    pub session_id: Vec<u8>,
    /// session_ticket extension contents (None: absent).
    pub ticket: Option<Vec<u8>>,
    /// First pre_shared_key identity.
    pub psk: Option<Vec<u8>>,
    /// supported_versions offers TLS 1.3.
    pub tls13: bool,
    /// key_share offers X25519MLKEM768.
    pub pq: bool,
}

/// Parses a ClientHello handshake body (after the 4-byte handshake header) with the core's
/// parser, the one the balancer uses.
pub fn parse_client_hello(body: &[u8]) -> Result<ClientHelloView, WireError> {
    let hello = tether_core::tls::ClientHello::parse(body)
        .map_err(|_| WireError::Malformed("client hello"))?;
    Ok(ClientHelloView {
        session_id: hello.session_id().to_vec(),
        ticket: match hello.session_ticket() {
            TicketExt::Absent => None,
            TicketExt::Empty => Some(Vec::new()),
            TicketExt::Ticket(t) => Some(t.to_vec()),
        },
        psk: hello.psk_identities().next().map(<[u8]>::to_vec),
        tls13: hello.offers_tls13(),
        pq: hello.key_share_groups().any(|g| g == 0x11ec),
    })
}

/// What the server decided for one ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// TLS 1.3 negotiated.
    pub tls13: bool,
    /// The session was resumed (abbreviated handshake).
    pub resumed: bool,
    /// ServerHello session ID.
    pub session_id: Vec<u8>,
    /// TLS 1.2 ticket to send in a NewSessionTicket.
    pub ticket12: Option<Vec<u8>>,
    /// TLS 1.3 tickets to send after the handshake.
    pub tickets13: Vec<Vec<u8>>,
    /// Answer the hybrid post-quantum key share.
    pub pq: bool,
}

/// One server's TLS state for one boot: lost when the server restarts.
#[derive(Debug)]
pub struct ServerModel {
    index: u16,
    boot: u32,
    keys: TicketKeys,
    tls13_tickets: u8,
    ticket_lifetime_ms: u64,
    /// Tickets start with the key's name (see [`ServersSpec::ticket_names`]).
    named: bool,
    /// Key rotation period in ms (0: never).
    rotation_ms: u64,
    /// How TLS 1.2 tickets are issued and renewed (see [`ServersSpec::tls_stack`]).
    stack: TlsStack,
    cache: SessionCache,
    next_session: u64,
}

impl ServerModel {
    /// A freshly booted server: empty cache, and new ticket keys unless they are shared.
    pub fn new(index: u16, boot: u32, spec: &ServersSpec) -> Self {
        ServerModel {
            index,
            boot,
            keys: spec.ticket_keys,
            tls13_tickets: spec.tls13_tickets,
            ticket_lifetime_ms: spec.ticket_lifetime.get().as_millis() as u64,
            named: spec.ticket_names,
            rotation_ms: spec
                .ticket_key_rotation
                .map_or(0, |r| r.get().as_millis() as u64),
            stack: spec.tls_stack,
            cache: SessionCache::new(spec.session_cache, spec.session_timeout.get()),
            next_session: 0,
        }
    }

    /// Sessions in the cache.
    pub fn cached_sessions(&self) -> usize {
        self.cache.len()
    }

    fn key_id(&self) -> u32 {
        match self.keys {
            TicketKeys::Shared => 0xFFFF_FFFF,
            TicketKeys::PerServer | TicketKeys::None => {
                (u32::from(self.index) << 16) | (self.boot & 0xFFFF)
            }
        }
    }

    fn new_session(&mut self) -> u64 {
        self.next_session += 1;
        (u64::from(self.index) << 48) | (u64::from(self.boot & 0xFFFF) << 32) | self.next_session
    }

    fn session_id(session: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&session.to_be_bytes());
        let pad = tls_wire::filler(24, session as u8);
        id[8..].copy_from_slice(pad);
        id
    }

    /// Which key generation is current at `now_ms` (always 0 without rotation).
    fn epoch(&self, now_ms: u64) -> u32 {
        now_ms.checked_div(self.rotation_ms).unwrap_or(0) as u32
    }

    /// The 16-byte name of the key of `epoch`: the same for every ticket sealed under it, and
    /// different for every other key (per server and boot, or shared).
    fn key_name(&self, epoch: u32) -> [u8; KEY_NAME_LEN] {
        let mut name = [0u8; KEY_NAME_LEN];
        name[..4].copy_from_slice(b"tkey");
        name[4..8].copy_from_slice(&self.key_id().to_be_bytes());
        name[8..12].copy_from_slice(&epoch.to_be_bytes());
        name[12..].copy_from_slice(tls_wire::filler(4, self.key_id() as u8));
        name
    }

    fn seal_ticket(&self, session: u64, now_ms: u64, len: usize) -> Vec<u8> {
        let mut t = Vec::with_capacity(len);
        if self.named {
            t.extend_from_slice(&self.key_name(self.epoch(now_ms)));
        }
        t.push(TICKET_MAGIC);
        t.extend_from_slice(&self.key_id().to_be_bytes());
        t.extend_from_slice(&session.to_be_bytes());
        t.extend_from_slice(&now_ms.to_be_bytes());
        t.extend_from_slice(tls_wire::filler(len - t.len(), session as u8));
        t
    }

    /// The session a ticket names, if this server holds its key and it has not expired.
    fn open_ticket(&mut self, ticket: &[u8], now_ms: u64) -> Option<u64> {
        let ticket = if self.named {
            let (name, rest) = ticket.split_at_checked(KEY_NAME_LEN)?;
            let epoch = self.epoch(now_ms);
            let known = [epoch, epoch.saturating_sub(1)]
                .iter()
                .any(|e| name == self.key_name(*e));
            if !known {
                return None;
            }
            rest
        } else {
            ticket
        };
        let mut r = Reader::new(ticket);
        if r.u8("magic").ok()? != TICKET_MAGIC {
            return None;
        }
        let key = r.take(4, "key").ok()?;
        let session = u64::from_be_bytes(r.take(8, "session").ok()?.try_into().ok()?);
        let issued = u64::from_be_bytes(r.take(8, "issued").ok()?.try_into().ok()?);
        if key != self.key_id().to_be_bytes()
            || now_ms >= issued.saturating_add(self.ticket_lifetime_ms)
        {
            return None;
        }
        if self.keys == TicketKeys::None {
            // Stateful TLS 1.3 tickets: only valid while the session is cached.
            return self
                .cache
                .lookup(&Self::session_id(session), now_ms)
                .then_some(session);
        }
        Some(session)
    }

    /// Decides how to answer a ClientHello at `now_ms`.
    pub fn decide(&mut self, hello: &ClientHelloView, now_ms: u64) -> Decision {
        if hello.tls13 {
            let resumed = hello
                .psk
                .as_ref()
                .is_some_and(|t| self.open_ticket(t, now_ms).is_some());
            let tickets13 = (0..self.tls13_tickets)
                .map(|_| {
                    let s = self.new_session();
                    if self.keys == TicketKeys::None {
                        self.cache.insert(Self::session_id(s), now_ms);
                    }
                    self.seal_ticket(s, now_ms, TICKET13_LEN)
                })
                .collect();
            return Decision {
                tls13: true,
                resumed,
                session_id: hello.session_id.clone(),
                ticket12: None,
                tickets13,
                pq: hello.pq,
            };
        }
        // The ticket extension, when tickets are on: empty asks for one, non-empty presents one.
        let offered = hello
            .ticket
            .as_deref()
            .filter(|_| self.keys != TicketKeys::None);
        let ticket_session = offered
            .filter(|t| !t.is_empty())
            .and_then(|t| self.open_ticket(t, now_ms));
        let by_ticket = ticket_session.is_some();
        let by_id = !by_ticket
            && hello.session_id.len() == 32
            && hello
                .session_id
                .as_slice()
                .try_into()
                .is_ok_and(|id: [u8; 32]| self.cache.lookup(&id, now_ms));
        if by_ticket || by_id {
            let renewed = ticket_session
                .filter(|_| self.stack.renews_tickets())
                .map(|s| self.seal_ticket(s, now_ms, TICKET12_LEN));
            return Decision {
                tls13: false,
                resumed: true,
                session_id: hello.session_id.clone(),
                ticket12: renewed,
                tickets13: Vec::new(),
                pq: false,
            };
        }
        let s = self.new_session();
        let ticket12 = offered.map(|_| self.seal_ticket(s, now_ms, TICKET12_LEN));
        let session_id = if offered.is_none_or(|t| self.stack.sends_id_with_ticket(t)) {
            let id = Self::session_id(s);
            self.cache.insert(id, now_ms);
            id.to_vec()
        } else {
            Vec::new()
        };
        Decision {
            tls13: false,
            resumed: false,
            session_id,
            ticket12,
            tickets13: Vec::new(),
            pq: false,
        }
    }

    fn server_hello(&self, d: &Decision) -> Vec<u8> {
        let mut random = [0u8; 32];
        random.copy_from_slice(tls_wire::filler(32, self.index as u8));
        let mut hello = ServerHelloBuilder::new(random);
        hello
            .session_id(&d.session_id)
            .cipher_suite(if d.tls13 { 0x1301 } else { 0xc02f });
        if d.tls13 {
            hello.supported_version(ProtocolVersion::TLS1_3);
            let (group, len): (u16, usize) = if d.pq && !d.resumed {
                (0x11ec, 1088 + 32)
            } else {
                (0x001d, 32)
            };
            hello.key_share(group, tls_wire::filler(len, 2));
            if d.resumed {
                hello.pre_shared_key(0);
            }
        } else {
            hello
                .extension(extension::RENEGOTIATION_INFO, &[0])
                .extension(extension::EXTENDED_MASTER_SECRET, &[]);
            if d.ticket12.is_some() {
                hello.session_ticket();
            }
        }
        hello.message()
    }

    /// The server's first flight for decision `d`.
    pub fn first_flight(&self, d: &Decision) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let sh = self.server_hello(d);
        if d.tls13 {
            push_record(&mut out, HANDSHAKE, RECORD_VERSION, &sh);
            push_change_cipher_spec(&mut out, RECORD_VERSION);
            let mut inner = Vec::with_capacity(2048);
            push_handshake(
                &mut inner,
                record::ENCRYPTED_EXTENSIONS,
                &[0, 8, 0, 16, 0, 4, 0, 2, b'h', b'2'],
            );
            if !d.resumed {
                push_handshake(
                    &mut inner,
                    record::CERTIFICATE,
                    tls_wire::filler(CERTIFICATE_LEN, 11),
                );
                push_handshake(
                    &mut inner,
                    record::CERTIFICATE_VERIFY,
                    tls_wire::filler(260, 15),
                );
            }
            push_handshake(&mut inner, record::FINISHED, tls_wire::filler(32, 20));
            push_encrypted(&mut out, APPLICATION_DATA, HANDSHAKE, &inner);
            return out;
        }
        if d.resumed {
            // ServerHello, [NewSessionTicket] (a renewed ticket), ChangeCipherSpec, Finished.
            let mut msgs = sh;
            if let Some(ticket) = &d.ticket12 {
                push_new_session_ticket12(&mut msgs, self.ticket_lifetime_secs(), ticket);
            }
            push_record(&mut out, HANDSHAKE, RECORD_VERSION, &msgs);
            push_finished12(&mut out);
            return out;
        }
        let mut msgs = sh;
        push_handshake(
            &mut msgs,
            record::CERTIFICATE,
            tls_wire::filler(CERTIFICATE_LEN, 11),
        );
        push_handshake(
            &mut msgs,
            record::SERVER_KEY_EXCHANGE,
            tls_wire::filler(300, 12),
        );
        push_handshake(&mut msgs, record::SERVER_HELLO_DONE, &[]);
        push_record(&mut out, HANDSHAKE, RECORD_VERSION, &msgs);
        out
    }

    /// The second flight of a full TLS 1.2 handshake: [NewSessionTicket] ChangeCipherSpec Finished.
    pub fn second_flight12(&self, d: &Decision) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        if let Some(ticket) = &d.ticket12 {
            let mut msg = Vec::new();
            push_new_session_ticket12(&mut msg, self.ticket_lifetime_secs(), ticket);
            push_record(&mut out, HANDSHAKE, RECORD_VERSION, &msg);
        }
        push_finished12(&mut out);
        out
    }

    /// The TLS 1.3 NewSessionTicket records sent after the client's Finished.
    pub fn tickets13(&self, d: &Decision) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, ticket) in d.tickets13.iter().enumerate() {
            let mut msg = Vec::new();
            let lifetime = self.ticket_lifetime_secs();
            push_new_session_ticket13(&mut msg, lifetime, i as u32, &[i as u8], ticket);
            push_encrypted(&mut out, APPLICATION_DATA, HANDSHAKE, &msg);
        }
        out
    }

    fn ticket_lifetime_secs(&self) -> u32 {
        (self.ticket_lifetime_ms / 1000) as u32
    }
}

/// Everything a server connection task needs, shared by all connections of one boot.
#[derive(Clone)]
pub struct ServerContext {
    /// Server name in reports.
    pub name: Rc<str>,
    /// TLS state of this boot.
    pub model: Rc<RefCell<ServerModel>>,
    /// Where connection counts go.
    pub recorder: SharedRecorder,
    /// This boot's cores and cost model (None: handshakes cost no CPU).
    pub cpu: Option<Rc<ServerCpu>>,
}

/// Counts a connection open for as long as it lives, including when a crash drops the task.
struct OpenConnection {
    ctx: ServerContext,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Ok(mut r) = self.ctx.recorder.try_borrow_mut() {
            r.server_close(&self.ctx.name);
        }
    }
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// Waits for a core and holds it for `service_us` (nothing without a cost model); false when
/// the backlog is full and the connection is to be refused. `saved_us`: what a full handshake
/// would have cost more (a resumption's saving).
async fn spend_cpu(ctx: &ServerContext, service_us: u64, saved_us: u64, may_refuse: bool) -> bool {
    let Some(cpu) = &ctx.cpu else {
        return true;
    };
    let now_us = turmoil::sim_elapsed().unwrap_or_default().as_micros() as u64;
    let admission = cpu
        .queue
        .borrow_mut()
        .submit(now_us, service_us, may_refuse);
    let Admission::Run { start_us, end_us } = admission else {
        ctx.recorder.borrow_mut().server_refused(&ctx.name);
        return false;
    };
    ctx.recorder
        .borrow_mut()
        .server_cpu(&ctx.name, start_us, end_us, saved_us);
    tokio::time::sleep(Duration::from_micros(end_us - now_us)).await;
    true
}

/// The CPU of a handshake and what resuming it saved, in microseconds (0, 0 without a model).
fn handshake_cpu(ctx: &ServerContext, decision: &Decision) -> (u64, u64) {
    ctx.cpu.as_ref().map_or((0, 0), |cpu| {
        let cost = cpu.spec.handshake(decision.tls13);
        if decision.resumed {
            (cost.resumed_us, cost.full_us - cost.resumed_us)
        } else {
            (cost.full_us, 0)
        }
    })
}

/// Serves TLS on `port` (usually [`TLS_PORT`]) until the host crashes; a PROXY header before TLS
/// is accepted.
///
/// The process owns its connections: when its future is dropped (the process stopped on a
/// host it shares, see `server_process`), every connection task ends with it, and their
/// sockets close as a kernel closes a dead process's.
pub async fn run_server(ctx: ServerContext, port: u16) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let mut connections = ConnectionTasks::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let ctx = ctx.clone();
        connections.spawn(async move {
            ctx.recorder.borrow_mut().server_open(&ctx.name, now_ms());
            let open = OpenConnection { ctx };
            let (rd, wr) = stream.into_split();
            if let Err(e) = serve_connection(rd, wr, &open.ctx).await {
                tracing::trace!(server = %open.ctx.name, error = %e, "connection ended");
            }
        });
    }
}

/// A server process's connection tasks, aborted when it is dropped (cheaper than a `JoinSet`,
/// which wakes its owner at every task's end: finished tasks are only pruned as the list grows).
#[derive(Default)]
struct ConnectionTasks {
    tasks: Vec<tokio::task::AbortHandle>,
    /// Prune finished tasks when the list reaches this length.
    prune_at: usize,
}

impl ConnectionTasks {
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + 'static) {
        if self.tasks.len() >= self.prune_at {
            self.tasks.retain(|t| !t.is_finished());
            self.prune_at = (2 * self.tasks.len()).max(64);
        }
        self.tasks
            .push(tokio::task::spawn_local(task).abort_handle());
    }
}

impl Drop for ConnectionTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Skips an optional PROXY header; returns the bytes read past it.
async fn skip_proxy_header<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    loop {
        if buf.first() == Some(&HANDSHAKE) {
            return Ok(buf);
        }
        if !buf.is_empty() {
            match proxy_protocol::parse(&buf) {
                Ok(Progress::Done(ProxyHeader { header_len, .. })) => {
                    return Ok(buf.split_off(header_len))
                }
                Ok(Progress::NeedMore) => {}
                Err(_) => return Err(WireError::Malformed("proxy header")),
            }
        }
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Err(WireError::Malformed("eof before hello"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve_connection<R, W>(rd: R, mut wr: W, ctx: &ServerContext) -> Result<(), WireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut rd = rd;
    let leftover = skip_proxy_header(&mut rd).await?;
    let mut rd = Cursor::new(leftover).chain(rd);
    let mut hb = HandshakeBuffer::default();
    let hello = loop {
        let (ct, body) = read_record(&mut rd).await?;
        if ct != HANDSHAKE {
            return Err(WireError::Malformed("expected client hello"));
        }
        hb.push(&body)?;
        if let Some((t, m)) = hb.next_message() {
            if t != record::CLIENT_HELLO {
                return Err(WireError::Malformed("expected client hello"));
            }
            break parse_client_hello(&m)?;
        }
    };
    let now = now_ms();
    let (decision, flight) = {
        let mut model = ctx.model.borrow_mut();
        let d = model.decide(&hello, now);
        let f = model.first_flight(&d);
        (d, f)
    };
    let (service_us, saved_us) = handshake_cpu(ctx, &decision);
    if !spend_cpu(ctx, service_us, saved_us, true).await {
        return Ok(()); // refused: the accept backlog is full; dropping the stream closes it
    }
    wr.write_all(&flight).await?;
    // Client's flight: (CKE) CCS Finished — TLS 1.3's Finished is an application-data record.
    let mut after_ccs = false;
    loop {
        let (ct, _) = read_record(&mut rd).await?;
        match ct {
            CHANGE_CIPHER_SPEC => after_ccs = true,
            HANDSHAKE if after_ccs && !decision.tls13 => break,
            APPLICATION_DATA if decision.tls13 => break,
            HANDSHAKE => {}
            _ => return Err(WireError::Malformed("client finished")),
        }
    }
    let tail = {
        let model = ctx.model.borrow();
        if decision.tls13 {
            model.tickets13(&decision)
        } else if !decision.resumed {
            model.second_flight12(&decision)
        } else {
            Vec::new()
        }
    };
    if !tail.is_empty() {
        wr.write_all(&tail).await?;
    }
    ctx.recorder
        .borrow_mut()
        .server_handshake(&ctx.name, decision.resumed, now_ms());
    // Data phase: the first request record says how much to send back and how long it is.
    let (ct, body) = read_record(&mut rd).await?;
    let (inner, plain) = tls_wire::open_encrypted(&body)?;
    if ct != APPLICATION_DATA || inner != APPLICATION_DATA || plain.len() < 8 {
        return Err(WireError::Malformed("request"));
    }
    let response_len = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
    let request_len = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]) as usize;
    let mut got = plain.len();
    while got < request_len {
        let (_, body) = read_record(&mut rd).await?;
        got += tls_wire::open_encrypted(&body)?.1.len();
    }
    let response_len = response_len.min(64 * 1024 * 1024);
    let payload_us = ctx
        .cpu
        .as_ref()
        .map_or(0, |c| c.spec.payload_us(response_len as u64));
    if payload_us > 0 {
        spend_cpu(ctx, payload_us, 0, false).await;
    }
    let mut sent = 0;
    while sent < response_len {
        let n = (response_len - sent).min(record::MAX_PLAINTEXT - 1);
        wr.write_all(&tls_wire::response_record(n)).await?;
        sent += n;
    }
    // Wait for the client to close.
    let mut sink = [0u8; 1024];
    while rd.read(&mut sink).await? > 0 {}
    let _ = wr.shutdown().await;
    Ok(())
}

/// The end of a TLS 1.2 server flight: ChangeCipherSpec and the encrypted Finished.
fn push_finished12(out: &mut Vec<u8>) {
    push_change_cipher_spec(out, RECORD_VERSION);
    push_record(out, HANDSHAKE, RECORD_VERSION, tls_wire::filler(40, 20));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{client_hello, ClientKind, ClientSession, HelloShape};
    use crate::rng::Rng;
    use crate::scenario::{Scenario, SimDuration};

    fn spec(keys: TicketKeys) -> ServersSpec {
        let mut s = Scenario::default_scenario().servers;
        s.ticket_keys = keys;
        s.session_cache = 3;
        s.session_timeout = SimDuration(Duration::from_secs(300));
        s
    }

    fn view(
        kind: ClientKind,
        client: &mut ClientSession,
        rng: &mut Rng,
        now: u64,
    ) -> (crate::client::Offer, ClientHelloView) {
        let offer = client.offer(rng, now);
        let bytes = client_hello(
            kind,
            &offer,
            &HelloShape {
                sni: "a.example",
                pq_key_share: true,
            },
            rng,
        );
        let body = &bytes[9..];
        (offer, parse_client_hello(body).unwrap())
    }

    fn named(keys: TicketKeys, rotation: Option<u64>) -> ServersSpec {
        let mut s = spec(keys);
        s.ticket_names = true;
        s.ticket_key_rotation = rotation.map(|r| SimDuration(Duration::from_millis(r)));
        s
    }

    fn tls13_hello(psk: Option<Vec<u8>>) -> ClientHelloView {
        ClientHelloView {
            session_id: vec![7; 32],
            ticket: None,
            psk,
            tls13: true,
            pq: false,
        }
    }

    #[test]
    fn named_tickets_start_with_their_keys_name() {
        let spec = named(TicketKeys::PerServer, None);
        let (mut a, mut b) = (ServerModel::new(0, 1, &spec), ServerModel::new(1, 1, &spec));
        let ta = a.decide(&tls13_hello(None), 10).tickets13;
        let tb = b.decide(&tls13_hello(None), 20).tickets13;
        assert_eq!(ta[0][..16], ta[1][..16], "one server, one key name");
        assert_ne!(ta[0][..16], tb[0][..16], "two servers, two names");
        assert_ne!(ta[0][16..], ta[1][16..]);
        assert_eq!(ta[0].len(), TICKET13_LEN);
        assert!(a.decide(&tls13_hello(Some(ta[0].clone())), 30).resumed);
        assert!(!b.decide(&tls13_hello(Some(ta[0].clone())), 30).resumed);
        // A restart is a new key: the old name no longer opens.
        let mut a2 = ServerModel::new(0, 2, &spec);
        assert!(!a2.decide(&tls13_hello(Some(ta[1].clone())), 40).resumed);
        let shared = named(TicketKeys::Shared, None);
        let (mut a, b) = (
            ServerModel::new(0, 1, &shared),
            ServerModel::new(1, 1, &shared),
        );
        assert_eq!(a.key_name(0), b.key_name(0));
        let t = a.decide(&tls13_hello(None), 10).tickets13;
        assert!(
            ServerModel::new(1, 9, &shared)
                .decide(&tls13_hello(Some(t[0].clone())), 20)
                .resumed
        );
    }

    #[test]
    fn a_rotated_key_still_opens_the_previous_generation_only() {
        let spec = named(TicketKeys::PerServer, Some(1000));
        let mut a = ServerModel::new(0, 1, &spec);
        let old = a.decide(&tls13_hello(None), 500).tickets13[0].clone();
        let new = a.decide(&tls13_hello(None), 1500).tickets13[0].clone();
        assert_ne!(old[..16], new[..16], "a new key, a new name");
        assert!(a.decide(&tls13_hello(Some(old.clone())), 1600).resumed);
        assert!(
            !a.decide(&tls13_hello(Some(old)), 2600).resumed,
            "two generations old"
        );
        assert!(a.decide(&tls13_hello(Some(new)), 2600).resumed);
    }

    #[test]
    fn cache_is_lru_with_timeout() {
        let mut c = SessionCache::new(2, Duration::from_secs(10));
        c.insert([1; 32], 0);
        c.insert([2; 32], 0);
        assert!(c.lookup(&[1; 32], 1));
        c.insert([3; 32], 2);
        assert!(!c.lookup(&[2; 32], 3), "least recently used evicted");
        assert!(c.lookup(&[1; 32], 3));
        assert!(!c.lookup(&[3; 32], 10_002), "expired from creation");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn session_id_resumes_only_on_the_issuing_server() {
        let mut rng = Rng::new(1);
        let mut a = ServerModel::new(0, 0, &spec(TicketKeys::None));
        let mut b = ServerModel::new(1, 0, &spec(TicketKeys::None));
        let kind = ClientKind::Tls12SessionId;
        let mut client = ClientSession::new(kind, Duration::from_secs(3600));
        let (_, hello) = view(kind, &mut client, &mut rng, 0);
        let d = a.decide(&hello, 0);
        assert!(!d.resumed);
        assert_eq!(d.session_id.len(), 32);
        let answer = crate::client::ServerAnswer {
            session_id: d.session_id.clone(),
            ..Default::default()
        };
        let first = crate::client::Offer::default();
        client.learn(&first, &answer, 0);
        let (_, again) = view(kind, &mut client, &mut rng, 100);
        assert!(!b.decide(&again, 100).resumed);
        assert!(a.decide(&again, 100).resumed);
        assert!(!a.decide(&again, 400_000).resumed, "session timeout");
    }

    #[test]
    fn tickets_open_on_servers_sharing_the_key_only() {
        for (keys, other_resumes) in [(TicketKeys::Shared, true), (TicketKeys::PerServer, false)] {
            let mut a = ServerModel::new(0, 0, &spec(keys));
            let mut b = ServerModel::new(1, 0, &spec(keys));
            let first = ClientHelloView {
                ticket: Some(vec![]),
                ..Default::default()
            };
            let d = a.decide(&first, 0);
            assert!(
                d.session_id.is_empty(),
                "ticket-issuing server sends an empty ID"
            );
            let ticket = d.ticket12.expect("ticket issued");
            let again = ClientHelloView {
                session_id: vec![7; 32],
                ticket: Some(ticket),
                ..Default::default()
            };
            assert_eq!(b.decide(&again, 10).resumed, other_resumes, "{keys:?}");
            let d = a.decide(&again, 10);
            assert!(d.resumed);
            assert_eq!(d.session_id, vec![7; 32], "accepted ticket echoes the ID");
        }
        // A restart with per-server keys invalidates the tickets.
        let mut a = ServerModel::new(0, 0, &spec(TicketKeys::PerServer));
        let t = a
            .decide(
                &ClientHelloView {
                    ticket: Some(vec![]),
                    ..Default::default()
                },
                0,
            )
            .ticket12
            .unwrap();
        let mut rebooted = ServerModel::new(0, 1, &spec(TicketKeys::PerServer));
        let again = ClientHelloView {
            session_id: vec![1; 32],
            ticket: Some(t),
            ..Default::default()
        };
        assert!(!rebooted.decide(&again, 1).resumed);
    }

    /// rustls sends a new session ID (and caches it) beside a new ticket when the client offered
    /// none or an empty one, and none when the offered ticket did not open; OpenSSL never does.
    #[test]
    fn a_rustls_server_sends_an_id_beside_a_new_ticket() {
        let mut s = spec(TicketKeys::PerServer);
        s.tls_stack = TlsStack::Rustls;
        let mut a = ServerModel::new(0, 0, &s);
        let first = ClientHelloView {
            ticket: Some(vec![]),
            ..Default::default()
        };
        let d = a.decide(&first, 0);
        assert!(d.ticket12.is_some(), "a ticket is issued");
        assert_eq!(d.session_id.len(), 32, "and an ID beside it");
        let by_id = ClientHelloView {
            session_id: d.session_id.clone(),
            ..Default::default()
        };
        assert!(a.decide(&by_id, 10).resumed, "the ID is cached");
        let stale = ClientHelloView {
            session_id: vec![9; 32],
            ticket: Some(vec![1; TICKET12_LEN]),
            ..Default::default()
        };
        let d = a.decide(&stale, 20);
        assert!(!d.resumed && d.ticket12.is_some());
        assert!(
            d.session_id.is_empty(),
            "no ID after a ticket that did not open"
        );
    }

    /// The body of the first handshake message of a flight that starts with a record.
    fn first_message(flight: &[u8]) -> &[u8] {
        let len =
            usize::from(flight[6]) << 16 | usize::from(flight[7]) << 8 | usize::from(flight[8]);
        &flight[9..9 + len]
    }

    /// rustls's servers give every TLS 1.2 ticket resumption a new ticket (RFC 5077 §3.3: in
    /// the resumed flight, before ChangeCipherSpec); the client reads it off the wire and
    /// presents the newest, which resumes in turn. OpenSSL's, the default, keep the one
    /// presented.
    #[tokio::test]
    async fn a_renewing_server_gives_each_ticket_resumption_a_new_ticket_the_client_keeps() {
        use crate::client::{finish_handshake, ServerAnswer};
        let kind = ClientKind::Tls12TicketOpenssl;
        for renew in [false, true] {
            let mut s = spec(TicketKeys::PerServer);
            s.tls_stack = if renew {
                TlsStack::Rustls
            } else {
                TlsStack::Openssl
            };
            let mut a = ServerModel::new(0, 0, &s);
            let mut rng = Rng::new(3);
            let mut client = ClientSession::new(kind, Duration::from_secs(3600));
            let (offer, hello) = view(kind, &mut client, &mut rng, 0);
            let d = a.decide(&hello, 0);
            let first = d
                .ticket12
                .clone()
                .expect("a full handshake issues a ticket");
            let answer = ServerAnswer {
                tickets: vec![first.clone()],
                ..ServerAnswer::default()
            };
            assert!(!client.learn(&offer, &answer, 0));

            let (offer, hello) = view(kind, &mut client, &mut rng, 10);
            assert_eq!(hello.ticket.as_deref(), Some(&first[..]));
            let d = a.decide(&hello, 10);
            assert!(d.resumed);
            assert_eq!(d.ticket12.is_some(), renew, "renewed: {renew}");
            let mut wire = Cursor::new(a.first_flight(&d));
            let answer = finish_handshake(&mut wire, &mut Vec::new(), kind)
                .await
                .unwrap();
            assert!(client.learn(&offer, &answer, 10), "resumed");

            let (_, hello) = view(kind, &mut client, &mut rng, 20);
            let presented = hello.ticket.clone().expect("a ticket");
            assert_eq!(
                presented != first,
                renew,
                "renew {renew}: the newest is presented"
            );
            assert!(
                a.decide(&hello, 20).resumed,
                "renew {renew}: and it resumes"
            );
        }
    }

    #[test]
    fn tls13_psk_and_flight_sizes() {
        let mut rng = Rng::new(2);
        let mut a = ServerModel::new(0, 0, &spec(TicketKeys::PerServer));
        let kind = ClientKind::Tls13SingleUse;
        let mut client = ClientSession::new(kind, Duration::from_secs(3600));
        let (offer, hello) = view(kind, &mut client, &mut rng, 0);
        assert!(hello.tls13 && hello.pq && hello.psk.is_none());
        let d = a.decide(&hello, 0);
        assert_eq!(d.tickets13.len(), 2);
        let flight = a.first_flight(&d);
        assert!(
            flight.len() > CERTIFICATE_LEN + 1120,
            "full flight {}",
            flight.len()
        );
        let answer = crate::client::parse_server_hello(first_message(&flight)).unwrap();
        assert!(answer.tls13 && !answer.psk_accepted);
        let answer = crate::client::ServerAnswer {
            tickets: d.tickets13.clone(),
            ..answer
        };
        client.learn(&offer, &answer, 0);
        let (_, again) = view(kind, &mut client, &mut rng, 5);
        assert!(again.psk.is_some());
        let d2 = a.decide(&again, 5);
        assert!(d2.resumed);
        let short = a.first_flight(&d2);
        assert!(short.len() < 300, "resumed flight {}", short.len());
        assert!(
            crate::client::parse_server_hello(first_message(&short))
                .unwrap()
                .psk_accepted
        );
    }

    /// Every byte the client and server models put on the wire over three connections of each
    /// client kind, hashed: the simulator's reports depend on these bytes (sizes, record
    /// boundaries, what the balancer parses), so a change of encoder must not change them.
    #[tokio::test]
    async fn model_wire_bytes_are_pinned() {
        use crate::client::{exchange, finish_handshake, Exchange, ServerAnswer};
        use sha2::{Digest, Sha256};
        let mut wire = Sha256::new();
        let mut rng = Rng::new(11);
        let mut resumed = 0;
        let kinds = [
            ClientKind::Tls12SessionId,
            ClientKind::Tls12TicketOpenssl,
            ClientKind::Tls12TicketGo,
            ClientKind::Tls13SingleUse,
            ClientKind::Tls13Reuse,
            ClientKind::NoResumption,
        ];
        for (keys, kind, pq) in [TicketKeys::PerServer, TicketKeys::None]
            .into_iter()
            .flat_map(|k| kinds.map(|c| (k, c)))
            .flat_map(|(k, c)| [(k, c, false), (k, c, true)])
        {
            let mut server = ServerModel::new(1, 2, &spec(keys));
            let mut client = ClientSession::new(kind, Duration::from_secs(3600));
            for now in [0u64, 1_000, 2_000] {
                let offer = client.offer(&mut rng, now);
                let shape = HelloShape {
                    sni: "pinned.example",
                    pq_key_share: pq,
                };
                let hello = client_hello(kind, &offer, &shape, &mut rng);
                let d = server.decide(&parse_client_hello(&hello[9..]).unwrap(), now);
                resumed += u32::from(d.resumed);
                let mut from_server = server.first_flight(&d);
                if !d.tls13 && !d.resumed {
                    from_server.extend(server.second_flight12(&d));
                }
                let mut from_client = Vec::new();
                let mut rd = &from_server[..];
                let answer = finish_handshake(&mut rd, &mut from_client, kind)
                    .await
                    .unwrap();
                let tickets13 = server.tickets13(&d);
                let mut response = tickets13.clone();
                tls_wire::push_encrypted_fill(
                    &mut response,
                    APPLICATION_DATA,
                    APPLICATION_DATA,
                    0x5a,
                    700,
                );
                let mut tickets = Vec::new();
                let x = Exchange {
                    request_bytes: 300,
                    response_bytes: 700,
                    hold: Duration::ZERO,
                };
                exchange(&mut &response[..], &mut from_client, x, &mut tickets)
                    .await
                    .unwrap();
                let answer = ServerAnswer {
                    tickets: if d.tls13 {
                        tickets
                    } else {
                        answer.tickets.clone()
                    },
                    ..answer
                };
                client.learn(&offer, &answer, now);
                for part in [&hello, &from_server, &tickets13, &from_client] {
                    wire.update((part.len() as u64).to_be_bytes());
                    wire.update(part);
                }
            }
        }
        let digest: String = wire.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(resumed, 38, "the resumption paths are exercised too");
        assert_eq!(
            digest,
            "221648d35ad031c23597ab9c8799df9b228245b7207e5627517496cc1dcbc3f1"
        );
    }

    proptest::proptest! {
        #[test]
        fn client_hello_parser_never_panics(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_client_hello(&buf);
            let _ = crate::client::parse_server_hello(&buf);
        }
    }
}
