//! The bytes of HAProxy's peers protocol v2.1, as HAProxy 2.6 writes them (`src/peers.c`,
//! `doc/peers-v2.0.txt`).
//!
//! A session opens with text lines: the connecting side sends
//! `HAProxyS 2.1\n<remote name>\n<local name> <pid> <relative pid>\n`, the accepting side answers
//! a status line (`200\n` on success). Then binary messages follow, each a two-byte header
//! (class, type); stick-table messages (type ≥ 128) carry a varint length and that many bytes.
//! Integers are HAProxy's varint: below 240 one byte, else the low 4 bits ORed with 240, then
//! 7 bits a byte, high bit set on all but the last.
//!
//! Parsing is zero-copy over `&[u8]` and bounds-checked: a message borrows its key and names from
//! the input, and every length is checked against what is there before it is used.

use std::fmt;

/// Protocol name on the hello line.
pub const PROTO_NAME: &str = "HAProxyS";
/// The version tether speaks (HAProxy 2.6 speaks 2.1 and accepts 2.0).
pub const VERSION: (u32, u32) = (2, 1);
/// Longest hello or status line accepted, including its newline.
pub const MAX_LINE: usize = 256;
/// Largest stick-table message body accepted (HAProxy's trash buffer is 16 kB by default).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Longest key a peers table carries here.
pub const MAX_KEY: usize = 32;
/// Longest server name (dictionary value) accepted.
pub const MAX_SERVER_KEY: usize = 255;

/// Message classes.
pub mod class {
    /// Control messages: resync and heartbeat.
    pub const CONTROL: u8 = 0;
    /// Errors.
    pub const ERROR: u8 = 1;
    /// Stick-table messages.
    pub const STICKTABLE: u8 = 10;
    /// Reserved: receiving it is a protocol error.
    pub const RESERVED: u8 = 255;
}

/// Control message types.
pub mod control {
    /// Send me all your entries.
    pub const RESYNC_REQUEST: u8 = 0;
    /// All entries sent; the sender was up to date.
    pub const RESYNC_FINISHED: u8 = 1;
    /// All entries sent, but the sender was not up to date itself.
    pub const RESYNC_PARTIAL: u8 = 2;
    /// The end of a resync was received.
    pub const RESYNC_CONFIRM: u8 = 3;
    /// Keep-alive.
    pub const HEARTBEAT: u8 = 4;
}

/// Error message types.
pub mod error {
    /// The peer broke the protocol.
    pub const PROTOCOL: u8 = 0;
    /// A message was larger than the peer accepts.
    pub const SIZE_LIMIT: u8 = 1;
}

/// Stick-table message types (all ≥ 128: they carry a length).
pub mod stkt {
    /// Update with its 32-bit id.
    pub const UPDATE: u8 = 0x80;
    /// Update whose id is the previous one + 1.
    pub const INCUPDATE: u8 = 0x81;
    /// Table definition (also makes it the current table).
    pub const DEFINE: u8 = 0x82;
    /// Makes a defined table the current one.
    pub const SWITCH: u8 = 0x83;
    /// Acknowledges updates up to an id.
    pub const ACK: u8 = 0x84;
    /// Update with id and remaining expiry.
    pub const UPDATE_TIMED: u8 = 0x85;
    /// Incremental update with remaining expiry.
    pub const INCUPDATE_TIMED: u8 = 0x86;
}

/// Key types on the wire (`PEER_KT_*`).
pub mod key_type {
    /// Signed integer.
    pub const SINT: u64 = 2;
    /// IPv4 address.
    pub const IPV4: u64 = 4;
    /// IPv6 address.
    pub const IPV6: u64 = 5;
    /// String.
    pub const STR: u64 = 6;
    /// Binary.
    pub const BIN: u64 = 7;
}

/// Stick-table data types tether exchanges (bit numbers of the definition's bitfield).
pub mod data_type {
    /// `server_id`: the server's numeric id (HAProxy `puid`).
    pub const SERVER_ID: u32 = 0;
    /// `server_key`: the server's name, as a dictionary entry (HAProxy ≥ 2.5).
    pub const SERVER_KEY: u32 = 19;
    /// Number of data types HAProxy 2.6 knows.
    pub const COUNT: u32 = 25;
}

