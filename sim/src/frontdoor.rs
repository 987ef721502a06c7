//! The front door: how clients reach one of several balancer instances.
//!
//! With more than one balancer, what decides affinity first is which instance a connection
//! lands on. Routers hashing each connection's 5-tuple (ECMP) send a client's next connection,
//! with its new source port, to any instance; an L4 layer hashing the client address keeps a
//! client on one instance; DNS round robin hands each lookup the next address. The choice is a
//! pure function of the client's address, source port and the instance set (no draws from any
//! RNG), so adding instances never shifts what the clients themselves do.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::balancer::BALANCER_HOST;

/// How clients are spread over the balancer instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// ECMP on the 5-tuple: each connection (new source port) may reach another instance.
    #[default]
    PerConnection,
    /// A client (by address) reaches the same instance while it is announced; rendezvous
    /// hashing moves only the clients of an instance that leaves.
    Sticky,
    /// DNS round robin: each visit resolves once and uses that instance for its connections;
    /// the resolver rotates the list and does not know which instances are down.
    DnsRoundRobin,
}

impl Spread {
    /// The name used in scenarios and reports.
    pub fn name(self) -> &'static str {
        match self {
            Spread::PerConnection => "per-connection",
            Spread::Sticky => "sticky",
            Spread::DnsRoundRobin => "dns-round-robin",
        }
    }
}

/// The turmoil host of balancer instance `i` (`lb`, then `lb-1`, `lb-2`...).
pub fn instance_host(i: usize) -> String {
    if i == 0 {
        BALANCER_HOST.to_owned()
    } else {
        format!("{BALANCER_HOST}-{i}")
    }
}

/// One instance as the front door sees it.
#[derive(Clone, Debug)]
struct Slot {
    host: String,
    /// Announced to the routers (ECMP, sticky): connections can reach it.
    routed: bool,
    /// Listed in DNS.
    in_dns: bool,
}

/// The instances clients can reach, and where each new connection goes.
#[derive(Clone, Debug)]
pub struct FrontDoor {
    spread: Spread,
    slots: Vec<Slot>,
    next_dns: usize,
}

/// The front door shared by the driver (events) and the client tasks.
pub type SharedFrontDoor = Rc<RefCell<FrontDoor>>;

impl FrontDoor {
    /// A front door to the given hosts, all announced and listed.
    pub fn new(spread: Spread, hosts: Vec<String>) -> Self {
        let slots = hosts
            .into_iter()
            .map(|host| Slot {
                host,
                routed: true,
                in_dns: true,
            })
            .collect();
        FrontDoor {
            spread,
            slots,
            next_dns: 0,
        }
    }

    /// Adds an announced, listed instance; returns its index.
    pub fn add(&mut self, host: String) -> usize {
        self.slots.push(Slot {
            host,
            routed: true,
            in_dns: true,
        });
        self.slots.len() - 1
    }

    /// Announces (`true`) or withdraws an instance from routing; DNS is unchanged.
    pub fn set_routed(&mut self, i: usize, routed: bool) {
        if let Some(s) = self.slots.get_mut(i) {
            s.routed = routed;
        }
    }

