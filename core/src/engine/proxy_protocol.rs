//! PROXY protocol (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2), sans-IO.
//!
//! A load balancer behind another proxy (or the simulator, which runs a whole client fleet on a
//! few hosts) learns the real client address from a header placed before the first byte of the
//! proxied stream. [`parse`] looks at what has been received so far and says `NeedMore` (read
//! more), `Done` with a [`ProxyHeader`] (the bytes it took, the addresses it carried) or an error; it
//! never allocates, never panics, and never looks past its bounds (v1: 107 bytes, v2:
//! [`MAX_V2_HEADER`]). [`encode_v1`] and [`encode_v2`] build headers for `send-proxy` and for
//! the simulator's clients.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::progress::Progress;

/// The 12-byte signature that starts every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 line the spec allows, CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// The largest version 2 header tether accepts (16-byte prefix plus addresses and TLVs).
///
/// The wire format allows 65 551 bytes; real senders stay far below (addresses plus a few TLVs),
/// and bounding it keeps a hostile peer from making us buffer 64 KiB before the first TLS byte.
pub const MAX_V2_HEADER: usize = 16 + 1024;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_FIXED: usize = 16;
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;

/// A whole PROXY header: where the proxied stream starts and the addresses it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes taken by the header, to be skipped before the proxied protocol.
    pub header_len: usize,
    /// The original client, if the sender knew it (`None` for LOCAL, UNKNOWN, UNSPEC, UNIX).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, under the same conditions as `source`.
    pub destination: Option<SocketAddr>,
}

/// What the first bytes of a connection hold so far: `NeedMore` while they are a valid prefix of
/// a header.
pub type ProxyStatus = Progress<ProxyHeader>;

/// Why the first bytes are not an acceptable PROXY header: the connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 line without CRLF within 107 bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that does not follow `PROXY TCP4|TCP6|UNKNOWN src dst sport dport`.
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    /// A v2 header whose version nibble is not 2.
    #[error("PROXY v2 header with unsupported version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("PROXY v2 header with unknown command {0}")]
    V2Command(u8),
    /// A v2 header announcing more than [`MAX_V2_HEADER`] bytes.
    #[error("PROXY v2 header of {0} bytes exceeds the limit")]
    V2TooLong(usize),
    /// A v2 header whose length cannot hold the addresses its family announces.
    #[error("PROXY v2 address block too short for its family")]
    V2Truncated,
    /// A v2 header whose TLVs after the addresses do not exactly fill its declared length (a
    /// TLV longer than what is left, or a stray byte too short for a TLV header): HAProxy
    /// rejects such a header, and so does tether, since its addresses are as suspect.
    #[error("PROXY v2 TLVs do not fill the header's declared length")]
    V2BadTlv,
    /// A v2 header for a datagram or unknown transport where a stream was expected.
    #[error("PROXY v2 header for an unsupported transport {0:#04x}")]
    V2Transport(u8),
}

/// Looks for a complete PROXY header (v1 or v2) at the start of `buf`.
///
/// Stateless: the caller keeps appending received bytes to `buf` and calls again while it gets
/// [`Progress::NeedMore`]. Bytes after the header are never examined.
pub fn parse(buf: &[u8]) -> Result<ProxyStatus, ProxyError> {
    match buf.first() {
        None => Ok(Progress::NeedMore),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

fn parse_v1(buf: &[u8]) -> Result<ProxyStatus, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        // A lone LF can never become valid; decided before the length, so the verdict does
        // not depend on how many bytes have arrived (found by the proxy_header fuzz target).
        if window.contains(&b'\n') {
            return Err(ProxyError::V1Malformed);
        }
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        return Ok(Progress::NeedMore);
    };
    // The prefix check above guarantees `cr >= 6`: "PROXY " holds no CR.
    let header_len = cr + 2;
    let line = buf
        .get(V1_PREFIX.len()..cr)
        .ok_or(ProxyError::V1Malformed)?;
    let (source, destination) = parse_v1_fields(line)?;
    Ok(Progress::Done(ProxyHeader {
        header_len,
        source,
        destination,
    }))
}

type AddrPair = (Option<SocketAddr>, Option<SocketAddr>);

