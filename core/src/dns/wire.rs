//! DNS messages on the wire (RFC 1035): the one query tether sends and the answers it reads.
//!
//! Parsing reads a borrowed `&[u8]` in place, every offset bounds-checked: hostile or broken
//! bytes give an error, never a panic. A name may point back into the message (compression); the
//! number of pointers followed per name is bounded, so a pointer loop ends in an error. Only what
//! a server's address needs is decoded: the header, the question, and A, AAAA and CNAME answers
//! (other records are skipped by their length).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The query types tether asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QType {
    /// An IPv4 address (type 1).
    A,
    /// An IPv6 address (type 28).
    Aaaa,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => TYPE_A,
            QType::Aaaa => TYPE_AAAA,
        }
    }

    /// The other address family's type (HAProxy falls back from A to AAAA and back).
    pub fn other(self) -> QType {
        match self {
            QType::A => QType::Aaaa,
            QType::Aaaa => QType::A,
        }
    }
}

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_OPT: u16 = 41;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Most compression pointers followed in one name: more means a loop or a hostile message.
const MAX_POINTERS: usize = 16;
/// Longest name in its text form (RFC 1035: 255 octets on the wire).
pub const MAX_NAME: usize = 253;
/// Most CNAME hops followed from the question to an address.
const MAX_CNAME_HOPS: usize = 8;
/// Most answer records read from one message.
const MAX_ANSWERS: usize = 64;

/// Why a message could not be read (or a name not written).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends inside a field.
    #[error("message truncated")]
    Truncated,
    /// A name is malformed: a label over 63 bytes, too long, a reserved label type, a pointer
    /// loop or forward pointer.
    #[error("malformed name")]
    BadName,
    /// The message is a query, not a response.
    #[error("not a response")]
    NotResponse,
    /// The response does not carry exactly the one question asked.
    #[error("question count is not 1")]
    Questions,
}

/// A response's status (RCODE), as HAProxy tells them apart.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// NOERROR.
    NoError,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// REFUSED.
    Refused,
    /// Any other code (SERVFAIL, FORMERR...).
    Other(u8),
}

impl Rcode {
    fn of(code: u8) -> Rcode {
        match code {
            0 => Rcode::NoError,
            3 => Rcode::NxDomain,
            5 => Rcode::Refused,
            c => Rcode::Other(c),
        }
    }
}

/// One answer record tether uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `name` has address `addr` (A or AAAA).
    Addr {
        /// The owner name, lowercase, without the final dot.
        name: String,
        /// The address.
        addr: IpAddr,
    },
    /// `name` is an alias of `target`.
    Cname {
        /// The alias, lowercase.
        name: String,
        /// What it points to, lowercase.
        target: String,
    },
}

/// A decoded response: what the resolver matches against its query and reads addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The query id it answers.
    pub id: u16,
    /// The status.
    pub rcode: Rcode,
    /// TC: the answer did not fit (HAProxy treats it as an error).
    pub truncated: bool,
    /// The question it repeats, lowercase.
    pub qname: String,
    /// The question's type code (1 A, 28 AAAA...).
    pub qtype: u16,
    /// The A, AAAA and CNAME answers, in message order.
    pub answers: Vec<Answer>,
}

impl Response {
    /// Does this answer the query `id` for `name`/`qtype`? A response that does not is ignored
    /// (a late answer to an earlier query, or a spoofing attempt).
    pub fn answers_query(&self, id: u16, name: &str, qtype: QType) -> bool {
        self.id == id && self.qtype == qtype.code() && self.qname.eq_ignore_ascii_case(name)
    }

    /// The addresses of type `qtype` for `name`, following CNAME records within the answer
    /// (bounded hops), in message order.
    pub fn addresses(&self, name: &str, qtype: QType) -> Vec<IpAddr> {
        let mut owner = name.to_ascii_lowercase();
        for _ in 0..MAX_CNAME_HOPS {
            let found: Vec<IpAddr> = self
                .answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Addr { name, addr } if *name == owner && family(*addr) == qtype => {
                        Some(*addr)
                    }
                    _ => None,
                })
                .collect();
            if !found.is_empty() {
                return found;
            }
            let next = self.answers.iter().find_map(|a| match a {
                Answer::Cname { name, target } if *name == owner => Some(target.clone()),
                _ => None,
            });
            match next {
                Some(t) => owner = t,
                None => break,
            }
        }
        Vec::new()
    }
}

fn family(a: IpAddr) -> QType {
    match a {
        IpAddr::V4(_) => QType::A,
        IpAddr::V6(_) => QType::Aaaa,
    }
}

/// Writes a recursive query for `name`/`qtype` with id `id`, announcing `payload` bytes of UDP
/// payload in an EDNS0 OPT record (HAProxy's `accepted_payload_size`; 512 is sent without one).
pub fn encode_query(id: u16, name: &str, qtype: QType, payload: u16) -> Result<Vec<u8>, WireError> {
    let edns = payload > 512;
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    write_name(&mut m, name)?;
    m.extend_from_slice(&qtype.code().to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        m.push(0); // root
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    Ok(m)
}

fn write_name(m: &mut Vec<u8>, name: &str) -> Result<(), WireError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME {
        return Err(WireError::BadName);
    }
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(WireError::BadName);
            }
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
    }
    m.push(0);
    Ok(())
}