/// How a data type's value is encoded (`stktable_data_types[].std_type` in HAProxy 2.6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StdType {
    /// One varint.
    Int,
    /// A frequency counter: three varints.
    FreqCounter,
    /// A dictionary entry: varint length, then the entry.
    Dict,
    /// An array of varints, its size given by the definition.
    IntArray,
    /// An array of frequency counters, its size given by the definition.
    FreqArray,
}

/// The encoding of HAProxy 2.6's data type `t`, `None` past the known ones.
pub fn std_type(t: u32) -> Option<StdType> {
    use StdType::*;
    Some(match t {
        0..=2 | 4 | 6 | 7 | 9 | 11 | 13 | 15 | 17 | 20 => Int,
        3 | 5 | 8 | 10 | 12 | 14 | 16 | 18 | 21 => FreqCounter,
        19 => Dict,
        22 | 23 => IntArray,
        24 => FreqArray,
        _ => return None,
    })
}

/// Status codes of the hello answer.
pub mod status {
    /// Accepted.
    pub const SUCCESS: u16 = 200;
    /// Busy: try again later.
    pub const TRY_AGAIN: u16 = 300;
    /// The hello was malformed.
    pub const ERR_PROTO: u16 = 501;
    /// The version is not supported.
    pub const ERR_VERSION: u16 = 502;
    /// The hello named another peer as its destination (not our local name).
    pub const ERR_HOST: u16 = 503;
    /// The sender is not in our peer list.
    pub const ERR_PEER: u16 = 504;
}

/// Why bytes could not be decoded. Every case closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A varint runs past the end of its message.
    #[error("truncated integer")]
    TruncatedInt,
    /// A varint is longer than 64 bits.
    #[error("integer longer than 64 bits")]
    IntTooLong,
    /// A length says more bytes follow than the message holds.
    #[error("{what}: length {len} but only {left} byte(s) left")]
    Length {
        /// What was being read.
        what: &'static str,
        /// The length announced.
        len: u64,
        /// Bytes left.
        left: usize,
    },
    /// A message announces a body larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(u64),
    /// A hello or status line is longer than [`MAX_LINE`].
    #[error("handshake line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A hello or status line does not parse.
    #[error("malformed handshake: {0}")]
    Handshake(&'static str),
    /// The reserved message class.
    #[error("reserved message class 255")]
    ReservedClass,
    /// Bytes after the end of a fixed-size message body.
    #[error("{0}: trailing bytes")]
    Trailing(&'static str),
}

/// Appends `v` as HAProxy's varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 240 {
        out.push(v as u8);
        return;
    }
    out.push((v as u8) | 240);
    v = (v - 240) >> 4;
    while v >= 128 {
        out.push((v as u8) | 128);
        v = (v - 128) >> 7;
    }
    out.push(v as u8);
}

/// A cursor over one message body.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads one varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let (&first, mut rest) = self.buf.split_first().ok_or(WireError::TruncatedInt)?;
        let mut v = u64::from(first);
        if first >= 240 {
            let mut shift = 4u32;
            loop {
                // Checked before the next byte is needed: a tenth continuation byte is too long
                // whatever it is, so the verdict must not wait for it (nor change when it comes).
                if shift > 60 {
                    return Err(WireError::IntTooLong);
                }
                let (&b, r) = rest.split_first().ok_or(WireError::TruncatedInt)?;
                rest = r;
                v = v.wrapping_add(u64::from(b) << shift);
                shift += 7;
                if b < 128 {
                    break;
                }
            }
        }
        self.buf = rest;
        Ok(v)
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], WireError> {
        let left = self.buf.len();
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or(WireError::Length { what, len: n, left })?;
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A decoded binary message, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Class 0.
    Control(u8),
    /// Class 1.
    Error(u8),
    /// Table definition.
    Define(TableDef<'a>),
    /// Switch to a defined table.
    Switch {
        /// The sender's table id.
        table_id: u64,
    },
    /// An update for the current table; the body is decoded against the table's definition
    /// ([`decode_update`]).
    Update {
        /// The message type (one of the four update types).
        kind: u8,
        /// The undecoded body.
        body: &'a [u8],
    },
    /// Acknowledgement.
    Ack {
        /// The receiver's (our) table id.
        table_id: u64,
        /// Last update received.
        update: u32,
    },
    /// A stick-table message of a type this version does not know: skipped.
    UnknownTable {
        /// Its type.
        kind: u8,
    },
    /// A message of an unknown class (not 255): skipped, as HAProxy does.
    Unknown {
        /// Class.
        class: u8,
        /// Type.
        kind: u8,
    },
}

/// A table definition message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef<'a> {
    /// The sender's id for the table.
    pub table_id: u64,
    /// The table's name (the backend it belongs to).
    pub name: &'a [u8],
    /// Key type ([`key_type`]).
    pub key_type: u64,
    /// Key length in bytes.
    pub key_len: u64,
    /// Bitfield of data types stored.
    pub data_types: u64,
    /// Entry lifetime in milliseconds.
    pub expire_ms: u64,
    /// Array sizes by data type, from the parameters after the expiry (arrays only).
    pub array_len: [u8; data_type::COUNT as usize],
}