fn parse_v1_fields(line: &[u8]) -> Result<AddrPair, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::V1Malformed)?;
    let mut fields = text.split(' ');
    let proto = fields.next().ok_or(ProxyError::V1Malformed)?;
    if proto == "UNKNOWN" {
        // The spec: the receiver must ignore anything after UNKNOWN up to the CRLF.
        return Ok((None, None));
    }
    let want_v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1Malformed),
    };
    let mut next = || fields.next().ok_or(ProxyError::V1Malformed);
    let src_ip = parse_v1_ip(next()?, want_v6)?;
    let dst_ip = parse_v1_ip(next()?, want_v6)?;
    let src_port = parse_v1_port(next()?)?;
    let dst_port = parse_v1_port(next()?)?;
    if fields.next().is_some() {
        return Err(ProxyError::V1Malformed);
    }
    Ok((
        Some(SocketAddr::new(src_ip, src_port)),
        Some(SocketAddr::new(dst_ip, dst_port)),
    ))
}

fn parse_v1_ip(field: &str, want_v6: bool) -> Result<IpAddr, ProxyError> {
    let ip = if want_v6 {
        IpAddr::V6(
            field
                .parse::<Ipv6Addr>()
                .map_err(|_| ProxyError::V1Malformed)?,
        )
    } else {
        IpAddr::V4(
            field
                .parse::<Ipv4Addr>()
                .map_err(|_| ProxyError::V1Malformed)?,
        )
    };
    Ok(ip)
}

fn parse_v1_port(field: &str) -> Result<u16, ProxyError> {
    // Decimal, no sign, no leading zero (except "0" itself), at most 65535.
    let ok = !field.is_empty()
        && field.len() <= 5
        && field.bytes().all(|b| b.is_ascii_digit())
        && (field == "0" || !field.starts_with('0'));
    if !ok {
        return Err(ProxyError::V1Malformed);
    }
    field.parse::<u16>().map_err(|_| ProxyError::V1Malformed)
}

fn parse_v2(buf: &[u8]) -> Result<ProxyStatus, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::NotProxy);
    }
    if buf.len() < V2_FIXED {
        // Check what we can of the version/command byte early.
        if let Some(&ver_cmd) = buf.get(12) {
            check_ver_cmd(ver_cmd)?;
        }
        return Ok(Progress::NeedMore);
    }
    let ver_cmd = buf[12];
    let command = check_ver_cmd(ver_cmd)?;
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let header_len = V2_FIXED + len;
    if header_len > MAX_V2_HEADER {
        return Err(ProxyError::V2TooLong(header_len));
    }
    let family = fam >> 4;
    let transport = fam & 0x0f;
    // Validate what does not need the body before asking for more bytes.
    if command == Command::Proxy {
        match transport {
            0 | 1 => {}
            t => return Err(ProxyError::V2Transport(t)),
        }
        let need = match (family, transport) {
            (1, 1) => V2_INET_LEN,
            (2, 1) => V2_INET6_LEN,
            _ => 0,
        };
        if len < need {
            return Err(ProxyError::V2Truncated);
        }
    }
    if buf.len() < header_len {
        return Ok(Progress::NeedMore);
    }
    let body = &buf[V2_FIXED..header_len];
    let addresses = match (command, family, transport) {
        (Command::Proxy, 1, 1) => Some(V2_INET_LEN),
        (Command::Proxy, 2, 1) => Some(V2_INET6_LEN),
        _ => None,
    };
    if let Some(at) = addresses {
        check_tlvs(&body[at..])?;
    }
    let (source, destination) = match (command, family, transport) {
        (Command::Local, _, _) => (None, None),
        (Command::Proxy, 1, 1) => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(IpAddr::V4(ip(0)), port(8))),
                Some(SocketAddr::new(IpAddr::V4(ip(4)), port(10))),
            )
        }
        (Command::Proxy, 2, 1) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(IpAddr::V6(ip(0)), port(32))),
                Some(SocketAddr::new(IpAddr::V6(ip(16)), port(34))),
            )
        }
        // UNSPEC family or transport, AF_UNIX: the receiver uses the real connection addresses.
        (Command::Proxy, _, _) => (None, None),
    };
    // The TLVs after the addresses were checked for shape; tether needs none of them.
    Ok(Progress::Done(ProxyHeader {
        header_len,
        source,
        destination,
    }))
}

/// Walks the type-length-value records after the addresses: each needs its 3-byte header and
/// its whole value within the block, and the last must end exactly at the block's end.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_kind, hi, lo, rest @ ..] = tlvs else {
            return Err(ProxyError::V2BadTlv);
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        tlvs = rest.get(len..).ok_or(ProxyError::V2BadTlv)?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Local,
    Proxy,
}

