//! The ServerHello: what the server decided (version, cipher, session ID echo, PSK accepted,
//! ticket promised), owned so it outlives the chunk it came from.

use super::extension::{self, SeenTypes};
use super::reader::{Reader, U16, U8};
use super::{Malformed, ProtocolVersion, SessionId};

/// The fixed `random` of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// The facts of a ServerHello that affinity learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHelloInfo {
    /// `legacy_version` (0x0303 for TLS 1.3 servers).
    pub legacy_version: ProtocolVersion,
    /// The session ID: new (full handshake), echoed (resumed), empty, or TLS 1.3 noise.
    pub session_id: SessionId,
    /// The selected cipher suite.
    pub cipher: u16,
    /// The version actually negotiated: supported_versions if present, else `legacy_version`.
    pub negotiated: ProtocolVersion,
    /// True if this is a HelloRetryRequest, not a real ServerHello.
    pub hello_retry_request: bool,
    /// TLS 1.3: index of the client PSK identity the server accepted.
    pub psk_selected: Option<u16>,
    /// TLS ≤ 1.2: the server will send a NewSessionTicket.
    pub session_ticket_ext: bool,
}

impl ServerHelloInfo {
    /// Parses a ServerHello handshake body (after the 4-byte handshake header).
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let legacy_version = ProtocolVersion(r.u16()?);
        let random = r.array::<32>()?;
        let sid = r.vec::<U8>()?;
        let session_id =
            SessionId::from_slice(sid).ok_or(Malformed::SessionIdTooLong(sid.len()))?;
        let cipher = r.u16()?;
        let _compression = r.u8()?;
        let mut info = Self {
            legacy_version,
            session_id,
            cipher,
            negotiated: legacy_version,
            hello_retry_request: *random == HELLO_RETRY_REQUEST_RANDOM,
            psk_selected: None,
            session_ticket_ext: false,
        };
        if !r.any_left() {
            return Ok(info);
        }
        let mut exts = r.sub::<U16>()?;
        r.expect_end()?;
        let mut seen = SeenTypes::new();
        while exts.any_left() {
            let typ = exts.u16()?;
            let data = exts.vec::<U16>()?;
            seen.insert(typ)?;
            let bad = Malformed::BadExtension(typ);
            match typ {
                extension::SUPPORTED_VERSIONS => {
                    let v: &[u8; 2] = data.try_into().map_err(|_| bad)?;
                    info.negotiated = ProtocolVersion(u16::from_be_bytes(*v));
                }
                extension::PRE_SHARED_KEY => {
                    let v: &[u8; 2] = data.try_into().map_err(|_| bad)?;
                    info.psk_selected = Some(u16::from_be_bytes(*v));
                }
                extension::SESSION_TICKET => {
                    if !data.is_empty() {
                        return Err(bad);
                    }
                    info.session_ticket_ext = true;
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// True if TLS 1.3 was negotiated: everything after this message is encrypted.
    pub fn is_tls13(&self) -> bool {
        self.negotiated == ProtocolVersion::TLS1_3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn hrr_random_is_sha256_of_its_name() {
        let digest = Sha256::digest(b"HelloRetryRequest");
        assert_eq!(digest.as_slice(), &HELLO_RETRY_REQUEST_RANDOM[..]);
    }

    #[test]
    fn minimal_tls12_hello_without_extensions() {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.extend([2, 0xaa, 0xbb, 0xc0, 0x2f, 0]);
        let info = ServerHelloInfo::parse(&body).unwrap();
        assert_eq!(info.session_id.as_slice(), &[0xaa, 0xbb]);
        assert_eq!(info.cipher, 0xc02f);
        assert_eq!(info.negotiated, ProtocolVersion::TLS1_2);
        assert!(!info.hello_retry_request && !info.is_tls13());
        body.push(0);
        assert_eq!(ServerHelloInfo::parse(&body), Err(Malformed::Truncated));
    }
}
