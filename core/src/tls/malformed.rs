//! Why a TLS byte stream was rejected.
//!
//! One enum of reasons, shared by every parser in `tls/`, so the engine can log and count
//! rejections by cause without string matching.

use thiserror::Error;

/// The reason a ClientHello, ServerHello or server flight could not be parsed.
///
/// Exists so that hostile or broken input ends in a typed, loggable verdict instead of a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum Malformed {
    /// A length field points past the end of the structure that encloses it.
    #[error("a length field runs past the end of its enclosing structure")]
    Truncated,
    /// Bytes are left over after a structure that should have filled its container.
    #[error("unexpected bytes after the end of a structure")]
    TrailingBytes,
    /// A record header announces more than the protocol allows.
    #[error("record of {0} bytes exceeds the TLS limit")]
    RecordOverflow(usize),
    /// A handshake record with no payload (forbidden by RFC 8446 §5.1).
    #[error("empty handshake record")]
    EmptyRecord,
    /// A record header whose major version is not 3.
    #[error("record version {0:#06x} is not SSLv3/TLS")]
    RecordVersion(u16),
    /// A non-handshake record arrived where a handshake message was being reassembled.
    #[error("record type {0} interleaved with a handshake message")]
    UnexpectedRecord(u8),
    /// The first server record is not a handshake record.
    #[error("server stream does not start with a handshake record (type {0})")]
    NotHandshake(u8),
    /// The handshake message is not the one expected at this point.
    #[error("unexpected handshake message type {0}")]
    UnexpectedHandshake(u8),
    /// A legacy session ID longer than 32 bytes.
    #[error("session id of {0} bytes (max 32)")]
    SessionIdTooLong(usize),
    /// The cipher suite list is empty or has an odd length.
    #[error("cipher suite list empty or of odd length")]
    CipherSuites,
    /// The compression method list is empty.
    #[error("compression method list empty")]
    Compression,
    /// The same extension type appears twice (RFC 8446 §4.2).
    #[error("duplicate extension {0:#06x}")]
    DuplicateExtension(u16),
    /// pre_shared_key is not the last ClientHello extension (RFC 8446 §4.2.11).
    #[error("pre_shared_key is not the last extension")]
    PskNotLast,
    /// An extension whose body does not follow its RFC layout.
    #[error("extension {0:#06x} has a malformed body")]
    BadExtension(u16),
    /// A message the parser must retain is larger than its configured cap.
    #[error("message of {0} bytes exceeds the cap")]
    MessageTooLarge(usize),
    /// The server flight ran past the configured number of examined bytes.
    #[error("server flight exceeds the examined-bytes cap")]
    FlightTooLarge,
}
