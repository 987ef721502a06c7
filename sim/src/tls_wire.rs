//! TLS framing shared by the client and server models beyond what `tether_core::tls::encode`
//! writes: the stand-in encrypted records, filler bytes, and the readers the models answer with.
//!
//! The models exchange real TLS framing with realistic sizes so that a balancer in the middle
//! sees exactly what it would see in production (record boundaries, ClientHello and ServerHello
//! fields, cleartext TLS 1.2 NewSessionTicket). Nothing is encrypted: "encrypted" records carry
//! their TLS 1.3 inner plaintext followed by a 16-byte stand-in for the AEAD tag, so the models
//! can read them back while a balancer only sees opaque application-data records.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use tether_core::tls::encode::push_record_header;
use tether_core::tls::record::{APPLICATION_DATA, MAX_PLAINTEXT};
use tether_core::tls::ProtocolVersion;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the stand-in AEAD tag appended to every "encrypted" record.
pub const TAG_LEN: usize = 16;
/// Largest record the models accept (plaintext + expansion allowed by RFC 8446).
pub const MAX_RECORD: usize = MAX_PLAINTEXT + 256;
/// The record-layer version of every model record but the ClientHello's (0x0301).
pub const RECORD_VERSION: ProtocolVersion = ProtocolVersion::TLS1_2;

/// Why a peer's bytes could not be understood by a model.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The transport failed or closed early.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// The peer sent something the model does not expect.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Appends an "encrypted" record: TLS 1.3 inner plaintext (`body`, inner type) plus a tag.
pub fn push_encrypted(out: &mut Vec<u8>, outer_type: u8, inner_type: u8, body: &[u8]) {
    for chunk in body.chunks(MAX_PLAINTEXT - 1) {
        push_encrypted_header(out, outer_type, chunk.len());
        out.extend_from_slice(chunk);
        push_encrypted_trailer(out, inner_type);
    }
}

/// Appends one "encrypted" record whose plaintext is `len` copies of `byte` (at most
/// `MAX_PLAINTEXT - 1`), written in place: bulk responses need no plaintext buffer of their own.
pub fn push_encrypted_fill(
    out: &mut Vec<u8>,
    outer_type: u8,
    inner_type: u8,
    byte: u8,
    len: usize,
) {
    debug_assert!(len < MAX_PLAINTEXT, "one record at most");
    out.reserve(5 + len + 1 + TAG_LEN);
    push_encrypted_header(out, outer_type, len);
    out.resize(out.len() + len, byte);
    push_encrypted_trailer(out, inner_type);
}

/// An "encrypted" application-data record of `len` bytes of `0x5a`, shared: every response of
/// one size is the same record, so a server sends it without filling a buffer per connection.
/// Up to [`SHARED_RECORDS`] sizes are kept per thread (fleets use a handful); others are built.
pub fn response_record(len: usize) -> Rc<[u8]> {
    let build = || {
        let mut out = Vec::with_capacity(5 + len + 1 + TAG_LEN);
        push_encrypted_fill(&mut out, APPLICATION_DATA, APPLICATION_DATA, 0x5a, len);
        Rc::<[u8]>::from(out)
    };
    RECORDS_KEPT.with_borrow_mut(|cache| {
        if let Some((_, record)) = cache.iter().find(|(n, _)| *n == len) {
            return record.clone();
        }
        let record = build();
        if cache.len() < SHARED_RECORDS {
            cache.push((len, record.clone()));
        }
        record
    })
}

/// How many response sizes [`response_record`] keeps per thread.
pub const SHARED_RECORDS: usize = 16;

thread_local! {
    /// [`response_record`]'s records by plaintext length.
    static RECORDS_KEPT: RefCell<Vec<(usize, Rc<[u8]>)>> = const { RefCell::new(Vec::new()) };
}

fn push_encrypted_header(out: &mut Vec<u8>, outer_type: u8, plaintext_len: usize) {
    push_record_header(out, outer_type, RECORD_VERSION, plaintext_len + 1 + TAG_LEN);
}

