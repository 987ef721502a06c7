//! The stick tables an upgrade carries from the old process to the new one, as a small
//! explicit encoding over the handover channel (until the peers protocol carries them).
//!
//! Entries name their backend and server (not indexes: the new process may have reordered its
//! servers) and say how long they have left to live, since the two processes' clocks start at
//! different moments. One record:
//! `kind:u8 | backend_len:u16 backend | server_len:u16 server | key_len:u16 key | remaining_ms:u64`,
//! big-endian, records back to back in chunks of at most [`super::handover::MAX_MESSAGE`].

use std::collections::BTreeMap;

use tether_core::affinity::TableKind;
use tether_core::engine::runtime::Runtime;
use tether_core::{ServerId, Timestamp};

/// One stick-table entry in flight between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The backend whose table holds it.
    pub backend: String,
    /// Which of the backend's tables.
    pub kind: TableKind,
    /// The normalised key.
    pub key: Vec<u8>,
    /// The server it sticks to, by name.
    pub server: String,
    /// Milliseconds before it expires unless touched.
    pub remaining_ms: u64,
}

/// Why a chunk of entries could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The chunk ends inside a record.
    #[error("stick-table chunk cut inside a record")]
    Truncated,
    /// A record names a table kind this version does not know.
    #[error("stick-table record of unknown kind {0}")]
    UnknownKind(u8),
    /// A name is not UTF-8.
    #[error("stick-table record with a name that is not UTF-8")]
    BadName,
}

/// What restoring did: entries stored, and entries skipped because the new configuration has
/// no such backend, table or server (or the table refused them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Entries now in the new process's tables.
    pub stored: usize,
    /// Entries with nowhere to go.
    pub skipped: usize,
}

const KINDS: [TableKind; 4] = [
    TableKind::SessionId,
    TableKind::Ticket,
    TableKind::Psk,
    TableKind::Rule,
];

