//! Ticket key names: which server owns each session-ticket encryption key.
//!
//! RFC 5077 §4 recommends tickets that start with a 16-byte `key_name`; OpenSSL and BoringSSL
//! (and nginx, Apache, HAProxy, Envoy on top of them) use it for TLS 1.2 and TLS 1.3 tickets, so
//! every ticket one server issues under one key starts with the same bytes. A TLS 1.3 PSK
//! identity is that ticket, in clear. Learning *key name → server* once per server and key
//! rotation routes every later ticket of that key, from any client, with a table of a few
//! entries (design.md §8).
//!
//! [`TicketKeys`] is the learner: plain `&mut self` state, bounded everywhere, no clock, no
//! hash-map iteration order. It learns only from what the server says in clear: an accepted
//! resumption confirms, a rejected one unlearns, a TLS 1.2 NewSessionTicket teaches directly.
//! A name accepted by two servers is *shared* (the servers share a ticket key: no affinity
//! needed); a server whose names never repeat is *unnamed* (Go ≥ 1.21, rustls: a random prefix),
//! and learning stops for it.
//!
//! An unknown name is routed by a deterministic *bootstrap*, in this order: the server that last
//! served this client address, if it has no confirmed name yet (its ticket most likely came from
//! there); else a server that has no confirmed name yet (picked by a hash of the name); else,
//! when some server is unnamed, nothing (the ticket is most likely that server's: fall through);
//! else the client's last server (a rotated key), else any server. A server that refused the
//! name is never guessed for it again, so each wrong guess costs one connection. Only servers
//! seen answering are candidates.
//!
//! That order is [`Bootstrap::ClientThenNameless`], the default; [`Bootstrap`] names the
//! alternatives measured against it in the simulator (README, "Which bootstrap").

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::stable_hash;
use crate::ServerId;

/// Longest key name tether reads.
pub const MAX_NAME_LEN: usize = 32;

/// Where a ticket's key name sits: `offset` bytes in, `length` bytes long. RFC 5077's format
/// (OpenSSL, BoringSSL) is offset 0, length 16; other formats configure it per backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NameSpan {
    /// Bytes before the name.
    #[serde(default)]
    pub offset: u16,
    /// Length of the name (1..=32).
    #[serde(default = "default_name_len")]
    pub length: u8,
}

fn default_name_len() -> u8 {
    16
}

impl Default for NameSpan {
    fn default() -> Self {
        NameSpan {
            offset: 0,
            length: default_name_len(),
        }
    }
}

/// A ticket key name, as cut from a ticket or PSK identity.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl KeyName {
    /// Cuts the name out of `ticket`; `None` when the ticket is too short to hold it.
    pub fn from_ticket(ticket: &[u8], span: NameSpan) -> Option<Self> {
        let len = usize::from(span.length).min(MAX_NAME_LEN);
        let start = usize::from(span.offset);
        let name = ticket.get(start..start.checked_add(len)?)?;
        // A ticket no longer than its name has nothing encrypted behind it: not a ticket.
        if len == 0 || ticket.len() <= start + len {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..len].copy_from_slice(name);
        Some(KeyName {
            len: len as u8,
            bytes,
        })
    }

    /// The name's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex, as the log and the stats page show it.
    pub fn hex(&self) -> String {
        self.as_slice().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyName({})", self.hex())
    }
}

/// The learner's bounds. Every table it keeps is capped by one of these.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Names kept per server (old keys stay valid for a while after a rotation).
    pub names_per_server: usize,
    /// Servers tracked.
    pub servers: usize,
    /// Shared names kept.
    pub shared: usize,
    /// Unknown names whose refusals are remembered.
    pub refuted: usize,
    /// Client addresses whose last server is remembered.
    pub clients: usize,
    /// A server is unnamed after this many distinct names with fewer repeats than names.
    pub unnamed_after: u32,
    /// Every this many hits on a name, one goes to another server to detect a shared key.
    pub probe_every: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            names_per_server: 4,
            servers: 1024,
            shared: 64,
            refuted: 256,
            clients: 4096,
            unnamed_after: 8,
            probe_every: 64,
        }
    }
}

/// How an unknown key name is routed until a server confirms it (`ticket-key-bootstrap`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootstrap {
    /// The client's last server if it has no confirmed name yet, else a server with no
    /// confirmed name (by a hash of the name), else the client's last server, else any.
    #[default]
    ClientThenNameless,
    /// A server with no confirmed name yet, else any (by a hash of the name): the client's
    /// address is not consulted.
    Nameless,
    /// The client's last server, whatever it has learned; else any server (by a hash).
    Client,
    /// No guess: the chain falls through to the next key or the balance algorithm until a
    /// server's answer confirms the name.
    None,
}

