//! A bounds-checked cursor over borrowed bytes, the one primitive every TLS parser here uses.
//!
//! Every read either returns a sub-slice of the input or [`Malformed::Truncated`]; nothing
//! indexes the buffer directly, so hostile lengths cannot panic. Length-prefixed vectors are
//! read through one generic [`Reader::sub`] over the width of the prefix ([`U8`], [`U16`],
//! `U24`) instead of one function per width.

use super::Malformed;

/// A cursor over a borrowed buffer; reads hand out slices that live as long as the buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    cursor: usize,
}

/// Width of a length prefix, so vectors of any prefix width share one reader.
pub(crate) trait LengthPrefix {
    /// Reads the prefix and returns the announced length.
    fn read_len(r: &mut Reader<'_>) -> Result<usize, Malformed>;
}

/// A one-byte length prefix (`opaque x<0..2^8-1>`).
pub(crate) struct U8;
/// A two-byte length prefix (`opaque x<0..2^16-1>`).
pub(crate) struct U16;
/// A three-byte length prefix (`opaque x<0..2^24-1>`), as in Certificate lists.
#[cfg(test)]
pub(crate) struct U24;

impl LengthPrefix for U8 {
    fn read_len(r: &mut Reader<'_>) -> Result<usize, Malformed> {
        r.u8().map(usize::from)
    }
}
impl LengthPrefix for U16 {
    fn read_len(r: &mut Reader<'_>) -> Result<usize, Malformed> {
        r.u16().map(usize::from)
    }
}
#[cfg(test)]
impl LengthPrefix for U24 {
    fn read_len(r: &mut Reader<'_>) -> Result<usize, Malformed> {
        r.u24().map(|v| v as usize)
    }
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, cursor: 0 }
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.cursor.checked_add(n).ok_or(Malformed::Truncated)?;
        let out = self.buf.get(self.cursor..end).ok_or(Malformed::Truncated)?;
        self.cursor = end;
        Ok(out)
    }

    /// The next `N` bytes as an array reference.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], Malformed> {
        self.take(N)?.try_into().map_err(|_| Malformed::Truncated)
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian u16.
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(*self.array::<2>()?))
    }

    /// A big-endian u24.
    #[inline]
    pub(crate) fn u24(&mut self) -> Result<u32, Malformed> {
        let b = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// A big-endian u32.
    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(*self.array::<4>()?))
    }

    /// The body of a vector with an `L`-wide length prefix.
    #[inline]
    pub(crate) fn vec<L: LengthPrefix>(&mut self) -> Result<&'a [u8], Malformed> {
        let len = L::read_len(self)?;
        self.take(len)
    }

    /// A reader over the body of a vector with an `L`-wide length prefix.
    #[inline]
    pub(crate) fn sub<L: LengthPrefix>(&mut self) -> Result<Reader<'a>, Malformed> {
        self.vec::<L>().map(Reader::new)
    }

    /// True while unread bytes remain.
    #[inline]
    pub(crate) fn any_left(&self) -> bool {
        self.cursor < self.buf.len()
    }

    /// Fails with [`Malformed::TrailingBytes`] unless everything was read.
    #[inline]
    pub(crate) fn expect_end(&self) -> Result<(), Malformed> {
        if self.any_left() {
            Err(Malformed::TrailingBytes)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_fixed_widths_big_endian() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u24(), Ok(0x040506));
        assert_eq!(r.u32(), Ok(0x0708090a));
        assert!(!r.any_left());
        assert_eq!(r.u8(), Err(Malformed::Truncated));
    }

    #[test]
    fn vectors_respect_their_prefix_width() {
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 1, 0xcc]);
        assert_eq!(r.vec::<U16>(), Ok(&[0xaa, 0xbb][..]));
        let mut s = r.sub::<U8>().unwrap();
        assert_eq!(s.u8(), Ok(0xcc));
        assert!(s.expect_end().is_ok());
        assert!(r.expect_end().is_ok());
        let mut t = Reader::new(&[0, 0, 5, 1]);
        assert_eq!(t.vec::<U24>(), Err(Malformed::Truncated));
    }

    proptest! {
        #[test]
        fn take_never_panics_and_never_overreads(buf in proptest::collection::vec(any::<u8>(), 0..64),
                                                 ns in proptest::collection::vec(0usize..80, 0..8)) {
            let mut r = Reader::new(&buf);
            let mut total = 0usize;
            for n in ns {
                match r.take(n) {
                    Ok(s) => { prop_assert_eq!(s.len(), n); total += n; }
                    Err(e) => prop_assert_eq!(e, Malformed::Truncated),
                }
            }
            prop_assert!(total <= buf.len());
        }
    }
}