fn push_encrypted_trailer(out: &mut Vec<u8>, inner_type: u8) {
    out.push(inner_type);
    out.extend_from_slice(&[0xAE; TAG_LEN]);
}

/// Splits an "encrypted" record body back into (inner type, plaintext).
pub fn open_encrypted(body: &[u8]) -> Result<(u8, &[u8]), WireError> {
    let without_tag = body
        .len()
        .checked_sub(TAG_LEN + 1)
        .ok_or(WireError::Malformed("encrypted record"))?;
    Ok((body[without_tag], &body[..without_tag]))
}

/// Deterministic filler bytes standing in for keys, signatures and certificates.
///
/// Every connection sends the same stand-in certificate, key shares and signatures: each is a
/// window of one table built at compile time, so a handshake neither computes nor allocates
/// them. `len` is at most [`FILLER_MAX`].
pub fn filler(len: usize, seed: u8) -> &'static [u8] {
    // Byte i is 31·i + seed (mod 256); 31 is odd, so that is 31·(i + 223·seed) and every
    // seed's bytes are one window of the same sequence, computed at compile time.
    let start = usize::from(seed.wrapping_mul(FILLER_SEED_STEP));
    &FILLER[start..start + len]
}

/// The longest filler the models ask for (a stand-in certificate is 1,500 bytes).
pub const FILLER_MAX: usize = 2048;
/// 31⁻¹ mod 256: a seed's offset into [`FILLER`].
const FILLER_SEED_STEP: u8 = 223;
/// 31·j mod 256 for every j a filler can start and end at.
static FILLER: [u8; 256 + FILLER_MAX] = {
    let mut bytes = [0u8; 256 + FILLER_MAX];
    let mut j = 0;
    while j < bytes.len() {
        bytes[j] = (j as u8).wrapping_mul(31);
        j += 1;
    }
    bytes
};

/// A bounds-checked cursor over borrowed bytes; every read fails instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u24.
    pub fn u24(&mut self, what: &'static str) -> Result<usize, WireError> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a u8 length prefix.
    pub fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u8(what)?);
        self.take(n, what)
    }

    /// A vector with a u16 length prefix.
    pub fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16(what)?);
        self.take(n, what)
    }

    /// Whether bytes remain.
    pub fn any_left(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// Walks an extensions block, yielding (type, data) pairs.
pub fn extensions(block: &[u8]) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut r = Reader::new(block);
    let mut out = Vec::new();
    while r.any_left() {
        let t = r.u16("extension type")?;
        let d = r.vec16("extension data")?;
        out.push((t, d));
    }
    Ok(out)
}

