//! An IP network written `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host).
//!
//! IPv4 addresses are kept in IPv6's IPv4-mapped space (`::ffff:0:0/96`), so one prefix table
//! serves both families and a client arriving on a dual-stack listener as `::ffff:10.1.2.3`
//! matches `10.0.0.0/8`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address with its host bits cleared, and a prefix length in the mapped space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address as a 128-bit number (IPv4 mapped into `::ffff:0:0/96`).
    base: u128,
    /// Prefix length over the 128 bits (an IPv4 `/8` is 104).
    len: u8,
    /// Written as IPv4, for display.
    v4: bool,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address or network \"{text}\": {why}; write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32")]
pub struct CidrError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The 128-bit form of an address, IPv4 mapped.
pub(crate) fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl Cidr {
    /// The first and last address of the network, as 128-bit numbers.
    pub fn range(&self) -> (u128, u128) {
        (self.base, self.base | !mask(self.len))
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip_key(ip) & mask(self.len) == self.base
    }

    /// Whether the two networks share an address (one contains the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let l = self.len.min(other.len);
        (self.base & mask(l)) == (other.base & mask(l))
    }

    /// A network from an address and an IPv4 or IPv6 prefix length.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Cidr> {
        let (v4, len) = match ip {
            IpAddr::V4(_) if prefix <= 32 => (true, prefix + 96),
            IpAddr::V6(_) if prefix <= 128 => (false, prefix),
            _ => return None,
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let v4 = v4 || (ip.is_ipv4() && len >= 96);
        Some(Cidr {
            base: ip_key(ip) & mask(len),
            len,
            v4,
        })
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let text = s.trim();
        let bad = |why| CidrError {
            text: s.to_string(),
            why,
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or(bad(
                "the prefix length is not a number within the address size",
            ))?,
        };
        Cidr::new(ip, prefix).ok_or(bad("the prefix length is too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.base);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.v4 => write!(f, "{v4}/{}", self.len - 96),
            _ => write!(f, "{v6}/{}", self.len),
        }
    }
}

/// Written as text in configs (`"127.0.0.0/8"`), read back with the same parser.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_travel_through_configs_as_text() {
        let nets: Vec<Cidr> = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let json = serde_json::to_string(&nets).unwrap();
        assert_eq!(json, r#"["127.0.0.0/8","::1/128"]"#);
        assert_eq!(serde_json::from_str::<Vec<Cidr>>(&json).unwrap(), nets);
        let bad = serde_json::from_str::<Vec<Cidr>>(r#"["10.0.0.0/33"]"#).unwrap_err();
        assert!(bad.to_string().contains("write e.g. 10.0.0.0/8"), "{bad}");
    }

    #[test]
    fn networks_parse_contain_and_print() {
        let n: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.9.9.9".parse().unwrap()),
            "mapped client"
        );
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(
            !all.contains("2001:db8::1".parse().unwrap()),
            "IPv4 /0 is IPv4 only"
        );
        assert!(n.overlaps(&"10.9.0.0/16".parse().unwrap()));
        assert!(!n.overlaps(&"11.0.0.0/16".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
