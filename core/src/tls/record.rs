//! The TLS record layer, and reassembly of the first handshake message of a stream.
//!
//! A ClientHello may be cut into records of any size (anti-DPI clients send 1-byte records,
//! post-quantum hellos need two TCP segments) and those records may be cut at any byte by TCP.
//! `FirstMessage` walks the growing client stream once, copying handshake fragments into a
//! scratch buffer only when the message spans records, and gives up past a byte cap.

use super::Malformed;
use crate::progress::Progress;

/// Record content type: change_cipher_spec.
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
/// Record content type: alert.
pub const ALERT: u8 = 0x15;
/// Record content type: handshake.
pub const HANDSHAKE: u8 = 0x16;
/// Record content type: application_data.
pub const APPLICATION_DATA: u8 = 0x17;

/// Size of a record header: type, version, length.
pub const HEADER_LEN: usize = 5;
/// Largest plaintext record payload (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 16384;
/// Largest ciphertext record payload we tolerate while skipping (RFC 5246 §6.2.3).
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 2048;

/// Handshake message type: ClientHello.
pub const CLIENT_HELLO: u8 = 1;
/// Handshake message type: ServerHello (and HelloRetryRequest).
pub const SERVER_HELLO: u8 = 2;
/// Handshake message type: NewSessionTicket.
pub const NEW_SESSION_TICKET: u8 = 4;
/// Handshake message type: EncryptedExtensions (TLS 1.3, encrypted).
pub const ENCRYPTED_EXTENSIONS: u8 = 8;
/// Handshake message type: Certificate.
pub const CERTIFICATE: u8 = 11;
/// Handshake message type: ServerKeyExchange (TLS ≤ 1.2).
pub const SERVER_KEY_EXCHANGE: u8 = 12;
/// Handshake message type: ServerHelloDone (TLS ≤ 1.2).
pub const SERVER_HELLO_DONE: u8 = 14;
/// Handshake message type: CertificateVerify.
pub const CERTIFICATE_VERIFY: u8 = 15;
/// Handshake message type: ClientKeyExchange (TLS ≤ 1.2).
pub const CLIENT_KEY_EXCHANGE: u8 = 16;
/// Handshake message type: Finished.
pub const FINISHED: u8 = 20;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Content type (handshake, alert, ...).
    pub typ: u8,
    /// Record-layer version; only its major byte (3) is meaningful.
    pub version: u16,
    /// Payload length.
    pub len: usize,
}

impl RecordHeader {
    /// Decodes the 5 header bytes.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Self {
        Self {
            typ: h[0],
            version: u16::from_be_bytes([h[1], h[2]]),
            len: usize::from(u16::from_be_bytes([h[3], h[4]])),
        }
    }

    /// Checks a header that must carry handshake bytes.
    pub fn check_handshake(&self) -> Result<(), Malformed> {
        if self.typ != HANDSHAKE {
            return Err(Malformed::UnexpectedRecord(self.typ));
        }
        if self.version >> 8 != 3 {
            return Err(Malformed::RecordVersion(self.version));
        }
        if self.len == 0 {
            return Err(Malformed::EmptyRecord);
        }
        if self.len > MAX_PLAINTEXT {
            return Err(Malformed::RecordOverflow(self.len));
        }
        Ok(())
    }
}

/// Decodes a 4-byte handshake header into (message type, body length).
#[inline]
pub(crate) fn handshake_header(h: &[u8]) -> Option<(u8, usize)> {
    let mut r = super::reader::Reader::new(h);
    Some((r.u8().ok()?, r.u24().ok()? as usize))
}

/// What a [`FirstMessage`] walk decided (it says [`Progress::NeedMore`] while the stream ends
/// before the message does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assembly {
    /// The whole message (header included) is in the scratch buffer.
    Complete,
    /// The message or the stream walked for it exceeds the cap.
    TooLarge,
    /// The records themselves are invalid.
    Malformed(Malformed),
}