/// Reads one TLS record from `io`: (content type, body).
pub async fn read_record<R: AsyncRead + Unpin>(io: &mut R) -> Result<(u8, Vec<u8>), WireError> {
    let mut header = [0u8; 5];
    io.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD || header[1] != 0x03 {
        return Err(WireError::Malformed("record header"));
    }
    // Read into spare capacity: no zeroing of a buffer that is overwritten at once.
    let mut body = Vec::with_capacity(len);
    let mut rest = (&mut *io).take(len as u64);
    while body.len() < len {
        if rest.read_buf(&mut body).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok((header[0], body))
}

/// Reassembles handshake messages that may span records (and records that hold several).
#[derive(Debug, Default)]
pub struct HandshakeBuffer {
    pending: Vec<u8>,
}

impl HandshakeBuffer {
    /// Bounded: a model never needs more than this many buffered handshake bytes.
    const LIMIT: usize = 64 * 1024;

    /// Adds the plaintext of a handshake record.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        if self.pending.len() + bytes.len() > Self::LIMIT {
            return Err(WireError::Malformed("handshake too large"));
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete handshake message (type, body), if one is buffered.
    pub fn next_message(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.pending.len() < 4 {
            return None;
        }
        let len = usize::from(self.pending[1]) << 16
            | usize::from(self.pending[2]) << 8
            | usize::from(self.pending[3]);
        if self.pending.len() < 4 + len {
            return None;
        }
        let msg_type = self.pending[0];
        let body = self.pending[4..4 + len].to_vec();
        self.pending.drain(..4 + len);
        Some((msg_type, body))
    }

    /// Whether a partial message is still waiting for bytes.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tether_core::tls::encode::{push_change_cipher_spec, push_handshake, push_record};
    use tether_core::tls::record::{APPLICATION_DATA, FINISHED, HANDSHAKE, SERVER_HELLO_DONE};

    #[test]
    fn encrypted_round_trip() {
        let mut out = Vec::new();
        push_encrypted(&mut out, APPLICATION_DATA, HANDSHAKE, b"hello");
        assert_eq!(out.len(), 5 + 5 + 1 + TAG_LEN);
        let (inner, body) = open_encrypted(&out[5..]).unwrap();
        assert_eq!((inner, body), (HANDSHAKE, &b"hello"[..]));
    }

    #[test]
    fn filled_record_matches_the_general_one() {
        let mut general = Vec::new();
        push_encrypted(
            &mut general,
            APPLICATION_DATA,
            APPLICATION_DATA,
            &[0x5a; 1000],
        );
        let mut filled = Vec::new();
        push_encrypted_fill(&mut filled, APPLICATION_DATA, APPLICATION_DATA, 0x5a, 1000);
        assert_eq!(general, filled);
        assert_eq!(filler(3, 0), [0, 31, 62]);
        for seed in 0..=255u8 {
            let expected: Vec<u8> = (0..FILLER_MAX)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect();
            assert_eq!(filler(FILLER_MAX, seed), &expected[..], "seed {seed}");
        }
    }

    #[test]
    fn response_records_are_shared_per_size_and_bounded() {
        let mut expected = Vec::new();
        push_encrypted_fill(
            &mut expected,
            APPLICATION_DATA,
            APPLICATION_DATA,
            0x5a,
            8000,
        );
        let (a, b) = (response_record(8000), response_record(8000));
        assert_eq!(a[..], expected[..]);
        assert!(Rc::ptr_eq(&a, &b), "one record per size");
        for len in 1..=2 * SHARED_RECORDS {
            let mut expected = Vec::new();
            push_encrypted_fill(&mut expected, APPLICATION_DATA, APPLICATION_DATA, 0x5a, len);
            assert_eq!(response_record(len)[..], expected[..], "len {len}");
        }
        let kept = RECORDS_KEPT.with_borrow(Vec::len);
        assert_eq!(kept, SHARED_RECORDS, "the cache stops growing");
    }

    #[tokio::test]
    async fn read_record_reads_exactly_one_record() {
        let mut wire = Vec::new();
        push_record(&mut wire, HANDSHAKE, RECORD_VERSION, b"abc");
        push_change_cipher_spec(&mut wire, RECORD_VERSION);
        let mut r = &wire[..];
        assert_eq!(
            read_record(&mut r).await.unwrap(),
            (HANDSHAKE, b"abc".to_vec())
        );
        assert_eq!(
            read_record(&mut r).await.unwrap(),
            (tether_core::tls::record::CHANGE_CIPHER_SPEC, vec![1])
        );
        let mut short = &wire[..6];
        assert!(read_record(&mut short).await.is_err());
    }

    #[test]
    fn handshake_buffer_reassembles_across_pushes() {
        let mut msg = Vec::new();
        push_handshake(&mut msg, FINISHED, &[7; 12]);
        push_handshake(&mut msg, SERVER_HELLO_DONE, &[]);
        let mut hb = HandshakeBuffer::default();
        hb.push(&msg[..3]).unwrap();
        assert!(hb.next_message().is_none());
        hb.push(&msg[3..]).unwrap();
        assert_eq!(hb.next_message(), Some((FINISHED, vec![7; 12])));
        assert_eq!(hb.next_message(), Some((SERVER_HELLO_DONE, vec![])));
        assert!(hb.is_empty());
    }

    proptest! {
        #[test]
        fn reader_and_extensions_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = extensions(&buf);
            let _ = open_encrypted(&buf);
            let mut r = Reader::new(&buf);
            let _ = r.vec8("a").and_then(|_| r.vec16("b")).and_then(|_| r.u24("c"));
        }
    }
}
