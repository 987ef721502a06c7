//! Servers' addresses from DNS: `init-addr` at startup, then one task per `[[resolvers]]`
//! section moving the core [`Resolver`]'s datagrams over the [`Net`] and applying its answers
//! to the servers with [`Backend::set_resolved`].
//!
//! The task is here, not in the daemon, so the simulator resolves exactly as production does.
//! Messages follow HAProxy's wording (`changed its IP from ... by DNS`, `going DOWN for
//! maintenance (DNS NX status)`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::sleep_until;

use super::backend::{Backend, ServerDns};
use super::clock::Clock;
use super::net::Net;
use super::runtime::Runtime;
use crate::config::resolvers::{Family, InitAddr, Resolvers};
use crate::dns::{pick_address, Name, Output, Resolver};
use crate::ServerId;

/// A server a section resolves.
type User = (Arc<Backend>, ServerId);

/// Gives each resolved server that has no address yet its first one, by its `init-addr`
/// methods in order: `last` is skipped (tether keeps no state file), `libc` asks the system
/// resolver, an IP is taken as is, `none` leaves the server in maintenance until DNS answers.
pub async fn init_addresses<N: Net>(net: &N, runtime: &Runtime) {
    for backend in runtime.backends.values() {
        for (i, slot) in backend.servers.iter().enumerate() {
            let Some(dns) = &slot.dns else { continue };
            if slot.resolved().is_none() {
                init_one(net, backend, ServerId(i as u32), dns).await;
            }
        }
    }
}

async fn init_one<N: Net>(net: &N, backend: &Backend, id: ServerId, dns: &ServerDns) {
    let name = &backend.servers[id.index()].name;
    for method in &dns.init {
        let ip = match method {
            InitAddr::Last => continue,
            InitAddr::Ip(ip) => *ip,
            InitAddr::None => {
                tracing::info!(target: "tether::dns", "Server {}/{name} starts without an address (init-addr none): in maintenance until DNS resolves {}", backend.name, dns.host);
                return;
            }
            InitAddr::Libc => match net.lookup_host(&dns.host).await {
                Ok(addrs) => match preferred(&addrs, dns.prefer) {
                    Some(ip) => ip,
                    None => continue,
                },
                Err(e) => {
                    tracing::debug!(target: "tether::dns", host = %dns.host, "init-addr libc: {e}");
                    continue;
                }
            },
        };
        backend.set_resolved(id, Some(ip));
        return;
    }
    tracing::error!(target: "tether::dns", "Server {}/{name}: could not resolve {} at startup by any init-addr method; in maintenance until DNS resolves it", backend.name, dns.host);
}

/// The first address of the preferred family, else the first.
fn preferred(addrs: &[IpAddr], prefer: Family) -> Option<IpAddr> {
    let want_v4 = prefer == Family::Ipv4;
    addrs
        .iter()
        .find(|a| a.is_ipv4() == want_v4)
        .or(addrs.first())
        .copied()
}

/// The servers of `runtime` that section `name` resolves, in configuration order.
pub fn users_of(runtime: &Runtime, name: &str) -> Vec<User> {
    let mut users = Vec::new();
    for backend in runtime.backends.values() {
        for (i, slot) in backend.servers.iter().enumerate() {
            if slot.dns.as_ref().is_some_and(|d| d.resolvers == name) {
                users.push((backend.clone(), ServerId(i as u32)));
            }
        }
    }
    users
}

