//! The ClientHello: a borrowed, validated view of the fields affinity needs, and
//! [`ClientHelloParser`], which finds it in the raw client stream.
//!
//! Parsing follows httparse: hand over everything received so far and get back
//! [`Progress::NeedMore`] or a [`HelloOutcome`]. A hello that fits its first record (the common case)
//! is parsed in place without allocating; a hello spread over records is reassembled once.

use super::extension::{self, Extension, Extensions, SeenTypes};
use super::reader::{Reader, U16, U8};
use super::record::{self, Assembly, FirstMessage, RecordHeader, HEADER_LEN};
use super::{Malformed, ProtocolVersion};
use crate::progress::Progress;

/// Default cap on the ClientHello (and on the client bytes walked to find it): 16 KiB.
pub const DEFAULT_HELLO_CAP: usize = 16 * 1024;

/// The session_ticket extension as the client sent it (RFC 5077 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketExt<'a> {
    /// The client does not support tickets.
    Absent,
    /// The client supports tickets but has none: a full handshake is coming.
    Empty,
    /// The client presents a ticket to resume with.
    Ticket(&'a [u8]),
}

/// A parsed ClientHello, borrowing from the client stream or the parser's scratch buffer.
///
/// Every extension tether reads is validated at parse time, so the accessors cannot fail.
#[derive(Debug, Clone)]
pub struct ClientHello<'a> {
    legacy_version: ProtocolVersion,
    random: &'a [u8; 32],
    session_id: &'a [u8],
    cipher_suites: &'a [u8],
    compression: &'a [u8],
    extensions: &'a [u8],
    server_name: Option<&'a [u8]>,
    alpn: &'a [u8],
    session_ticket: TicketExt<'a>,
    supported_versions: &'a [u8],
    psk_identities: &'a [u8],
    key_shares: &'a [u8],
    ech: bool,
}

impl<'a> ClientHello<'a> {
    /// Parses a ClientHello handshake body (after the 4-byte handshake header).
    #[inline]
    pub fn parse(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let legacy_version = ProtocolVersion(r.u16()?);
        let random = r.array::<32>()?;
        let session_id = r.vec::<U8>()?;
        if session_id.len() > 32 {
            return Err(Malformed::SessionIdTooLong(session_id.len()));
        }
        let cipher_suites = r.vec::<U16>()?;
        if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
            return Err(Malformed::CipherSuites);
        }
        let compression = r.vec::<U8>()?;
        if compression.is_empty() {
            return Err(Malformed::Compression);
        }
        let mut hello = Self {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression,
            extensions: &[],
            server_name: None,
            alpn: &[],
            session_ticket: TicketExt::Absent,
            supported_versions: &[],
            psk_identities: &[],
            key_shares: &[],
            ech: false,
        };
        if !r.any_left() {
            return Ok(hello);
        }
        hello.extensions = r.vec::<U16>()?;
        r.expect_end()?;
        hello.read_extensions()?;
        Ok(hello)
    }

    #[inline]
    fn read_extensions(&mut self) -> Result<(), Malformed> {
        let mut seen = SeenTypes::new();
        let mut rest = self.extensions;
        // Hot loop: slice patterns instead of Reader calls, one bounds check per extension.
        while let [t0, t1, l0, l1, tail @ ..] = rest {
            let typ = u16::from_be_bytes([*t0, *t1]);
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            let (data, next) = tail.split_at_checked(len).ok_or(Malformed::Truncated)?;
            rest = next;
            seen.insert(typ)?;
            let bad = Malformed::BadExtension(typ);
            match typ {
                extension::SERVER_NAME => self.server_name = Some(server_name(data).ok_or(bad)?),
                extension::ALPN => self.alpn = alpn(data).ok_or(bad)?,
                extension::SESSION_TICKET => {
                    self.session_ticket = if data.is_empty() {
                        TicketExt::Empty
                    } else {
                        TicketExt::Ticket(data)
                    }
                }
                extension::SUPPORTED_VERSIONS => {
                    self.supported_versions = supported_versions(data).ok_or(bad)?
                }
                extension::KEY_SHARE => self.key_shares = key_shares(data).ok_or(bad)?,
                extension::ENCRYPTED_CLIENT_HELLO => self.ech = true,
                extension::PRE_SHARED_KEY => {
                    self.psk_identities = psk_identities(data).ok_or(bad)?;
                    if !rest.is_empty() {
                        return Err(Malformed::PskNotLast);
                    }
                }
                _ => {}
            }
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed::Truncated)
        }
    }

    /// `legacy_version`: the highest version for pre-1.3 clients, 0x0303 for 1.3 clients.
    pub fn legacy_version(&self) -> ProtocolVersion {
        self.legacy_version
    }

    /// The 32-byte client random.
    pub fn random(&self) -> &'a [u8; 32] {
        self.random
    }

    /// The legacy session ID: a resumption key in TLS ≤ 1.2, random noise from TLS 1.3 clients.
    pub fn session_id(&self) -> &'a [u8] {
        self.session_id
    }

    /// Offered cipher suites, in client preference order.
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + 'a {
        self.cipher_suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    /// Offered compression methods.
    pub fn compression_methods(&self) -> &'a [u8] {
        self.compression
    }

    /// The first host_name of server_name, if any (the outer SNI when ECH is used).
    pub fn server_name(&self) -> Option<&'a [u8]> {
        self.server_name
    }

    /// Offered ALPN protocol names, in order.
    pub fn alpn(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        Items::<1, 0>::new(self.alpn)
    }

    /// The session_ticket extension: absent, empty (wants one) or carrying a ticket.
    pub fn session_ticket(&self) -> TicketExt<'a> {
        self.session_ticket
    }

    /// Versions listed in supported_versions (empty without the extension).
    pub fn supported_versions(&self) -> impl Iterator<Item = ProtocolVersion> + 'a {
        self.supported_versions
            .chunks_exact(2)
            .map(|c| ProtocolVersion(u16::from_be_bytes([c[0], c[1]])))
    }

    /// True if supported_versions offers TLS 1.3: the session ID is then not a resumption key.
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions()
            .any(|v| v == ProtocolVersion::TLS1_3)
    }

    /// TLS 1.3 PSK identities (the resumption tickets presented), in order.
    pub fn psk_identities(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        Items::<2, 4>::new(self.psk_identities)
    }

    /// True if encrypted_client_hello is present: only the outer SNI is then visible.
    pub fn has_ech(&self) -> bool {
        self.ech
    }

    /// Named groups of the key shares sent (0x11ec = X25519MLKEM768).
    pub fn key_share_groups(&self) -> impl Iterator<Item = u16> + 'a {
        let mut r = Reader::new(self.key_shares);
        std::iter::from_fn(move || {
            let group = r.u16().ok()?;
            r.vec::<U16>().ok()?;
            Some(group)
        })
    }

    /// All extensions in wire order, for logging and differential testing.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions::new(self.extensions)
    }

    /// The extension of type `typ`, if present.
    pub fn extension(&self, typ: u16) -> Option<Extension<'a>> {
        self.extensions().find(|e| e.typ == typ)
    }
}

