//! Just enough X.509 to name a backend: the SHA-256 fingerprint and the subject common name.
//!
//! The probe does not validate certificates, it only tells backends apart; a minimal, bounded DER
//! walk over the certificate is all that needs.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a DER certificate: the backend's identity in the report.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subject's first commonName, if the certificate is well-formed enough to find it.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let certificate = Der::new(der).expect(0x30)?;
    let mut tbs = Der::new(certificate).expect_seq()?;
    // version [0] EXPLICIT is optional.
    if tbs.peek() == Some(0xa0) {
        tbs.any()?;
    }
    tbs.expect(0x02)?; // serialNumber
    tbs.expect(0x30)?; // signature AlgorithmIdentifier
    tbs.expect(0x30)?; // issuer
    tbs.expect(0x30)?; // validity
    let mut subject = Der::new(tbs.expect(0x30)?);
    while !subject.is_empty() {
        let mut rdn = Der::new(subject.expect(0x31)?);
        while !rdn.is_empty() {
            let mut attribute = Der::new(rdn.expect(0x30)?);
            let oid = attribute.expect(0x06)?;
            let (tag, value) = attribute.any()?;
            if oid == [0x55, 0x04, 0x03] {
                return match tag {
                    // UTF8String, PrintableString, TeletexString, IA5String
                    0x0c | 0x13 | 0x14 | 0x16 => Some(String::from_utf8_lossy(value).into_owned()),
                    _ => None,
                };
            }
        }
    }
    None
}

/// A cursor over DER TLVs with single-byte tags; every read is bounds-checked.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next TLV's tag and contents.
    fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, after_tag) = self.rest.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_len.len() < count {
                return None;
            }
            let (len_bytes, rest) = after_len.split_at(count);
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return None;
        }
        let (contents, rest) = after_len.split_at(len);
        self.rest = rest;
        Some((tag, contents))
    }

    /// The next TLV's contents, if its tag is `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.any()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }

    fn expect_seq(&mut self) -> Option<Der<'a>> {
        self.expect(0x30).map(Der::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cert(cn: &str) -> Vec<u8> {
        tether_testbed::SelfSignedCert::generate(cn)
            .unwrap()
            .cert_der
            .to_vec()
    }

    #[test]
    fn reads_the_common_name_of_a_real_certificate() {
        assert_eq!(
            subject_common_name(&cert("lanneluc-node1")).as_deref(),
            Some("lanneluc-node1")
        );
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn garbage_has_no_name() {
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(
            subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = subject_common_name(&bytes);
        }

        #[test]
        fn never_panics_on_a_truncated_or_corrupted_certificate(
            cut in 0usize..600, flip in 0usize..600, bit in 0u8..8,
        ) {
            let mut der = cert("x");
            let flip = flip % der.len();
            der[flip] ^= 1 << bit;
            der.truncate(cut.min(der.len()));
            let _ = subject_common_name(&der);
        }
    }
}