fn check_ver_cmd(ver_cmd: u8) -> Result<Command, ProxyError> {
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    match ver_cmd & 0x0f {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        c => Err(ProxyError::V2Command(c)),
    }
}

/// Both addresses in one family: mixed pairs are expressed as IPv4-mapped IPv6, as the spec asks.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let to_v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 => v6,
    };
    if source.is_ipv4() == destination.is_ipv4() {
        (source, destination)
    } else {
        (to_v6(source), to_v6(destination))
    }
}

/// The header a server configured with `send-proxy` (v1) or `send-proxy-v2` gets first.
pub fn encode(
    version: crate::config::SendProxy,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    match version {
        crate::config::SendProxy::V1 => encode_v1(source, destination),
        crate::config::SendProxy::V2 => encode_v2(source, destination),
    }
}

/// The header a health check sends when it sends one (`check-send-proxy`, `tcp-check connect
/// send-proxy`): as HAProxy 2.6 for a connection of its own, v1 carries the check connection's
/// own addresses (`local`, `peer`; `UNKNOWN` when the transport has none) and v2 is a `LOCAL`
/// command with no address.
pub fn encode_check(
    version: crate::config::SendProxy,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> Vec<u8> {
    match (version, addrs) {
        (crate::config::SendProxy::V1, Some((local, peer))) => encode_v1(local, peer),
        (crate::config::SendProxy::V1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
        (crate::config::SendProxy::V2, _) => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]); // version 2, LOCAL; UNSPEC; no body
            out
        }
    }
}

/// A version 1 (text) header for a TCP connection, as `send-proxy` writes it.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(source, destination);
    let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        s.ip(),
        d.ip(),
        s.port(),
        d.port()
    )
    .into_bytes()
}