/// Incremental reassembly of the first handshake message from a client stream that only grows.
///
/// Each call resumes where the previous one stopped, so calling again with a longer stream
/// costs only the new bytes. A stream shorter than what was already walked restarts the walk.
#[derive(Debug, Default)]
pub(crate) struct FirstMessage {
    /// Handshake bytes collected so far (message header included).
    pub(crate) scratch: Vec<u8>,
    /// Stream bytes walked so far.
    consumed: usize,
    /// Payload bytes left in the record being walked.
    record_left: usize,
    /// Set once the walk reached a verdict; later calls repeat it.
    verdict: Option<Assembly>,
}

impl FirstMessage {
    /// Forgets everything walked so far.
    pub(crate) fn reset(&mut self) {
        self.scratch.clear();
        self.consumed = 0;
        self.record_left = 0;
        self.verdict = None;
    }

    /// Walks `stream` from where it stopped, expecting handshake type `want`.
    pub(crate) fn advance(&mut self, stream: &[u8], want: u8, cap: usize) -> Progress<Assembly> {
        if stream.len() < self.consumed {
            self.reset();
        }
        if let Some(v) = self.verdict {
            return Progress::Done(v);
        }
        let v = self.walk(stream, want, cap);
        if let Progress::Done(v) = v {
            self.verdict = Some(v);
        }
        v
    }

    fn needed(&self) -> usize {
        match handshake_header(&self.scratch) {
            Some((_, len)) => 4 + len,
            None => 4,
        }
    }

    fn walk(&mut self, stream: &[u8], want: u8, cap: usize) -> Progress<Assembly> {
        loop {
            if self.consumed > cap {
                return Progress::Done(Assembly::TooLarge);
            }
            if self.record_left == 0 {
                let Some(h) = stream
                    .get(self.consumed..self.consumed + HEADER_LEN)
                    .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
                else {
                    return Progress::NeedMore;
                };
                let header = RecordHeader::decode(h);
                if let Err(e) = header.check_handshake() {
                    return Progress::Done(Assembly::Malformed(e));
                }
                self.consumed += HEADER_LEN;
                self.record_left = header.len;
                continue;
            }
            let avail = stream.get(self.consumed..).unwrap_or(&[]);
            if avail.is_empty() {
                return Progress::NeedMore;
            }
            let before = self.scratch.len() < 4;
            let n = avail
                .len()
                .min(self.record_left)
                .min(self.needed() - self.scratch.len());
            self.scratch.extend_from_slice(&avail[..n]);
            self.consumed += n;
            self.record_left -= n;
            if before && self.scratch.len() >= 4 {
                if self.scratch[0] != want {
                    return Progress::Done(Assembly::Malformed(Malformed::UnexpectedHandshake(
                        self.scratch[0],
                    )));
                }
                if self.needed() > cap {
                    return Progress::Done(Assembly::TooLarge);
                }
            }
            if self.scratch.len() >= 4 && self.scratch.len() == self.needed() {
                return Progress::Done(Assembly::Complete);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![HANDSHAKE, 3, 1];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn reassembles_across_records_and_partial_streams() {
        let msg = [1u8, 0, 0, 3, 0xa, 0xb, 0xc];
        let mut stream = Vec::new();
        for b in msg {
            stream.extend(rec(&[b]));
        }
        let mut fm = FirstMessage::default();
        for end in 0..stream.len() {
            assert_eq!(fm.advance(&stream[..end], 1, 1000), Progress::NeedMore);
        }
        assert_eq!(
            fm.advance(&stream, 1, 1000),
            Progress::Done(Assembly::Complete)
        );
        assert_eq!(fm.scratch, msg);
    }

    #[test]
    fn interleaved_alert_and_cap_are_reported() {
        let mut stream = rec(&[1, 0, 0, 9, 0]);
        stream.extend([ALERT, 3, 3, 0, 2, 2, 40]);
        let mut fm = FirstMessage::default();
        assert_eq!(
            fm.advance(&stream, 1, 1000),
            Progress::Done(Assembly::Malformed(Malformed::UnexpectedRecord(ALERT)))
        );
        let mut fm = FirstMessage::default();
        assert_eq!(
            fm.advance(&rec(&[1, 0, 4, 0]), 1, 1000),
            Progress::Done(Assembly::TooLarge)
        );
    }
}