fn kind_code(kind: TableKind) -> u8 {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

/// Every live entry of `runtime` at `now`: backends by name, tables in configuration order,
/// oldest deadline first within a table (restored in that order, the most recently used end
/// up most recent again). Only tables whose peers section (`None`: not shared) passes `keep`:
/// the tables a peers section shares go over the peers protocol when it can carry them.
pub fn snapshot(
    runtime: &Runtime,
    now: Timestamp,
    keep: impl Fn(Option<&str>) -> bool,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for (name, backend) in &runtime.backends {
        for table in backend.tables.iter() {
            if !keep(table.config().peers.as_deref()) {
                continue;
            }
            let mut entries = table.entries(now);
            entries.sort_by_key(|e| (e.expires_at, e.key));
            for e in entries {
                let Some(server) = backend.servers.get(e.server.index()) else {
                    continue;
                };
                out.push(Entry {
                    backend: name.clone(),
                    kind: table.kind(),
                    key: e.key.to_vec(),
                    server: server.name.to_string(),
                    remaining_ms: e.expires_at.0.saturating_sub(now.0),
                });
            }
        }
    }
    out
}

/// The entries of `now` that `before` did not have, or had pointing at another server.
pub fn changed_since(before: &[Entry], now: &[Entry]) -> Vec<Entry> {
    let seen: BTreeMap<(&str, TableKind, &[u8]), &str> = before
        .iter()
        .map(|e| ((e.backend.as_str(), e.kind, &e.key[..]), e.server.as_str()))
        .collect();
    now.iter()
        .filter(|e| seen.get(&(e.backend.as_str(), e.kind, &e.key[..])) != Some(&e.server.as_str()))
        .cloned()
        .collect()
}

/// Stores `entries` in the same-named backends' tables of `runtime`, deadlines counted from
/// `now` on its clock.
pub fn restore(runtime: &Runtime, entries: &[Entry], now: Timestamp) -> Restored {
    let mut done = Restored::default();
    for e in entries {
        let stored = runtime.backends.get(&e.backend).and_then(|b| {
            let table = b.tables.get(e.kind)?;
            let server = b.servers.iter().position(|s| *s.name == *e.server)?;
            let deadline = Timestamp(now.0.saturating_add(e.remaining_ms));
            table.restore(&e.key, ServerId(server as u32), deadline, now)
        });
        match stored {
            Some(tether_core::stick::Learn::Refused) | None => done.skipped += 1,
            Some(_) => done.stored += 1,
        }
    }
    done
}

/// Encodes `entries` in chunks no larger than `max` bytes each. A record that alone exceeds
/// `max` (names of tens of kilobytes) is left out.
pub fn encode(entries: &[Entry], max: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    for e in entries {
        let Some(record) = record(e) else { continue };
        if record.len() > max {
            continue;
        }
        if chunk.len() + record.len() > max {
            chunks.push(std::mem::take(&mut chunk));
        }
        chunk.extend_from_slice(&record);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

fn record(e: &Entry) -> Option<Vec<u8>> {
    let mut r = vec![kind_code(e.kind)];
    for field in [e.backend.as_bytes(), e.server.as_bytes(), &e.key[..]] {
        r.extend_from_slice(&u16::try_from(field.len()).ok()?.to_be_bytes());
        r.extend_from_slice(field);
    }
    r.extend_from_slice(&e.remaining_ms.to_be_bytes());
    Some(r)
}

/// Decodes one chunk.
pub fn decode(mut chunk: &[u8]) -> Result<Vec<Entry>, TransferError> {
    let mut out = Vec::new();
    while let Some((&code, rest)) = chunk.split_first() {
        let kind = *KINDS
            .get(usize::from(code))
            .ok_or(TransferError::UnknownKind(code))?;
        let (backend, rest) = field(rest)?;
        let (server, rest) = field(rest)?;
        let (key, rest) = field(rest)?;
        let (remaining, rest) = rest.split_at_checked(8).ok_or(TransferError::Truncated)?;
        let name = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| TransferError::BadName)
        };
        out.push(Entry {
            backend: name(backend)?,
            kind,
            key: key.to_vec(),
            server: name(server)?,
            remaining_ms: u64::from_be_bytes(remaining.try_into().expect("8 bytes")),
        });
        chunk = rest;
    }
    Ok(out)
}

fn field(bytes: &[u8]) -> Result<(&[u8], &[u8]), TransferError> {
    let (len, rest) = bytes.split_at_checked(2).ok_or(TransferError::Truncated)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    rest.split_at_checked(len).ok_or(TransferError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tether_core::config::load_toml;
    use tether_core::engine::runtime::build;

    fn runtime(servers: &[&str]) -> Runtime {
        let mut text = String::from(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
             [[backend]]\nname = \"be\"\naffinity = [\"session-id\", \"ticket\"]\n\
             stick-table = { expire = \"10s\" }\n",
        );
        for (i, n) in servers.iter().enumerate() {
            text += &format!(
                "[[backend.server]]\nname = \"{n}\"\naddress = \"127.0.0.1:{}\"\ncheck = false\n",
                i + 1
            );
        }
        build(&load_toml("t.toml", &text).unwrap(), None).unwrap()
    }

    #[test]
    fn entries_move_by_server_name_with_their_time_left() {
        use tether_core::affinity::Tables;
        let old = runtime(&["a", "b", "c"]);
        let be = &old.backends["be"];
        let t0 = Timestamp(50_000);
        be.tables
            .learn(TableKind::SessionId, b"sess-1", ServerId(2), t0);
        be.tables
            .learn(TableKind::Ticket, b"tick-1", ServerId(0), t0);
        be.tables
            .learn(TableKind::SessionId, b"sess-2", ServerId(1), t0);
        let later = Timestamp(54_000);
        let snap = snapshot(&old, later, |_| true);
        assert_eq!(snap.len(), 3);
        assert!(snap.iter().all(|e| e.remaining_ms == 6_000), "{snap:?}");
        let chunks = encode(&snap, 100);
        assert!(chunks.len() > 1, "small chunks split the records");
        let decoded: Vec<Entry> = chunks.iter().flat_map(|c| decode(c).unwrap()).collect();
        assert_eq!(decoded, snap);
        // The new process dropped "a" and reordered: "c" is index 0, "b" index 1.
        let new = runtime(&["c", "b"]);
        let done = restore(&new, &decoded, Timestamp(0));
        assert_eq!(
            done,
            Restored {
                stored: 2,
                skipped: 1
            }
        );
        let t = new.backends["be"].tables.get(TableKind::SessionId).unwrap();
        let e = t.get(b"sess-1", Timestamp(0)).expect("carried over");
        assert_eq!((e.server, e.expires_at), (ServerId(0), Timestamp(6_000)));
        assert_eq!(t.get(b"sess-2", Timestamp(0)).unwrap().server, ServerId(1));
        assert_eq!(t.get(b"sess-1", Timestamp(6_000)), None, "expires on time");
    }

    #[test]
    fn only_new_or_moved_entries_count_as_changed() {
        let e = |key: &[u8], server: &str| Entry {
            backend: "be".into(),
            kind: TableKind::SessionId,
            key: key.to_vec(),
            server: server.into(),
            remaining_ms: 1,
        };
        let before = vec![e(b"k1", "a"), e(b"k2", "a")];
        let now = vec![e(b"k1", "a"), e(b"k2", "b"), e(b"k3", "a")];
        assert_eq!(
            changed_since(&before, &now),
            vec![e(b"k2", "b"), e(b"k3", "a")]
        );
    }

    #[test]
    fn broken_chunks_are_errors() {
        assert_eq!(decode(&[9]), Err(TransferError::UnknownKind(9)));
        assert_eq!(decode(&[0, 0, 1]), Err(TransferError::Truncated));
        assert_eq!(
            decode(&[0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(TransferError::BadName)
        );
        assert_eq!(decode(&[]), Ok(vec![]));
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            "[a-z0-9]{1,12}",
            0usize..4,
            proptest::collection::vec(any::<u8>(), 0..40),
            "[a-z0-9]{1,12}",
            any::<u64>(),
        )
            .prop_map(|(backend, k, key, server, remaining_ms)| Entry {
                backend,
                kind: KINDS[k],
                key,
                server,
                remaining_ms,
            })
    }

    proptest! {
        #[test]
        fn any_entries_roundtrip_in_bounded_chunks(
            entries in proptest::collection::vec(entry(), 0..50),
            max in 100usize..400,
        ) {
            let chunks = encode(&entries, max);
            prop_assert!(chunks.iter().all(|c| c.len() <= max && !c.is_empty()));
            let back: Vec<Entry> = chunks.iter().flat_map(|c| decode(c).unwrap()).collect();
            prop_assert_eq!(back, entries);
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