/// Splits one complete message off the front of `input`: `Ok(Some((message, used)))`, or
/// `Ok(None)` when more bytes are needed.
pub fn decode_message(input: &[u8]) -> Result<Option<(Message<'_>, usize)>, WireError> {
    let [class, kind, rest @ ..] = input else {
        return Ok(None);
    };
    let (class, kind) = (*class, *kind);
    if class == class::RESERVED {
        return Err(WireError::ReservedClass);
    }
    if kind & 0x80 == 0 {
        let msg = match class {
            class::CONTROL => Message::Control(kind),
            class::ERROR => Message::Error(kind),
            _ => Message::Unknown { class, kind },
        };
        return Ok(Some((msg, 2)));
    }
    let mut r = Reader::new(rest);
    let len = match r.varint() {
        Ok(len) => len,
        Err(WireError::TruncatedInt) if rest.len() < 10 => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(WireError::TooLarge(len));
    }
    let head = 2 + rest.len() - r.remaining();
    if r.remaining() < len as usize {
        return Ok(None);
    }
    let body = r.bytes(len, "message")?;
    let used = head + body.len();
    if class != class::STICKTABLE {
        return Ok(Some((Message::Unknown { class, kind }, used)));
    }
    let msg = match kind {
        stkt::DEFINE => Message::Define(decode_define(body)?),
        stkt::SWITCH => Message::Switch {
            table_id: Reader::new(body).varint()?,
        },
        stkt::ACK => {
            let mut r = Reader::new(body);
            let table_id = r.varint()?;
            let update = r.u32("ack")?;
            Message::Ack { table_id, update }
        }
        stkt::UPDATE | stkt::INCUPDATE | stkt::UPDATE_TIMED | stkt::INCUPDATE_TIMED => {
            Message::Update { kind, body }
        }
        _ => Message::UnknownTable { kind },
    };
    Ok(Some((msg, used)))
}

fn decode_define(body: &[u8]) -> Result<TableDef<'_>, WireError> {
    let mut r = Reader::new(body);
    let table_id = r.varint()?;
    let name_len = r.varint()?;
    let name = r.bytes(name_len, "table name")?;
    let key_type = r.varint()?;
    let key_len = r.varint()?;
    let data_types = r.varint()?;
    let mut def = TableDef {
        table_id,
        name,
        key_type,
        key_len,
        data_types,
        expire_ms: 0,
        array_len: [0; data_type::COUNT as usize],
    };
    if r.is_empty() {
        return Ok(def);
    }
    def.expire_ms = r.varint()?;
    // Parameters: per array or frequency-counter type, its number then its parameters. An
    // unreadable tail only matters for those types, which tether declines anyway.
    for t in 0..data_type::COUNT {
        if data_types & (1 << t) == 0 {
            continue;
        }
        let st = std_type(t);
        if !matches!(
            st,
            Some(StdType::FreqCounter | StdType::IntArray | StdType::FreqArray)
        ) {
            continue;
        }
        let Ok(prefix) = r.varint() else { break };
        if prefix != u64::from(t) {
            break;
        }
        let Ok(first) = r.varint() else { break };
        if st == Some(StdType::FreqArray) && r.varint().is_err() {
            break;
        }
        if st != Some(StdType::FreqCounter) {
            def.array_len[t as usize] = first.min(u64::from(u8::MAX)) as u8;
        }
    }
    Ok(def)
}

/// One entry's update as it travels: key, server id and (2.6) server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateBody<'a> {
    /// The update id, when the message carries one (else previous + 1).
    pub id: Option<u32>,
    /// Remaining lifetime in milliseconds (timed updates, sent during a teach).
    pub expire_ms: Option<u32>,
    /// The key, exactly the table's key length.
    pub key: &'a [u8],
    /// `server_id`, when the table stores it.
    pub server_id: Option<i64>,
    /// `server_key`: the dictionary entry, when the table stores it and the entry is set.
    pub server_key: Option<DictRef<'a>>,
}