/// Resolves the host names of `users` with `section`'s name servers until `shutdown` turns
/// true (or its sender is gone). Query ids follow `seed`.
pub async fn run_section<N: Net>(
    net: N,
    section: Resolvers,
    users: Vec<User>,
    seed: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let servers: Vec<SocketAddr> = (section.nameservers.iter())
        .filter_map(|n| n.address.parse().ok())
        .collect();
    let bind = if servers.iter().all(SocketAddr::is_ipv4) {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = match net.bind_datagram(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target: "tether::dns", "resolvers {}: cannot bind a UDP socket: {e}", section.name);
            return;
        }
    };
    let (names, by_name) = names_of(&users);
    let name = section.name.clone();
    let mut buf = vec![0u8; usize::from(section.accepted_payload_size.max(512))];
    let mut resolver = Resolver::new(section, names, seed);
    let clock = Clock::start();
    loop {
        let outputs = resolver.poll(clock.now());
        apply::<N>(&socket, &servers, &name, &by_name, &users, outputs).await;
        let deadline = clock.instant(resolver.next_deadline().unwrap_or(clock.now()));
        let event = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            r = N::recv_from(&socket, &mut buf) => r.ok(),
            _ = sleep_until(deadline) => None,
        };
        if *shutdown.borrow() {
            return;
        }
        let Some((n, from)) = event else { continue };
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        if let Some(ns) = servers.iter().position(|s| *s == from) {
            let outputs = resolver.receive(clock.now(), ns, &buf[..n]);
            apply::<N>(&socket, &servers, &name, &by_name, &users, outputs).await;
        }
    }
}

/// One resolution per distinct (host, family); which users each one serves.
fn names_of(users: &[User]) -> (Vec<Name>, Vec<Vec<usize>>) {
    let mut index: BTreeMap<(String, bool), usize> = BTreeMap::new();
    let (mut names, mut by_name) = (Vec::new(), Vec::<Vec<usize>>::new());
    for (u, (backend, id)) in users.iter().enumerate() {
        let Some(dns) = &backend.servers[id.index()].dns else {
            continue;
        };
        let key = (dns.host.to_ascii_lowercase(), dns.prefer == Family::Ipv4);
        let at = *index.entry(key).or_insert_with(|| {
            names.push(Name {
                host: dns.host.clone(),
                prefer: dns.prefer,
            });
            by_name.push(Vec::new());
            names.len() - 1
        });
        by_name[at].push(u);
    }
    (names, by_name)
}

/// Sends the queries and applies the answers to the servers.
async fn apply<N: Net>(
    socket: &N::Datagram,
    servers: &[SocketAddr],
    section: &str,
    by_name: &[Vec<usize>],
    users: &[User],
    outputs: Vec<Output>,
) {
    for o in outputs {
        match o {
            Output::Query { nameserver, packet } => {
                let Some(to) = servers.get(nameserver) else {
                    continue;
                };
                if let Err(e) = N::send_to(socket, &packet, *to).await {
                    tracing::debug!(target: "tether::dns", "resolvers {section}: send to {to}: {e}");
                }
            }
            Output::Resolved { name, addrs } => {
                for &u in &by_name[name] {
                    let (backend, id) = &users[u];
                    resolved(backend, *id, &addrs);
                }
            }
            Output::Failed {
                name,
                failure,
                hold_expired,
            } => {
                for &u in by_name[name].iter().filter(|_| hold_expired) {
                    let (backend, id) = &users[u];
                    if backend.servers[id.index()].resolved().is_some() {
                        backend.set_resolved(*id, None);
                        tracing::warn!(target: "tether::dns", "Server {}/{} is going DOWN for maintenance ({}).", backend.name, backend.servers[id.index()].name, failure.reason());
                    }
                }
            }
        }
    }
}

/// A valid answer: the server keeps its address while the answer holds it, else takes the
/// first one; a server in maintenance for want of an address comes back.
fn resolved(backend: &Backend, id: ServerId, addrs: &[IpAddr]) {
    let slot = &backend.servers[id.index()];
    let current = slot.resolved().map(|a| a.ip());
    let maint = backend.state().servers[id.index()].resolution_maint;
    let ip = pick_address(current, addrs);
    if ip == current && !maint {
        return;
    }
    backend.set_resolved(id, ip);
    match (current, ip) {
        (Some(old), Some(new)) if old != new => {
            tracing::info!(target: "tether::dns", "{}/{} changed its IP from {old} to {new} by DNS.", backend.name, slot.name);
        }
        (None, Some(new)) => {
            tracing::info!(target: "tether::dns", "{}/{} changed its IP from (none) to {new} by DNS.", backend.name, slot.name);
        }
        _ => {}
    }
    if maint {
        tracing::warn!(target: "tether::dns", "Server {}/{} administratively READY thanks to valid DNS answer.", backend.name, slot.name);
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
