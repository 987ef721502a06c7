//! Small value types of the TLS wire: protocol versions and legacy session IDs.

use std::fmt;

/// A TLS protocol version as it appears on the wire (`0x0303` = TLS 1.2).
///
/// Kept as the raw u16 so unknown and GREASE values survive parsing and can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion(pub u16);

impl ProtocolVersion {
    /// SSL 3.0, still seen as a record-layer version.
    pub const SSL3_0: Self = Self(0x0300);
    /// TLS 1.0 (RFC 2246).
    pub const TLS1_0: Self = Self(0x0301);
    /// TLS 1.1 (RFC 4346).
    pub const TLS1_1: Self = Self(0x0302);
    /// TLS 1.2 (RFC 5246).
    pub const TLS1_2: Self = Self(0x0303);
    /// TLS 1.3 (RFC 8446); only ever negotiated through supported_versions.
    pub const TLS1_3: Self = Self(0x0304);
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SSL3_0 => f.write_str("SSLv3"),
            Self::TLS1_0 => f.write_str("TLSv1.0"),
            Self::TLS1_1 => f.write_str("TLSv1.1"),
            Self::TLS1_2 => f.write_str("TLSv1.2"),
            Self::TLS1_3 => f.write_str("TLSv1.3"),
            Self(v) => write!(f, "{v:#06x}"),
        }
    }
}

/// A legacy session ID, owned and `Copy` so it can outlive the bytes it was parsed from
/// (the server flight is parsed from transient chunks; stick-table keys are built from it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    len: u8,
    bytes: [u8; 32],
}

impl SessionId {
    /// The longest session ID the protocol allows.
    pub const MAX_LEN: usize = 32;

    /// The empty session ID (what a TLS 1.2 ticket-issuing server sends).
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; 32],
    };

    /// Copies `id`; `None` if it is longer than 32 bytes, so an invalid ID cannot exist.
    pub fn from_slice(id: &[u8]) -> Option<Self> {
        if id.len() > Self::MAX_LEN {
            return None;
        }
        let mut bytes = [0u8; 32];
        bytes[..id.len()].copy_from_slice(id);
        Some(Self {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The ID bytes, as they were on the wire.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True for the empty ID, which carries no affinity information.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bytes in the ID.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn session_id_round_trips_up_to_32(id in proptest::collection::vec(any::<u8>(), 0..40)) {
            match SessionId::from_slice(&id) {
                Some(s) => {
                    prop_assert!(id.len() <= 32);
                    prop_assert_eq!(s.as_slice(), &id[..]);
                    prop_assert_eq!(s.is_empty(), id.is_empty());
                }
                None => prop_assert!(id.len() > 32),
            }
        }
    }

    #[test]
    fn version_display_names_known_versions() {
        assert_eq!(ProtocolVersion::TLS1_3.to_string(), "TLSv1.3");
        assert_eq!(ProtocolVersion(0x7a7a).to_string(), "0x7a7a");
    }
}