/// Items of a list each prefixed by an `P`-byte length and followed by `S` bytes to skip
/// (ALPN names: 1/0; PSK identities: 2/4 for the obfuscated ticket age).
struct Items<'a, const P: usize, const S: usize> {
    r: Reader<'a>,
}

impl<'a, const P: usize, const S: usize> Items<'a, P, S> {
    fn new(list: &'a [u8]) -> Self {
        Self {
            r: Reader::new(list),
        }
    }
}

impl<'a, const P: usize, const S: usize> Iterator for Items<'a, P, S> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let item = if P == 1 {
            self.r.vec::<U8>().ok()?
        } else {
            self.r.vec::<U16>().ok()?
        };
        self.r.take(S).ok()?;
        Some(item)
    }
}

/// Checks a list of `P`-prefixed non-empty items followed by `S` bytes; returns item count.
fn check_items<const P: usize, const S: usize>(list: &[u8]) -> Option<usize> {
    let mut r = Reader::new(list);
    let mut n = 0;
    while r.any_left() {
        let item = if P == 1 {
            r.vec::<U8>().ok()?
        } else {
            r.vec::<U16>().ok()?
        };
        r.take(S).ok()?;
        if item.is_empty() {
            return None;
        }
        n += 1;
    }
    Some(n)
}

fn server_name(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let mut list = r.sub::<U16>().ok()?;
    r.expect_end().ok()?;
    let mut host = None;
    if !list.any_left() {
        return None;
    }
    while list.any_left() {
        let typ = list.u8().ok()?;
        let name = list.vec::<U16>().ok()?;
        if typ == 0 && host.is_none() {
            if name.is_empty() {
                return None;
            }
            host = Some(name);
        }
    }
    host
}

fn alpn(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec::<U16>().ok()?;
    r.expect_end().ok()?;
    (check_items::<1, 0>(list)? > 0).then_some(list)
}

fn supported_versions(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec::<U8>().ok()?;
    r.expect_end().ok()?;
    (!list.is_empty() && list.len() % 2 == 0).then_some(list)
}

fn key_shares(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec::<U16>().ok()?;
    r.expect_end().ok()?;
    let mut entries = Reader::new(list);
    while entries.any_left() {
        entries.u16().ok()?;
        if entries.vec::<U16>().ok()?.is_empty() {
            return None;
        }
    }
    Some(list)
}

fn psk_identities(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let identities = r.vec::<U16>().ok()?;
    let binders = r.vec::<U16>().ok()?;
    r.expect_end().ok()?;
    let n = check_items::<2, 4>(identities)?;
    let b = check_items::<1, 0>(binders)?;
    (n > 0 && n == b).then_some(identities)
}