/// A `server_key` dictionary reference: an id, with the value the first time it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictRef<'a> {
    /// The sender's cache slot, from 1.
    pub id: u64,
    /// The value (the server name), when sent in full.
    pub value: Option<&'a [u8]>,
}

/// How the current remote table is laid out, to decode its updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteLayout {
    /// Key type.
    pub key_type: u64,
    /// Key length.
    pub key_len: usize,
    /// Data types bitfield.
    pub data_types: u64,
    /// Array sizes by data type.
    pub array_len: [u8; data_type::COUNT as usize],
}

/// Decodes an update body of message type `kind` against the table `layout`.
pub fn decode_update<'a>(
    kind: u8,
    body: &'a [u8],
    layout: &RemoteLayout,
) -> Result<UpdateBody<'a>, WireError> {
    let mut r = Reader::new(body);
    let id = matches!(kind, stkt::UPDATE | stkt::UPDATE_TIMED)
        .then(|| r.u32("update id"))
        .transpose()?;
    let expire_ms = matches!(kind, stkt::UPDATE_TIMED | stkt::INCUPDATE_TIMED)
        .then(|| r.u32("expire"))
        .transpose()?;
    let key = match layout.key_type {
        key_type::STR => {
            let n = r.varint()?;
            r.bytes(n, "string key")?
        }
        key_type::SINT => r.bytes(4, "integer key")?,
        _ => r.bytes(layout.key_len as u64, "key")?,
    };
    let mut out = UpdateBody {
        id,
        expire_ms,
        key,
        server_id: None,
        server_key: None,
    };
    for t in 0..data_type::COUNT {
        if layout.data_types & (1 << t) == 0 {
            continue;
        }
        match std_type(t) {
            Some(StdType::Int) => {
                let v = r.varint()?;
                if t == data_type::SERVER_ID {
                    out.server_id = Some(v as i32 as i64);
                }
            }
            Some(StdType::FreqCounter) => {
                for _ in 0..3 {
                    r.varint()?;
                }
            }
            Some(StdType::Dict) => out.server_key = decode_dict(&mut r)?,
            Some(StdType::IntArray) => {
                for _ in 0..layout.array_len[t as usize] {
                    r.varint()?;
                }
            }
            Some(StdType::FreqArray) => {
                for _ in 0..u32::from(layout.array_len[t as usize]) * 3 {
                    r.varint()?;
                }
            }
            None => {}
        }
    }
    Ok(out)
}

fn decode_dict<'a>(r: &mut Reader<'a>) -> Result<Option<DictRef<'a>>, WireError> {
    let len = r.varint()?;
    if len == 0 {
        return Ok(None);
    }
    let mut d = Reader::new(r.bytes(len, "server key")?);
    let id = d.varint()?;
    if id == 0 {
        return Err(WireError::Handshake("server key with dictionary id 0"));
    }
    if d.is_empty() {
        return Ok(Some(DictRef { id, value: None }));
    }
    let n = d.varint()?;
    let value = d.bytes(n, "server key value")?;
    if !d.is_empty() {
        return Err(WireError::Trailing("server key"));
    }
    Ok(Some(DictRef {
        id,
        value: Some(value),
    }))
}

/// Appends a stick-table message: header, varint length, body.
pub fn put_table_message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(class::STICKTABLE);
    out.push(kind);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Appends a control message.
pub fn put_control(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&[class::CONTROL, kind]);
}

/// Appends a table definition declaring `server_id` and `server_key` (what HAProxy 2.6 stores
/// for `stick` rules), binary keys of `key_len` bytes.
pub fn put_define(out: &mut Vec<u8>, table_id: u64, name: &str, key_len: usize, expire_ms: u64) {
    let mut body = Vec::with_capacity(16 + name.len());
    put_varint(&mut body, table_id);
    put_varint(&mut body, name.len() as u64);
    body.extend_from_slice(name.as_bytes());
    put_varint(&mut body, key_type::BIN);
    put_varint(&mut body, key_len as u64);
    put_varint(
        &mut body,
        (1 << data_type::SERVER_ID) | (1 << data_type::SERVER_KEY),
    );
    put_varint(&mut body, expire_ms);
    put_table_message(out, stkt::DEFINE, &body);
}