/// Where the learner sends a presented name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Guess {
    /// The name is confirmed on this server.
    Owner(ServerId),
    /// A periodic probe of a confirmed name on another server (detects a shared key).
    Probe(ServerId),
    /// The name is unknown; this is the bootstrap's best guess.
    Bootstrap(ServerId),
    /// Several servers accept the name: no affinity needed, fall through.
    Shared,
    /// The name most likely belongs to a server whose tickets carry no name: fall through.
    Unnamed,
    /// Nothing to go on: fall through.
    Unknown,
}

/// What one observation changed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new name → server.
    Learned,
    /// The name was already known on that server.
    Confirmed,
    /// The name was seen accepted on a second server: now shared.
    BecameShared,
    /// The server's names never repeat: it is now unnamed (reported once).
    BecameUnnamed,
    /// A confirmed name was refused by its server and forgotten.
    Unlearned,
    /// A refusal of an unknown name, remembered for the bootstrap.
    Refuted,
    /// Nothing changed (the server is unnamed, or the observation says nothing).
    Ignored,
}

impl Change {
    /// Whether the table now knows something new (counted as "learned" in the log).
    pub fn stored(self) -> bool {
        matches!(self, Change::Learned | Change::BecameShared)
    }
}

/// A server's learning state.
#[derive(Clone, Debug, Default)]
struct ServerKeys {
    /// Confirmed names, oldest first.
    names: VecDeque<KeyName>,
    /// Distinct names ever learned for it.
    distinct: u32,
    /// Observations of a name it already owned.
    repeats: u32,
    unnamed: bool,
}

/// Who owns a name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Owner {
    Server(ServerId),
    Shared,
}

#[derive(Copy, Clone, Debug)]
struct NameEntry {
    owner: Owner,
    hits: u64,
}

/// The key-name learner of one backend.
#[derive(Clone, Debug, Default)]
pub struct TicketKeys {
    limits: Limits,
    /// Bumped each time [`TicketKeys::remap_servers`] renumbers servers.
    layout: u64,
    names: BTreeMap<KeyName, NameEntry>,
    servers: BTreeMap<ServerId, ServerKeys>,
    shared: VecDeque<KeyName>,
    refuted: BTreeMap<KeyName, Vec<ServerId>>,
    refuted_order: VecDeque<KeyName>,
    clients: BTreeMap<IpAddr, (ServerId, u64)>,
    client_order: BTreeMap<u64, IpAddr>,
    seq: u64,
}

/// What the stats page shows of one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerNames {
    /// The server.
    pub server: ServerId,
    /// Confirmed names, hex, oldest first.
    pub names: Vec<String>,
    /// Its tickets carry no stable name; nothing is learned for it.
    pub unnamed: bool,
}

/// What the learner knows, for the stats page (names in hex, never tickets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Per server, in server order.
    pub servers: Vec<ServerNames>,
    /// Names accepted by more than one server, hex.
    pub shared: Vec<String>,
}

impl TicketKeys {
    /// An empty learner with `limits`.
    pub fn new(limits: Limits) -> Self {
        TicketKeys {
            limits,
            ..TicketKeys::default()
        }
    }