    /// Takes an instance out of routing and DNS for good.
    pub fn remove(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            s.routed = false;
            s.in_dns = false;
        }
    }

    /// Number of instances ever added.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No instance at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The host of instance `i`.
    pub fn host(&self, i: usize) -> &str {
        &self.slots[i].host
    }

    /// The DNS answer for a visit (DNS round robin only): the next listed instance.
    pub fn resolve(&mut self) -> Option<usize> {
        if self.spread != Spread::DnsRoundRobin {
            return None;
        }
        let listed: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].in_dns)
            .collect();
        if listed.is_empty() {
            return None;
        }
        let i = listed[self.next_dns % listed.len()];
        self.next_dns = self.next_dns.wrapping_add(1);
        Some(i)
    }

    /// The instance a connection from `source` reaches (`resolved`: the visit's DNS answer);
    /// `None` when no instance is reachable.
    pub fn pick(&self, source: SocketAddr, resolved: Option<usize>) -> Option<usize> {
        if self.slots.len() == 1 {
            return self.slots[0].routed.then_some(0);
        }
        let routed: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].routed)
            .collect();
        match self.spread {
            Spread::DnsRoundRobin => resolved,
            Spread::PerConnection => {
                let h = mix(address_bits(source.ip()) << 16 | u64::from(source.port()));
                (!routed.is_empty()).then(|| routed[(h % routed.len() as u64) as usize])
            }
            Spread::Sticky => {
                let client = address_bits(source.ip());
                routed
                    .into_iter()
                    .max_by_key(|&i| mix(client ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9)))
            }
        }
    }
}

fn address_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ ((b >> 64) as u64)
        }
    }
}

/// SplitMix64's finaliser: a stable, well-spread hash of 64 bits.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn door(spread: Spread, n: usize) -> FrontDoor {
        FrontDoor::new(spread, (0..n).map(instance_host).collect())
    }

    fn src(ip: u32, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
    }

    #[test]
    fn per_connection_spreads_a_clients_ports_over_every_instance() {
        let d = door(Spread::PerConnection, 3);
        let mut seen = [0u32; 3];
        for port in 1024..1324 {
            seen[d.pick(src(0x6410_0001, port), None).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (70..130).contains(&n)), "{seen:?}");
    }

    #[test]
    fn dns_rotates_over_listed_instances_even_when_down() {
        let mut d = door(Spread::DnsRoundRobin, 3);
        d.set_routed(1, false);
        d.remove(2);
        let answers: Vec<_> = (0..4).map(|_| d.resolve().unwrap()).collect();
        assert_eq!(answers, vec![0, 1, 0, 1]);
        assert_eq!(d.pick(src(1, 1), Some(1)), Some(1));
        assert_eq!(door(Spread::Sticky, 2).resolve(), None);
    }

    #[test]
    fn no_routed_instance_means_no_connection() {
        let mut d = door(Spread::PerConnection, 2);
        d.set_routed(0, false);
        d.set_routed(1, false);
        assert_eq!(d.pick(src(1, 1), None), None);
        let mut one = door(Spread::Sticky, 1);
        assert_eq!(one.pick(src(1, 1), None), Some(0));
        one.set_routed(0, false);
        assert_eq!(one.pick(src(1, 1), None), None);
    }

    proptest! {
        #[test]
        fn picks_only_routed_instances(
            n in 2usize..6,
            down in proptest::collection::vec(any::<bool>(), 6),
            ip in any::<u32>(),
            port in any::<u16>(),
        ) {
            for spread in [Spread::PerConnection, Spread::Sticky] {
                let mut d = door(spread, n);
                for (i, &off) in down.iter().take(n).enumerate() {
                    d.set_routed(i, !off);
                }
                match d.pick(src(ip, port), None) {
                    Some(i) => prop_assert!(!down[i]),
                    None => prop_assert!(down.iter().take(n).all(|&off| off)),
                }
            }
        }

        #[test]
        fn sticky_moves_only_the_clients_of_a_withdrawn_instance(
            n in 2usize..6,
            gone in 0usize..6,
            ip in any::<u32>(),
            port_a in any::<u16>(),
            port_b in any::<u16>(),
        ) {
            let gone = gone % n;
            let mut d = door(Spread::Sticky, n);
            let before = d.pick(src(ip, port_a), None).unwrap();
            prop_assert_eq!(d.pick(src(ip, port_b), None), Some(before));
            d.set_routed(gone, false);
            let after = d.pick(src(ip, port_a), None).unwrap();
            if before != gone {
                prop_assert_eq!(after, before);
            } else {
                prop_assert_ne!(after, gone);
            }
        }
    }
}