/// What the client stream was found to hold (once [`ClientHelloParser::parse`] stops asking for
/// more bytes).
#[derive(Debug, Clone)]
pub enum HelloOutcome<'a> {
    /// A complete, valid ClientHello.
    Complete(ClientHello<'a>),
    /// The stream is not TLS (first byte is not a handshake record): forward it keyless at once.
    NotTls,
    /// An SSLv2-compatible hello: TLS, but without session ID semantics or extensions.
    SslV2,
    /// The hello, or the stream walked to find it, exceeds the cap.
    TooLarge,
    /// TLS framing, but broken.
    Malformed(Malformed),
}

/// Finds and parses the ClientHello in a client stream, across records and TCP segments.
///
/// Keeps a scratch buffer for hellos split over records, so one parser serves one connection.
#[derive(Debug)]
pub struct ClientHelloParser {
    cap: usize,
    spread: bool,
    assembly: FirstMessage,
}

impl ClientHelloParser {
    /// A parser that gives up (`TooLarge`) past `cap` bytes; see [`DEFAULT_HELLO_CAP`].
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            spread: false,
            assembly: FirstMessage::default(),
        }
    }

    /// Looks at `stream`, everything received from the client so far, and says what it holds.
    ///
    /// Call again with a longer stream after [`Progress::NeedMore`]; work already done is not
    /// repeated.
    #[inline]
    pub fn parse<'s>(&'s mut self, stream: &'s [u8]) -> Progress<HelloOutcome<'s>> {
        if !self.spread {
            match first_record(stream, self.cap) {
                FirstRecord::Decided(outcome) => return outcome,
                FirstRecord::Spread => self.spread = true,
            }
        }
        match self
            .assembly
            .advance(stream, record::CLIENT_HELLO, self.cap)
        {
            Progress::NeedMore => Progress::NeedMore,
            Progress::Done(Assembly::TooLarge) => Progress::Done(HelloOutcome::TooLarge),
            Progress::Done(Assembly::Malformed(e)) => Progress::Done(HelloOutcome::Malformed(e)),
            Progress::Done(Assembly::Complete) => {
                let msg: &'s [u8] = &self.assembly.scratch;
                Progress::Done(outcome(msg.get(4..).unwrap_or(&[])))
            }
        }
    }
}

impl Default for ClientHelloParser {
    fn default() -> Self {
        Self::new(DEFAULT_HELLO_CAP)
    }
}

enum FirstRecord<'a> {
    Decided(Progress<HelloOutcome<'a>>),
    /// The hello does not fit in the first record: reassemble.
    Spread,
}

#[inline]
fn outcome(body: &[u8]) -> HelloOutcome<'_> {
    match ClientHello::parse(body) {
        Ok(h) => HelloOutcome::Complete(h),
        Err(e) => HelloOutcome::Malformed(e),
    }
}

/// The fast path: decide from the first record alone when the hello fits in it.
#[inline]
fn first_record(stream: &[u8], cap: usize) -> FirstRecord<'_> {
    use FirstRecord::Decided;
    let Some(&b0) = stream.first() else {
        return Decided(Progress::NeedMore);
    };
    if b0 != record::HANDSHAKE {
        if b0 & 0x80 != 0 {
            return match stream.get(2) {
                None => Decided(Progress::NeedMore),
                Some(1) => Decided(Progress::Done(HelloOutcome::SslV2)),
                Some(_) => Decided(Progress::Done(HelloOutcome::NotTls)),
            };
        }
        return Decided(Progress::Done(HelloOutcome::NotTls));
    }
    match stream.get(1) {
        None => return Decided(Progress::NeedMore),
        Some(3) => {}
        Some(_) => return Decided(Progress::Done(HelloOutcome::NotTls)),
    }
    let Some(h) = stream
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
    else {
        return Decided(Progress::NeedMore);
    };
    let header = RecordHeader::decode(h);
    if let Err(e) = header.check_handshake() {
        return Decided(Progress::Done(HelloOutcome::Malformed(e)));
    }
    let end = stream.len().min(HEADER_LEN + header.len);
    let payload = &stream[HEADER_LEN..end];
    let Some((typ, body_len)) = record::handshake_header(payload) else {
        return if header.len < 4 {
            FirstRecord::Spread
        } else {
            Decided(Progress::NeedMore)
        };
    };
    if typ != record::CLIENT_HELLO {
        return Decided(Progress::Done(HelloOutcome::Malformed(
            Malformed::UnexpectedHandshake(typ),
        )));
    }
    let msg_len = 4 + body_len;
    if msg_len > cap {
        return Decided(Progress::Done(HelloOutcome::TooLarge));
    }
    if msg_len > header.len {
        return FirstRecord::Spread;
    }
    match payload.get(4..msg_len) {
        Some(body) => Decided(Progress::Done(outcome(body))),
        None => Decided(Progress::NeedMore),
    }
}