/// Reads a response. Records other than A, AAAA and CNAME are skipped; at most
/// [`MAX_ANSWERS`] answers are read.
pub fn decode_response(msg: &[u8]) -> Result<Response, WireError> {
    let r = Reader { msg };
    let id = r.u16(0)?;
    let flags = r.u16(2)?;
    if flags & 0x8000 == 0 {
        return Err(WireError::NotResponse);
    }
    if r.u16(4)? != 1 {
        return Err(WireError::Questions);
    }
    let ancount = usize::from(r.u16(6)?);
    let (qname, mut at) = r.name(12)?;
    let qtype = r.u16(at)?;
    at += 4;
    let mut answers = Vec::new();
    for _ in 0..ancount.min(MAX_ANSWERS) {
        let (name, next) = r.name(at)?;
        let rtype = r.u16(next)?;
        let rclass = r.u16(next + 2)?;
        let len = usize::from(r.u16(next + 8)?);
        let data = next + 10;
        let rdata = r.slice(data, len)?;
        at = data + len;
        if rclass != CLASS_IN {
            continue;
        }
        match rtype {
            TYPE_A => {
                let b: [u8; 4] = rdata.try_into().map_err(|_| WireError::Truncated)?;
                answers.push(Answer::Addr {
                    name,
                    addr: IpAddr::V4(Ipv4Addr::from(b)),
                });
            }
            TYPE_AAAA => {
                let b: [u8; 16] = rdata.try_into().map_err(|_| WireError::Truncated)?;
                answers.push(Answer::Addr {
                    name,
                    addr: IpAddr::V6(Ipv6Addr::from(b)),
                });
            }
            TYPE_CNAME => {
                let (target, _) = r.name(data)?;
                answers.push(Answer::Cname { name, target });
            }
            _ => {}
        }
    }
    Ok(Response {
        id,
        rcode: Rcode::of((flags & 0x000f) as u8),
        truncated: flags & 0x0200 != 0,
        qname,
        qtype,
        answers,
    })
}

/// Bounds-checked reads over one message.
struct Reader<'a> {
    msg: &'a [u8],
}

