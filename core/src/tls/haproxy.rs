//! HAProxy-compatible payload samples, for configurations imported with `--haproxy`.
//!
//! These reproduce HAProxy 2.6 `req_ssl_hello_type`/`rep_ssl_hello_type` and `payload_lv`
//! (src/payload.c) on a buffer: they look only at the first record, as HAProxy does, which is
//! exactly why `payload_lv(43,1)` misreads a ClientHello split over records. tether's own
//! parser ([`super::ClientHelloParser`]) is the one that gets that right.

use crate::progress::Progress;

/// The result of a sample fetch on the data buffered so far: `NeedMore` while more data could
/// change the answer and the evaluation is not final; `Done(None)` when the sample has no value
/// (HAProxy: the fetch failed; the rule does not match).
pub type Sample<T> = Progress<Option<T>>;

/// HAProxy's default `tune.bufsize`; `payload_lv` never matches data extending past it.
pub const HAPROXY_BUFSIZE: usize = 16384;

fn too_short<T>(final_: bool) -> Sample<T> {
    if final_ {
        Progress::Done(None)
    } else {
        Progress::NeedMore
    }
}

/// `req_ssl_hello_type`: the handshake type of the first record's message once the whole
/// message (`9 + length` bytes) is buffered. Accepts SSLv3-style records of types 0x14..=0x17
/// and 0xff with version ≥ 3.0 and length ≥ 4; anything else is not found.
pub fn req_ssl_hello_type(buf: &[u8], final_: bool) -> Sample<u8> {
    let Some(&b0) = buf.first() else {
        return too_short(final_);
    };
    if !((0x14..=0x17).contains(&b0) || b0 == 0xff) {
        return Progress::Done(None);
    }
    let Some(h) = buf.get(..9) else {
        return too_short(final_);
    };
    if (u32::from(h[1]) << 16) + u32::from(h[2]) < 0x0003_0000 {
        return Progress::Done(None);
    }
    if u16::from_be_bytes([h[3], h[4]]) < 4 {
        return Progress::Done(None);
    }
    let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
    if buf.len() < 9 + hs_len {
        return too_short(final_);
    }
    Progress::Done(Some(h[5]))
}

/// `rep_ssl_hello_type`: the same fetch on the response buffer.
pub fn rep_ssl_hello_type(buf: &[u8], final_: bool) -> Sample<u8> {
    req_ssl_hello_type(buf, final_)
}

/// `payload_lv(len_offset, len_size)`: the bytes after a big-endian length of `len_size` bytes
/// at `len_offset`. A zero length, or data reaching past [`HAPROXY_BUFSIZE`], never matches.
pub fn payload_lv(buf: &[u8], len_offset: usize, len_size: usize, final_: bool) -> Sample<&[u8]> {
    let Some(len_end) = len_offset.checked_add(len_size) else {
        return Progress::Done(None);
    };
    let Some(len_bytes) = buf.get(len_offset..len_end) else {
        return too_short(final_);
    };
    let size = len_bytes
        .iter()
        .fold(0u64, |acc, &b| acc.wrapping_shl(8) | u64::from(b));
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size == 0 || size > HAPROXY_BUFSIZE || len_end.saturating_add(size) > HAPROXY_BUFSIZE {
        return Progress::Done(None);
    }
    match buf.get(len_end..len_end + size) {
        Some(v) => Progress::Done(Some(v)),
        None => too_short(final_),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello(sid: &[u8]) -> Vec<u8> {
        crate::tls::encode::ClientHelloBuilder::new([0x11; 32])
            .session_id(sid)
            .cipher_suites(&[0x1301])
            .records()
    }

    #[test]
    fn hello_type_waits_for_the_whole_message_unless_final() {
        let h = hello(&[5; 32]);
        assert_eq!(req_ssl_hello_type(&h, false), Progress::Done(Some(1)));
        assert_eq!(
            req_ssl_hello_type(&h[..h.len() - 1], false),
            Progress::NeedMore
        );
        assert_eq!(
            req_ssl_hello_type(&h[..h.len() - 1], true),
            Progress::Done(None)
        );
        assert_eq!(req_ssl_hello_type(&[], false), Progress::NeedMore);
        assert_eq!(
            req_ssl_hello_type(b"GET / HTTP/1.1", false),
            Progress::Done(None)
        );
        assert_eq!(
            req_ssl_hello_type(&[0x16, 2, 0, 0, 9, 1, 0, 0, 0], false),
            Progress::Done(None)
        );
        assert_eq!(
            req_ssl_hello_type(&[0x16, 3, 3, 0, 3, 1, 0, 0, 0], false),
            Progress::Done(None)
        );
    }

    #[test]
    fn payload_lv_43_1_is_the_session_id() {
        let h = hello(&[5; 32]);
        assert_eq!(
            payload_lv(&h, 43, 1, false),
            Progress::Done(Some(&[5u8; 32][..]))
        );
        assert_eq!(payload_lv(&h[..50], 43, 1, false), Progress::NeedMore);
        assert_eq!(payload_lv(&h[..50], 43, 1, true), Progress::Done(None));
        assert_eq!(payload_lv(&h[..43], 43, 1, false), Progress::NeedMore);
        let empty = hello(&[]);
        assert_eq!(payload_lv(&empty, 43, 1, false), Progress::Done(None));
        assert_eq!(payload_lv(&[0xff, 0xff], 0, 2, false), Progress::Done(None));
    }

    proptest! {
        #[test]
        fn samples_never_panic_and_final_never_waits(buf in proptest::collection::vec(any::<u8>(), 0..80),
                                                     off in 0usize..90, size in 0usize..9) {
            prop_assert_ne!(req_ssl_hello_type(&buf, true), Progress::NeedMore);
            prop_assert_ne!(payload_lv(&buf, off, size, true), Progress::NeedMore);
            let _ = req_ssl_hello_type(&buf, false);
            if let Progress::Done(Some(v)) = payload_lv(&buf, off, size, false) {
                prop_assert!(!v.is_empty());
            }
        }
    }
}