/// A version 2 (binary) PROXY-command header for a TCP connection, without TLVs.
///
/// The simulator's clients send it so that one host can stand for thousands of client addresses.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(source, destination);
    let mut out = Vec::with_capacity(V2_FIXED + V2_INET6_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (s.ip(), d.ip()) {
        (IpAddr::V4(si), IpAddr::V4(di)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&(V2_INET_LEN as u16).to_be_bytes());
            out.extend_from_slice(&si.octets());
            out.extend_from_slice(&di.octets());
        }
        (si, di) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&(V2_INET6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&v6(si).octets());
            out.extend_from_slice(&v6(di).octets());
        }
    }
    out.extend_from_slice(&s.port().to_be_bytes());
    out.extend_from_slice(&d.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A check's header: v1 with the connection's own addresses (or UNKNOWN), v2 LOCAL; both
    /// read back by the parser as headers without a client address (v1 with its addresses).
    #[test]
    fn check_headers_are_haproxys_for_a_connection_of_its_own() {
        use crate::config::SendProxy;
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let peer: SocketAddr = "127.0.0.2:8443".parse().unwrap();
        let v1 = encode_check(SendProxy::V1, Some((local, peer)));
        assert_eq!(v1, b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8443\r\n");
        assert_eq!(complete(&v1), (v1.len(), Some(local), Some(peer)));
        let unknown = encode_check(SendProxy::V1, None);
        assert_eq!(unknown, b"PROXY UNKNOWN\r\n");
        assert_eq!(complete(&unknown), (unknown.len(), None, None));
        for addrs in [Some((local, peer)), None] {
            let v2 = encode_check(SendProxy::V2, addrs);
            assert_eq!(v2.len(), 16);
            assert_eq!(&v2[12..], [0x20, 0, 0, 0]);
            assert_eq!(complete(&v2), (16, None, None));
        }
    }

    fn complete(buf: &[u8]) -> (usize, Option<SocketAddr>, Option<SocketAddr>) {
        match parse(buf) {
            Ok(Progress::Done(ProxyHeader {
                header_len,
                source,
                destination,
            })) => (header_len, source, destination),
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_spec_tcp4_example() {
        let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let (len, s, d) = complete(line);
        assert_eq!(len, 47);
        assert_eq!(s, Some(sa("192.168.0.1:56324")));
        assert_eq!(d, Some(sa("192.168.0.11:443")));
    }

    #[test]
    fn v1_unknown_short_and_long_forms() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (15, None, None));
        // Worst case from the spec: exactly 107 bytes, all ignored after UNKNOWN.
        let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let long = format!("PROXY UNKNOWN {ff} {ff} 65535 65535\r\n");
        assert_eq!(long.len(), V1_MAX_LEN);
        assert_eq!(complete(long.as_bytes()), (107, None, None));
    }

    #[test]
    fn v1_tcp6_max_line() {
        let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {ff} {ff} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        let (len, s, _) = complete(line.as_bytes());
        assert_eq!(len, 104);
        assert_eq!(s.unwrap().port(), 65535);
    }

    #[test]
    fn v1_rejects_malformed() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::V1Malformed), "{bad:?}");
        }
        assert_eq!(parse(b"PROXZ"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\x16\x03\x01"), Err(ProxyError::NotProxy));
        assert_eq!(parse(&[b'P'; 200]), Err(ProxyError::NotProxy));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'a');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        assert_eq!(parse(&long[..106]), Ok(Progress::NeedMore));
    }

    #[test]
    fn v2_haproxy_capture() {
        // haproxy `send-proxy-v2` for 172.19.0.1:42578 -> 172.19.0.3:80, followed by HTTP.
        let mut wire = vec![
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
            0x00, 0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
        ];
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (len, s, d) = complete(&wire);
        assert_eq!(len, 28);
        assert_eq!(s, Some(sa("172.19.0.1:42578")));
        assert_eq!(d, Some(sa("172.19.0.3:80")));
        assert_eq!(encode_v2(s.unwrap(), d.unwrap()), wire[..28].to_vec());
    }

    #[test]
    fn v2_local_unspec_unix_and_tlvs() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(complete(&local), (16, None, None));

        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        unix.resize(16 + 216, 0);
        assert_eq!(complete(&unix), (232, None, None));

        // INET with an ALPN TLV (type 0x01) appended: skipped, counted in header_len.
        let mut tlv = encode_v2(sa("10.0.0.1:1000"), sa("10.0.0.2:443"));
        tlv[15] = 12 + 5;
        tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        let (len, s, _) = complete(&tlv);
        assert_eq!(len, 33);
        assert_eq!(s, Some(sa("10.0.0.1:1000")));
    }

    #[test]
    fn v2_rejects_bad_headers() {
        let base = encode_v2(sa("10.0.0.1:1000"), sa("10.0.0.2:443"));
        let mut v = base.clone();
        v[12] = 0x11;
        assert_eq!(parse(&v), Err(ProxyError::V2Version(1)));
        let mut c = base.clone();
        c[12] = 0x22;
        assert_eq!(parse(&c), Err(ProxyError::V2Command(2)));
        let mut dgram = base.clone();
        dgram[13] = 0x12;
        assert_eq!(parse(&dgram), Err(ProxyError::V2Transport(2)));
        let mut short = base.clone();
        short[15] = 11;
        assert_eq!(parse(&short), Err(ProxyError::V2Truncated));
        let mut huge = base;
        huge[14] = 0xff;
        assert_eq!(parse(&huge), Err(ProxyError::V2TooLong(16 + 0xff0c)));
    }

    /// An INET header for 10.0.0.1:1000 -> 10.0.0.2:443 followed by `tlvs`, its length field
    /// covering the addresses and exactly `tlvs`.
    fn with_tlvs(tlvs: &[u8]) -> Vec<u8> {
        let mut h = encode_v2(sa("10.0.0.1:1000"), sa("10.0.0.2:443"));
        let len = (12 + tlvs.len()) as u16;
        h[14..16].copy_from_slice(&len.to_be_bytes());
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn v2_rejects_tlvs_that_lie_about_their_length() {
        // Issue 17 §0.7: a TLV declaring 32 bytes but carrying 3, the header's length covering
        // only those 3.
        assert_eq!(
            parse(&with_tlvs(&[0x01, 0x00, 0x20, b'h', b'2', b'x'])),
            Err(ProxyError::V2BadTlv)
        );
        // ... even when bytes follow the header (the next TLV must not borrow the stream).
        let mut borrowed = with_tlvs(&[0x01, 0x00, 0x20, b'h', b'2', b'x']);
        borrowed.extend_from_slice(&[0x16; 64]);
        assert_eq!(parse(&borrowed), Err(ProxyError::V2BadTlv));
        // A stray byte or two after the last TLV: too short for a TLV header.
        assert_eq!(parse(&with_tlvs(&[0x04])), Err(ProxyError::V2BadTlv));
        assert_eq!(
            parse(&with_tlvs(&[0x01, 0x00, 0x01, b'x', 0x04, 0x00])),
            Err(ProxyError::V2BadTlv)
        );
        // Well-formed: none, one, several, an empty value.
        for ok in [
            &[][..],
            &[0x01, 0x00, 0x02, b'h', b'2'],
            &[
                0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00, 0x05, 0x00, 0x01, 0xff,
            ],
        ] {
            let h = with_tlvs(ok);
            assert_eq!(complete(&h).0, h.len(), "{ok:?}");
        }
    }

    fn any_tlv() -> impl Strategy<Value = Vec<u8>> {
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(kind, value)| {
            let mut t = vec![kind];
            t.extend_from_slice(&(value.len() as u16).to_be_bytes());
            t.extend_from_slice(&value);
            t
        })
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(o, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(o, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), p)),
        ]
    }

    /// What a parsed address should be after the encoder's family unification.
    fn unified(a: SocketAddr, other: SocketAddr) -> SocketAddr {
        same_family(a, other).0
    }

    proptest! {
        #[test]
        fn v2_round_trip_and_prefixes(s in any_addr(), d in any_addr(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let header = encode_v2(s, d);
            let mut wire = header.clone();
            wire.extend_from_slice(&tail);
            let (len, ps, pd) = complete(&wire);
            prop_assert_eq!(len, header.len());
            prop_assert_eq!(ps, Some(unified(s, d)));
            prop_assert_eq!(pd, Some(unified(d, s)));
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header[..cut]), Ok(Progress::NeedMore));
            }
        }

        #[test]
        fn v1_round_trip_and_prefixes(s in any_addr(), d in any_addr(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let header = encode_v1(s, d);
            prop_assert!(header.len() <= V1_MAX_LEN);
            let mut wire = header.clone();
            wire.extend_from_slice(&tail);
            let (len, ps, pd) = complete(&wire);
            prop_assert_eq!(len, header.len());
            prop_assert_eq!(ps, Some(unified(s, d)));
            prop_assert_eq!(pd, Some(unified(d, s)));
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header[..cut]), Ok(Progress::NeedMore));
            }
        }

        /// Whole TLVs are accepted; a TLV length field changed so the records no longer tile
        /// the declared block is rejected, never read past.
        #[test]
        fn tlvs_must_tile_the_declared_length(
            tlvs in proptest::collection::vec(any_tlv(), 1..6),
            pick in any::<usize>(),
            delta in 1u16..300,
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let block: Vec<u8> = tlvs.concat();
            let mut wire = with_tlvs(&block);
            let header_len = wire.len();
            wire.extend_from_slice(&tail);
            prop_assert_eq!(complete(&wire).0, header_len);
            // Change one TLV's length (its length field is at this offset in the block).
            let i = pick % tlvs.len();
            let at = 16 + 12 + tlvs[..i].iter().map(Vec::len).sum::<usize>() + 1;
            let old = u16::from_be_bytes([wire[at], wire[at + 1]]);
            let lied = old.wrapping_add(delta);
            wire[at..at + 2].copy_from_slice(&lied.to_be_bytes());
            let grew_last = lied > old && i == tlvs.len() - 1;
            match parse(&wire) {
                // Changing a length can make the records tile by chance (one TLV swallowing
                // the next ones exactly); the header's extent never moves.
                Ok(Progress::Done(ProxyHeader { header_len: n, .. })) => {
                    prop_assert!(!grew_last, "a last TLV reaching past the header was accepted");
                    prop_assert_eq!(n, header_len);
                }
                r => prop_assert_eq!(r, Err(ProxyError::V2BadTlv)),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Progress::Done(ProxyHeader { header_len, .. })) = parse(&buf) {
                prop_assert!(header_len <= buf.len());
            }
        }

        #[test]
        fn mutated_headers_never_panic(s in any_addr(), d in any_addr(), v1 in any::<bool>(),
                                        at in any::<usize>(), byte in any::<u8>()) {
            let mut header = if v1 { encode_v1(s, d) } else { encode_v2(s, d) };
            let i = at % header.len();
            header[i] = byte;
            if let Ok(Progress::Done(ProxyHeader { header_len, .. })) = parse(&header) {
                prop_assert!(header_len <= header.len());
            }
        }
    }
}