impl<'a> Reader<'a> {
    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], WireError> {
        let end = at.checked_add(len).ok_or(WireError::Truncated)?;
        self.msg.get(at..end).ok_or(WireError::Truncated)
    }

    fn u8(&self, at: usize) -> Result<u8, WireError> {
        self.msg.get(at).copied().ok_or(WireError::Truncated)
    }

    fn u16(&self, at: usize) -> Result<u16, WireError> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The name at `at` (lowercase, dotted, no final dot) and the offset after it in place.
    /// Pointers must point backwards, and at most [`MAX_POINTERS`] are followed.
    fn name(&self, mut at: usize) -> Result<(String, usize), WireError> {
        let mut out = String::new();
        let mut end = None;
        let mut pointers = 0;
        loop {
            let len = self.u8(at)?;
            match len & 0xc0 {
                0x00 if len == 0 => break,
                0x00 => {
                    let label = self.slice(at + 1, usize::from(len))?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                    if out.len() > MAX_NAME {
                        return Err(WireError::BadName);
                    }
                    at += 1 + usize::from(len);
                }
                0xc0 => {
                    let target = usize::from(self.u16(at)? & 0x3fff);
                    pointers += 1;
                    if pointers > MAX_POINTERS || target >= at {
                        return Err(WireError::BadName);
                    }
                    end.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err(WireError::BadName),
            }
        }
        Ok((out, end.unwrap_or(at + 1)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A response to `query` (as a server writes it): the question copied, then `answers`.
    pub(crate) fn respond(query: &[u8], rcode: u8, answers: &[(&str, Rr)]) -> Vec<u8> {
        let qend = Reader { msg: query }.name(12).unwrap().1 + 4;
        let mut m = query[..qend].to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        m[10..12].copy_from_slice(&[0, 0]);
        for (name, rr) in answers {
            write_name(&mut m, name).unwrap();
            let (t, data) = match rr {
                Rr::A(a) => (TYPE_A, a.octets().to_vec()),
                Rr::Aaaa(a) => (TYPE_AAAA, a.octets().to_vec()),
                Rr::Cname(c) => {
                    let mut d = Vec::new();
                    write_name(&mut d, c).unwrap();
                    (TYPE_CNAME, d)
                }
            };
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&[0, 0, 0, 5]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }

    /// A test answer record.
    pub(crate) enum Rr {
        A(Ipv4Addr),
        Aaaa(Ipv6Addr),
        Cname(&'static str),
    }

    #[test]
    fn a_query_roundtrips_through_a_response() {
        let q = encode_query(0x1234, "App.Test.", QType::A, 512).unwrap();
        let r = respond(&q, 0, &[("app.test", Rr::A(Ipv4Addr::new(127, 0, 0, 2)))]);
        let d = decode_response(&r).unwrap();
        assert!(d.answers_query(0x1234, "app.test", QType::A));
        assert!(!d.answers_query(0x1235, "app.test", QType::A));
        assert!(!d.answers_query(0x1234, "other.test", QType::A));
        assert!(!d.answers_query(0x1234, "app.test", QType::Aaaa));
        assert_eq!(
            d.addresses("app.test", QType::A),
            vec![IpAddr::from([127, 0, 0, 2])]
        );
        assert_eq!(d.rcode, Rcode::NoError);
    }

    #[test]
    fn cname_chains_are_followed_within_the_answer() {
        let q = encode_query(7, "www.test", QType::Aaaa, 4096).unwrap();
        let r = respond(
            &q,
            0,
            &[
                ("www.test", Rr::Cname("edge.test")),
                ("edge.test", Rr::Cname("node.test")),
                ("node.test", Rr::Aaaa(Ipv6Addr::LOCALHOST)),
                ("node.test", Rr::A(Ipv4Addr::LOCALHOST)),
            ],
        );
        let d = decode_response(&r).unwrap();
        assert_eq!(
            d.addresses("www.test", QType::Aaaa),
            vec![IpAddr::from(Ipv6Addr::LOCALHOST)]
        );
        assert_eq!(
            d.addresses("www.test", QType::A),
            vec![IpAddr::from(Ipv4Addr::LOCALHOST)]
        );
    }

    #[test]
    fn cname_loops_end() {
        let q = encode_query(7, "a.test", QType::A, 512).unwrap();
        let r = respond(
            &q,
            0,
            &[
                ("a.test", Rr::Cname("b.test")),
                ("b.test", Rr::Cname("a.test")),
            ],
        );
        assert!(decode_response(&r)
            .unwrap()
            .addresses("a.test", QType::A)
            .is_empty());
    }

    #[test]
    fn nxdomain_and_truncation_are_read() {
        let q = encode_query(9, "gone.test", QType::A, 512).unwrap();
        let mut r = respond(&q, 3, &[]);
        assert_eq!(decode_response(&r).unwrap().rcode, Rcode::NxDomain);
        r[2] |= 0x02;
        assert!(decode_response(&r).unwrap().truncated);
    }

    #[test]
    fn compression_pointer_loops_are_errors() {
        // Header, then a question whose name points at itself.
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(decode_response(&m), Err(WireError::BadName));
    }

    #[test]
    fn compressed_answer_names_are_read() {
        let q = encode_query(3, "app.test", QType::A, 512).unwrap();
        let mut r = respond(&q, 0, &[]);
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 9]);
        let d = decode_response(&r).unwrap();
        assert_eq!(
            d.addresses("app.test", QType::A),
            vec![IpAddr::from([10, 0, 0, 9])]
        );
    }

    #[test]
    fn names_too_long_are_refused() {
        let long = vec!["a"; 200].join(".");
        assert_eq!(
            encode_query(1, &long, QType::A, 512),
            Err(WireError::BadName)
        );
        assert_eq!(
            encode_query(1, &"x".repeat(64), QType::A, 512),
            Err(WireError::BadName)
        );
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,20}"
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_response(&bytes);
        }

        #[test]
        fn decoding_mutated_responses_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let q = encode_query(5, "svc.example.test", QType::A, 512).unwrap();
            let mut r = respond(&q, 0, &[
                ("svc.example.test", Rr::Cname("n.test")),
                ("n.test", Rr::A(Ipv4Addr::new(10, 1, 2, 3))),
            ]);
            for (at, b) in flips {
                let i = at % r.len();
                r[i] = b;
            }
            if let Ok(d) = decode_response(&r) {
                let _ = d.addresses("svc.example.test", QType::A);
            }
        }

        #[test]
        fn encode_then_decode_roundtrips(
            id in any::<u16>(),
            labels in proptest::collection::vec(label(), 1..5),
            v6 in any::<bool>(),
            ips in proptest::collection::vec(any::<[u8; 4]>(), 0..5),
        ) {
            let name = labels.join(".");
            let qtype = if v6 { QType::Aaaa } else { QType::A };
            let q = encode_query(id, &name, qtype, 1232).unwrap();
            let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
            let rrs: Vec<(&str, Rr)> = ips
                .iter()
                .map(|b| (leaked, if v6 { Rr::Aaaa(Ipv4Addr::from(*b).to_ipv6_mapped()) } else { Rr::A(Ipv4Addr::from(*b)) }))
                .collect();
            let d = decode_response(&respond(&q, 0, &rrs)).unwrap();
            prop_assert!(d.answers_query(id, &name, qtype));
            prop_assert_eq!(d.addresses(&name, qtype).len(), ips.len());
        }
    }
}
