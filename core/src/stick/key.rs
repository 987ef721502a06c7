//! Fixed-length stick-table keys.
//!
//! HAProxy's `stick-table type binary len N` stores every key in exactly `N` bytes: a shorter
//! sample is padded with zeros, a longer one is truncated. [`StickKey`] applies that rule once, on
//! the stack, so the table only ever compares and hashes keys of its own length and `"ab"` and
//! `"ab\0"` are, as in HAProxy, the same key.

use std::fmt;

/// Longest key a table may declare, in bytes. TLS session IDs are at most 32 bytes and a SHA-256
/// of a ticket is 32; 64 leaves room for wider keys without letting one table reserve unbounded
/// memory per entry.
pub const MAX_KEY_LEN: usize = 64;

/// A key normalised to a table's fixed length: the first `len` bytes of the sample, zero-padded.
///
/// `Copy` and allocation-free so lookups on the data path never touch the heap. It dereferences to
/// `[u8]`, which makes it usable wherever a byte slice (or a `Vec<u8>`-like value) is expected, and
/// it displays as lowercase hex, the way `show table` prints binary keys.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct StickKey {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

impl StickKey {
    /// Normalise `raw` to `key_len` bytes (zero-pad or truncate). `key_len` is clamped to
    /// `1..=MAX_KEY_LEN`, the range a table accepts, so this never panics.
    pub fn new(raw: &[u8], key_len: usize) -> Self {
        let len = clamp_key_len(key_len);
        let mut bytes = [0u8; MAX_KEY_LEN];
        let take = raw.len().min(len);
        bytes[..take].copy_from_slice(&raw[..take]);
        StickKey {
            len: len as u8,
            bytes,
        }
    }

    /// The normalised key bytes, exactly the table's key length long.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length of the key in bytes (the table's `key_len`).
    #[allow(clippy::len_without_is_empty)] // a key is never empty: its length is at least 1
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

/// Clamp a configured key length to what a table can hold (`1..=MAX_KEY_LEN`).
pub(crate) fn clamp_key_len(key_len: usize) -> usize {
    key_len.clamp(1, MAX_KEY_LEN)
}

impl std::ops::Deref for StickKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for StickKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialOrd for StickKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StickKey {
    /// Byte-wise order of the normalised keys: the order of `show table` dumps.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for StickKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StickKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StickKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shorter_keys_are_zero_padded() {
        let k = StickKey::new(b"ab", 4);
        assert_eq!(k.as_bytes(), b"ab\0\0");
        assert_eq!(k.len(), 4);
        assert_eq!(k, StickKey::new(b"ab\0", 4));
        assert_ne!(k, StickKey::new(b"ab\x01", 4));
    }

    #[test]
    fn longer_keys_are_truncated() {
        let k = StickKey::new(b"abcdef", 3);
        assert_eq!(k.as_bytes(), b"abc");
        assert_eq!(k, StickKey::new(b"abcxyz", 3));
    }

    #[test]
    fn key_len_is_clamped_instead_of_panicking() {
        assert_eq!(StickKey::new(b"abc", 0).as_bytes(), b"a");
        assert_eq!(StickKey::new(&[7u8; 100], 1000).len(), MAX_KEY_LEN);
    }

    #[test]
    fn displays_as_hex_and_orders_bytewise() {
        let a = StickKey::new(&[0x01, 0xab], 2);
        let b = StickKey::new(&[0x02], 2);
        assert_eq!(a.to_string(), "01ab");
        assert_eq!(b.to_string(), "0200");
        assert!(a < b);
        assert_eq!(&a[..], &[0x01, 0xab]);
    }

    proptest! {
        #[test]
        fn normalisation_is_pad_or_truncate(raw in proptest::collection::vec(any::<u8>(), 0..100),
                                            len in 1usize..=MAX_KEY_LEN) {
            let k = StickKey::new(&raw, len);
            prop_assert_eq!(k.len(), len);
            let mut expected = raw.clone();
            expected.resize(len, 0);
            prop_assert_eq!(k.as_bytes(), &expected[..]);
            // Padding with explicit zeros up to `len` names the same key.
            let mut padded = raw.clone();
            if padded.len() < len { padded.resize(len, 0); }
            prop_assert_eq!(StickKey::new(&padded, len), k);
        }
    }
}
