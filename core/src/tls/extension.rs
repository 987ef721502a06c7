//! Hello extensions: the type codes tether reads, and a validated walk over an extension block
//! that rejects duplicates (RFC 8446 §4.2) without allocating for ordinary hellos.

use super::reader::Reader;
use super::Malformed;

/// server_name (RFC 6066).
pub const SERVER_NAME: u16 = 0x0000;
/// supported_groups (RFC 8422, RFC 8446).
pub const SUPPORTED_GROUPS: u16 = 0x000a;
/// signature_algorithms (RFC 8446).
pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
/// application_layer_protocol_negotiation (RFC 7301).
pub const ALPN: u16 = 0x0010;
/// extended_master_secret (RFC 7627).
pub const EXTENDED_MASTER_SECRET: u16 = 0x0017;
/// padding (RFC 7685), which some clients add to move a hello out of a size range.
pub const PADDING: u16 = 0x0015;
/// SessionTicket (RFC 5077).
pub const SESSION_TICKET: u16 = 0x0023;
/// pre_shared_key (RFC 8446).
pub const PRE_SHARED_KEY: u16 = 0x0029;
/// supported_versions (RFC 8446).
pub const SUPPORTED_VERSIONS: u16 = 0x002b;
/// psk_key_exchange_modes (RFC 8446).
pub const PSK_KEY_EXCHANGE_MODES: u16 = 0x002d;
/// key_share (RFC 8446).
pub const KEY_SHARE: u16 = 0x0033;
/// encrypted_client_hello (draft-ietf-tls-esni).
pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// renegotiation_info (RFC 5746).
pub const RENEGOTIATION_INFO: u16 = 0xff01;

/// One extension as found in a hello: its type and its still-encoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension type code.
    pub typ: u16,
    /// The extension body, without the type and length.
    pub data: &'a [u8],
}

/// Iterates over an extension block that was validated when the hello was parsed.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    r: Reader<'a>,
}

impl<'a> Extensions<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Self {
        Self {
            r: Reader::new(block),
        }
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Extension<'a>;
    fn next(&mut self) -> Option<Extension<'a>> {
        let typ = self.r.u16().ok()?;
        let data = self.r.vec::<super::reader::U16>().ok()?;
        Some(Extension { typ, data })
    }
}

/// Remembers which extension types were seen, to reject duplicates. Ordinary hellos carry
/// fewer than [`SeenTypes::INLINE`] extensions and stay on the stack; a hostile hello with
/// thousands of empty extensions falls back to a 8 KiB bitmap, keeping the check linear.
pub(crate) struct SeenTypes {
    /// Types below 64 (nearly all real extensions) as bits.
    low: u64,
    inline: [u16; Self::INLINE],
    count: usize,
    bitmap: Option<Box<[u64; 1024]>>,
}

impl SeenTypes {
    const INLINE: usize = 16;

    pub(crate) fn new() -> Self {
        Self {
            low: 0,
            inline: [0; Self::INLINE],
            count: 0,
            bitmap: None,
        }
    }

    /// Records `typ`; fails if it was already recorded.
    #[inline]
    pub(crate) fn insert(&mut self, typ: u16) -> Result<(), Malformed> {
        if typ < 64 {
            let bit = 1u64 << typ;
            if self.low & bit != 0 {
                return Err(Malformed::DuplicateExtension(typ));
            }
            self.low |= bit;
            return Ok(());
        }
        if let Some(bits) = self.bitmap.as_mut() {
            return set_bit(bits, typ);
        }
        if self.inline[..self.count].contains(&typ) {
            return Err(Malformed::DuplicateExtension(typ));
        }
        if self.count < Self::INLINE {
            self.inline[self.count] = typ;
            self.count += 1;
            return Ok(());
        }
        let mut bits = Box::new([0u64; 1024]);
        for &t in &self.inline {
            set_bit(&mut bits, t)?;
        }
        bits[0] = self.low;
        set_bit(&mut bits, typ)?;
        self.bitmap = Some(bits);
        Ok(())
    }
}

fn set_bit(bits: &mut [u64; 1024], typ: u16) -> Result<(), Malformed> {
    let (word, bit) = (usize::from(typ >> 6), typ & 63);
    let mask = 1u64 << bit;
    let slot = bits.get_mut(word).ok_or(Malformed::Truncated)?;
    if *slot & mask != 0 {
        return Err(Malformed::DuplicateExtension(typ));
    }
    *slot |= mask;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_inline_and_in_the_bitmap() {
        let mut seen = SeenTypes::new();
        for t in 0..40u16 {
            seen.insert(t * 3).unwrap();
        }
        for t in 0..16u16 {
            seen.insert(200 + t).unwrap();
        }
        assert_eq!(seen.insert(3), Err(Malformed::DuplicateExtension(3)));
        assert_eq!(seen.insert(201), Err(Malformed::DuplicateExtension(201)));
        for t in 1000..3000u16 {
            seen.insert(t).unwrap();
        }
        assert!(seen.bitmap.is_some());
        assert_eq!(seen.insert(0), Err(Malformed::DuplicateExtension(0)));
        assert_eq!(seen.insert(2999), Err(Malformed::DuplicateExtension(2999)));
        assert_eq!(seen.insert(0xffff), Ok(()));
    }
}