    /// Where to send a client presenting `name` (from `client`, when known), an unknown name
    /// by `bootstrap`. Counts hits.
    pub fn route(&mut self, name: &KeyName, client: Option<IpAddr>, bootstrap: Bootstrap) -> Guess {
        let Some(e) = self.names.get_mut(name) else {
            return self.bootstrap(name, client, bootstrap);
        };
        let Owner::Server(owner) = e.owner else {
            return Guess::Shared;
        };
        e.hits += 1;
        let every = self.limits.probe_every.max(1);
        if e.hits % every != 0 {
            return Guess::Owner(owner);
        }
        let others: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(s, k)| **s != owner && !k.unnamed)
            .map(|(s, _)| *s)
            .collect();
        if others.is_empty() {
            return Guess::Owner(owner);
        }
        // Each probe of this name tries the next server in turn.
        Guess::Probe(others[((e.hits / every) % others.len() as u64) as usize])
    }

    /// The bootstrap for an unknown name (see the module doc for the order).
    fn bootstrap(&self, name: &KeyName, client: Option<IpAddr>, how: Bootstrap) -> Guess {
        if how == Bootstrap::None {
            return Guess::Unknown;
        }
        let refuted = self.refuted.get(name).map_or(&[][..], Vec::as_slice);
        let usable =
            |s: &ServerId| !refuted.contains(s) && self.servers.get(s).is_some_and(|k| !k.unnamed);
        let nameless = |s: &ServerId| self.servers.get(s).is_some_and(|k| k.names.is_empty());
        let last = match how {
            Bootstrap::Nameless => None,
            _ => client.and_then(|ip| self.clients.get(&ip)).map(|(s, _)| *s),
        };
        if last.is_some_and(|s| self.servers.get(&s).is_some_and(|k| k.unnamed)) {
            return Guess::Unnamed;
        }
        let pick = |c: Vec<ServerId>| c[(stable_hash(name.as_slice()) % c.len() as u64) as usize];
        if how == Bootstrap::Client {
            return match last.filter(usable) {
                Some(s) => Guess::Bootstrap(s),
                None => self.any_usable(usable, pick),
            };
        }
        if let Some(s) = last.filter(|s| usable(s) && nameless(s)) {
            return Guess::Bootstrap(s);
        }
        let candidates: Vec<ServerId> = self
            .servers
            .keys()
            .copied()
            .filter(|s| usable(s) && nameless(s))
            .collect();
        if !candidates.is_empty() {
            return Guess::Bootstrap(pick(candidates));
        }
        if self.servers.values().any(|k| k.unnamed) {
            return Guess::Unnamed;
        }
        // Every server has a name: this one is most likely a rotated key.
        if let Some(s) = last.filter(usable) {
            return Guess::Bootstrap(s);
        }
        self.any_usable(usable, pick)
    }

    /// Any server `usable` allows, chosen by `pick`; unknown when there is none.
    fn any_usable(
        &self,
        usable: impl Fn(&ServerId) -> bool,
        pick: impl Fn(Vec<ServerId>) -> ServerId,
    ) -> Guess {
        let any: Vec<ServerId> = self.servers.keys().copied().filter(|s| usable(s)).collect();
        if any.is_empty() {
            Guess::Unknown
        } else {
            Guess::Bootstrap(pick(any))
        }
    }

    /// A ServerHello from `server` answered `client`: the client's next ticket comes from there.
    pub fn on_served(&mut self, client: Option<IpAddr>, server: ServerId) {
        if !self.track_server(server) {
            return;
        }
        let Some(ip) = client else { return };
        self.seq += 1;
        if let Some((_, old)) = self.clients.insert(ip, (server, self.seq)) {
            self.client_order.remove(&old);
        }
        self.client_order.insert(self.seq, ip);
        while self.clients.len() > self.limits.clients {
            let Some((_, oldest)) = self.client_order.pop_first() else {
                break;
            };
            self.clients.remove(&oldest);
        }
    }

    /// Starts tracking `server` if there is room; false when the server table is full.
    fn track_server(&mut self, server: ServerId) -> bool {
        if self.servers.contains_key(&server) {
            return true;
        }
        if self.servers.len() >= self.limits.servers {
            return false;
        }
        self.servers.insert(server, ServerKeys::default());
        true
    }

    /// `server` accepted a resumption with a ticket named `name` (TLS 1.3 `pre_shared_key`
    /// selected, or a TLS 1.2 abbreviated handshake).
    pub fn on_accepted(&mut self, name: &KeyName, server: ServerId) -> Change {
        self.observe(name, server)
    }

    /// `server` issued a ticket named `name` (a cleartext TLS 1.2 NewSessionTicket).
    pub fn on_issued(&mut self, name: &KeyName, server: ServerId) -> Change {
        self.observe(name, server)
    }

    fn observe(&mut self, name: &KeyName, server: ServerId) -> Change {
        if !self.track_server(server) || self.servers[&server].unnamed {
            return Change::Ignored;
        }
        match self.names.get(name).map(|e| e.owner) {
            Some(Owner::Shared) => Change::Confirmed,
            Some(Owner::Server(s)) if s == server => {
                let k = self.servers.get_mut(&server).expect("tracked");
                k.repeats = k.repeats.saturating_add(1);
                // Most recently confirmed last: the oldest name is evicted first.
                k.names.retain(|n| n != name);
                k.names.push_back(*name);
                Change::Confirmed
            }
            Some(Owner::Server(other)) => {
                if let Some(k) = self.servers.get_mut(&other) {
                    k.names.retain(|n| n != name);
                }
                self.make_shared(name);
                Change::BecameShared
            }
            None => self.learn_new(name, server),
        }
    }

    fn learn_new(&mut self, name: &KeyName, server: ServerId) -> Change {
        self.forget_refusals(name);
        let limit = self.limits.unnamed_after.max(1);
        let k = self.servers.get_mut(&server).expect("tracked");
        k.distinct = k.distinct.saturating_add(1);
        if k.distinct >= limit && k.repeats < k.distinct {
            k.unnamed = true;
            for n in std::mem::take(&mut k.names) {
                self.names.remove(&n);
            }
            return Change::BecameUnnamed;
        }
        k.names.push_back(*name);
        let evicted = (k.names.len() > self.limits.names_per_server)
            .then(|| k.names.pop_front())
            .flatten();
        if let Some(old) = evicted {
            self.names.remove(&old);
        }
        self.names.insert(
            *name,
            NameEntry {
                owner: Owner::Server(server),
                hits: 0,
            },
        );
        Change::Learned
    }

    fn make_shared(&mut self, name: &KeyName) {
        self.names.insert(
            *name,
            NameEntry {
                owner: Owner::Shared,
                hits: 0,
            },
        );
        self.shared.push_back(*name);
        while self.shared.len() > self.limits.shared {
            if let Some(old) = self.shared.pop_front() {
                self.names.remove(&old);
            }
        }
    }

    /// `server` refused a resumption with a ticket named `name`: a confirmed name is forgotten
    /// (the server restarted or dropped the key), an unknown one is not tried there again.
    pub fn on_rejected(&mut self, name: &KeyName, server: ServerId) -> Change {
        match self.names.get(name).map(|e| e.owner) {
            Some(Owner::Server(s)) if s == server => {
                self.names.remove(name);
                if let Some(k) = self.servers.get_mut(&server) {
                    k.names.retain(|n| n != name);
                }
                Change::Unlearned
            }
            Some(Owner::Shared) => {
                self.names.remove(name);
                self.shared.retain(|n| n != name);
                Change::Unlearned
            }
            Some(Owner::Server(_)) => Change::Ignored,
            None => self.refute(name, server),
        }
    }

    fn refute(&mut self, name: &KeyName, server: ServerId) -> Change {
        let list = match self.refuted.get_mut(name) {
            Some(l) => l,
            None => {
                self.refuted_order.push_back(*name);
                if self.refuted_order.len() > self.limits.refuted {
                    if let Some(old) = self.refuted_order.pop_front() {
                        self.refuted.remove(&old);
                    }
                }
                self.refuted.entry(*name).or_default()
            }
        };
        if list.contains(&server) || list.len() >= self.limits.servers {
            return Change::Ignored;
        }
        list.push(server);
        Change::Refuted
    }

    fn forget_refusals(&mut self, name: &KeyName) {
        if self.refuted.remove(name).is_some() {
            self.refuted_order.retain(|n| n != name);
        }
    }

    /// Whether `server` was found to issue unnamed tickets.
    pub fn is_unnamed(&self, server: ServerId) -> bool {
        self.servers.get(&server).is_some_and(|k| k.unnamed)
    }

    /// The server a name is confirmed on, if any.
    pub fn owner(&self, name: &KeyName) -> Option<ServerId> {
        match self.names.get(name)?.owner {
            Owner::Server(s) => Some(s),
            Owner::Shared => None,
        }
    }

    /// Whether a name is known to be shared.
    pub fn is_shared(&self, name: &KeyName) -> bool {
        self.names
            .get(name)
            .is_some_and(|e| e.owner == Owner::Shared)
    }

    /// Number of names held (confirmed and shared).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Everything remembered, counted: names, refusals and client addresses (for bounds checks).
    pub fn footprint(&self) -> usize {
        self.names.len()
            + self.refuted.values().map(Vec::len).sum::<usize>()
            + self.clients.len()
            + self.servers.len()
    }

    /// What the stats page shows.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            servers: self
                .servers
                .iter()
                .map(|(s, k)| ServerNames {
                    server: *s,
                    names: k.names.iter().map(KeyName::hex).collect(),
                    unnamed: k.unnamed,
                })
                .collect(),
            shared: self.shared.iter().map(KeyName::hex).collect(),
        }
    }

    /// The server numbering this learner holds: bumped whenever a reload renumbers servers, so
    /// a backend built for an older numbering neither reads nor teaches it
    /// ([`crate::affinity::Tables::ticket_learner`]).
    pub fn layout(&self) -> u64 {
        self.layout
    }

    /// Renumbers or drops servers after a reload changed the server list.
    pub fn remap_servers(&mut self, mut f: impl FnMut(ServerId) -> Option<ServerId>) {
        let map: BTreeMap<ServerId, Option<ServerId>> =
            self.servers.keys().map(|s| (*s, f(*s))).collect();
        if map.iter().all(|(s, to)| *to == Some(*s)) {
            // The same servers in the same places: nothing renumbered, connections keep teaching.
            return;
        }
        self.layout += 1;
        let old = std::mem::take(&mut self.servers);
        for (s, k) in old {
            match map[&s] {
                Some(n) => {
                    self.servers.insert(n, k);
                }
                None => {
                    for name in &k.names {
                        self.names.remove(name);
                    }
                }
            }
        }
        for e in self.names.values_mut() {
            if let Owner::Server(s) = e.owner {
                e.owner = Owner::Server(map.get(&s).copied().flatten().unwrap_or(s));
            }
        }
        self.refuted.clear();
        self.refuted_order.clear();
        self.clients.clear();
        self.client_order.clear();
    }
}

#[cfg(test)]
mod tests;