/// Appends an update for a table declared by [`put_define`]: `id` (always sent, so the
/// receiver's count never drifts), the key, `server_id`, and `server_key` in full under
/// dictionary slot `dict_id` (1..=128).
pub fn put_update(
    out: &mut Vec<u8>,
    id: u32,
    expire_ms: Option<u32>,
    key: &[u8],
    server_id: u32,
    server_key: &str,
    dict_id: u64,
) {
    let mut body = Vec::with_capacity(16 + key.len() + server_key.len());
    body.extend_from_slice(&id.to_be_bytes());
    if let Some(e) = expire_ms {
        body.extend_from_slice(&e.to_be_bytes());
    }
    body.extend_from_slice(key);
    put_varint(&mut body, u64::from(server_id));
    let mut dict = Vec::with_capacity(4 + server_key.len());
    put_varint(&mut dict, dict_id);
    put_varint(&mut dict, server_key.len() as u64);
    dict.extend_from_slice(server_key.as_bytes());
    put_varint(&mut body, dict.len() as u64);
    body.extend_from_slice(&dict);
    let kind = if expire_ms.is_some() {
        stkt::UPDATE_TIMED
    } else {
        stkt::UPDATE
    };
    put_table_message(out, kind, &body);
}

/// Appends an acknowledgement of updates up to `update` in the sender's table `table_id`.
pub fn put_ack(out: &mut Vec<u8>, table_id: u64, update: u32) {
    let mut body = Vec::with_capacity(9);
    put_varint(&mut body, table_id);
    body.extend_from_slice(&update.to_be_bytes());
    put_table_message(out, stkt::ACK, &body);
}

/// The first line pair a connecting peer sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Protocol version (major, minor).
    pub version: (u32, u32),
    /// The name the sender believes we have.
    pub remote: &'a str,
    /// The sender's own name.
    pub local: &'a str,
    /// The sender's process id (third line; 0 when it sent none that parses). A new process
    /// lets in a hello under its own name only from the process it took over from.
    pub pid: u32,
}

impl fmt::Display for Hello<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PROTO_NAME} {}.{}\n{}\n{} {} 1\n",
            self.version.0, self.version.1, self.remote, self.local, self.pid
        )
    }
}

/// Takes one `\n`-terminated line off `input`: `Ok(None)` when incomplete.
pub fn take_line(input: &[u8]) -> Result<Option<(&str, usize)>, WireError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) if i < MAX_LINE => std::str::from_utf8(&input[..i])
            .map(|s| Some((s.trim_end_matches('\r'), i + 1)))
            .map_err(|_| WireError::Handshake("line is not UTF-8")),
        Some(_) => Err(WireError::LineTooLong),
        None if input.len() >= MAX_LINE => Err(WireError::LineTooLong),
        None => Ok(None),
    }
}

/// Parses the three hello lines, `Ok(None)` when incomplete.
pub fn decode_hello(input: &[u8]) -> Result<Option<(Hello<'_>, usize)>, WireError> {
    let Some((l1, n1)) = take_line(input)? else {
        return Ok(None);
    };
    let version = l1
        .strip_prefix(PROTO_NAME)
        .and_then(|v| v.strip_prefix(' '))
        .ok_or(WireError::Handshake("not a peers hello"))?;
    let (maj, min) = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or(WireError::Handshake("bad version"))?;
    let Some((remote, n2)) = take_line(&input[n1..])? else {
        return Ok(None);
    };
    let Some((l3, n3)) = take_line(&input[n1 + n2..])? else {
        return Ok(None);
    };
    let (local, rest) = l3
        .split_once(' ')
        .ok_or(WireError::Handshake("third line has no pid"))?;
    let pid = rest
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok(Some((
        Hello {
            version: (maj, min),
            remote,
            local,
            pid,
        },
        n1 + n2 + n3,
    )))
}

/// Parses the status line, `Ok(None)` when incomplete.
pub fn decode_status(input: &[u8]) -> Result<Option<(u16, usize)>, WireError> {
    let Some((line, n)) = take_line(input)? else {
        return Ok(None);
    };
    let code = line
        .trim()
        .parse()
        .map_err(|_| WireError::Handshake("status is not a number"))?;
    Ok(Some((code, n)))
}

#[cfg(test)]
mod tests;
