//! Semantic checks of a [`Config`]: what serde cannot see (references, duplicates, ranges,
//! addresses, exclusive settings). Each problem carries an index-form key path and a fix.

use super::{
    AffinityKey, Backend, BalanceAlgorithm, CheckTls, Config, ConfigError, Sample, Server, Stats,
    StickKeyType,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Whether `text` is `HOST:PORT` with a non-zero port (`[v6]:PORT` accepted).
pub(crate) fn is_host_port(text: &str) -> bool {
    if text.parse::<SocketAddr>().is_ok() {
        return !text.ends_with(":0");
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p != 0);
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    port_ok && host_ok
}

/// Whether two listening addresses collide: same port, and the same IP or a wildcard on
/// either side.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The fix for a bind address written HAProxy's way.
pub(crate) fn bind_fix(text: &str) -> String {
    let port = text.rsplit_once(':').map(|(_, p)| p).unwrap_or("9443");
    let port = if port.parse::<u16>().is_ok() {
        port
    } else {
        "9443"
    };
    format!(
        "write an IP and a port, e.g. bind = [\"0.0.0.0:{port}\"] for every IPv4 address or \
         [\"127.0.0.1:{port}\"] for loopback only"
    )
}

impl Config {
    /// Every semantic problem, with index-form key paths (`backend[0].server[2].address`) and
    /// line 0; [`super::load_toml`] places them in the file.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut err = |path: String, msg: String, fix: String| {
            out.push(ConfigError::at(path, msg, fix));
        };
        if let Some(p) = self
            .global
            .pipe_size
            .and_then(super::Global::pipe_size_problem)
        {
            err(
                "global.pipe-size".into(),
                format!("pipe-size: {p}"),
                "write e.g. pipe-size = \"256k\", or leave it out for the system's 64k".into(),
            );
        }
        if self.global.maxconn == 0 {
            err(
                "global.maxconn".into(),
                "maxconn 0 would never accept a connection".into(),
                "write e.g. maxconn = 4000".into(),
            );
        }
        if self.frontends.is_empty() {
            err(
                "frontend".into(),
                "no frontend: nothing listens".into(),
                "add [[frontend]] with name, bind = [\"0.0.0.0:9443\"] and backend = \"app\""
                    .into(),
            );
        }
        self.validate_frontends(&mut err);
        self.validate_bind_conflicts(&mut err);
        let mut seen = BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let p = format!("backend[{i}]");
            check_name(&mut err, &p, &b.name, "backend", &mut seen);
            validate_backend(&mut err, &p, b);
            validate_stick_rules(&mut err, &p, b);
            validate_servers(&mut err, &p, b);
        }
        self.validate_tracks(&mut err);
        self.validate_peers(&mut err);
        if let Some(a) = &self.admin {
            validate_admin_socket(&mut err, a);
        }
        if let Some(s) = &self.stats {
            validate_stats(&mut err, s);
            validate_monitor_fail(&mut err, s, &self.backends);
        }
        super::log::validate(&self.logs, &mut err);
        super::resolvers::validate(self, &mut err);
        out
    }

    /// `track`: the tracked server exists and is checked (by `check`, an agent or a track of its
    /// own), the tracker does no checks of its own, and no chain loops back (HAProxy's
    /// `srv_apply_track`, `init_srv_check`).
    fn validate_tracks(&self, err: &mut impl FnMut(String, String, String)) {
        for (i, b) in self.backends.iter().enumerate() {
            for (j, s) in b.servers.iter().enumerate() {
                let Some((tb, ts)) = s.tracked(&b.name) else {
                    continue;
                };
                let path = format!("backend[{i}].server[{j}].track");
                let name = format!("{}/{}", b.name, s.name);
                if s.check {
                    err(
                        path.clone(),
                        format!("server {name} tracks {tb}/{ts} and also runs its own checks"),
                        "write check = false: a tracking server takes its health from the tracked one (HAProxy refuses both)".into(),
                    );
                }
                let Some(t) = self.server(tb, ts) else {
                    err(
                        path,
                        format!("server {name} tracks {tb}/{ts}, which does not exist"),
                        format!(
                            "name a server of the configuration, e.g. track = \"{}\"",
                            self.example_track(b, s)
                        ),
                    );
                    continue;
                };
                if !t.check && t.agent.is_none() && t.track.is_none() {
                    err(
                        path,
                        format!("server {name} tracks {tb}/{ts}, which has no checks"),
                        format!(
                            "enable checks on {tb}/{ts} (check = true) or track a checked server"
                        ),
                    );
                } else if let Some(end) = self.track_loop(&b.name, s) {
                    err(
                        path,
                        format!("server {name} tracks a chain that loops back to {end}"),
                        "end the chain at a server that runs checks (`check`; native: check = true) and tracks nothing".into(),
                    );
                }
            }
        }
    }

    /// The server `backend/name`.
    fn server(&self, backend: &str, name: &str) -> Option<&Server> {
        let b = self.backends.iter().find(|b| b.name == backend)?;
        b.servers.iter().find(|s| s.name == name)
    }

    /// A checked server to suggest tracking instead, `backend/server` (or `server` when in `b`).
    fn example_track(&self, b: &Backend, s: &Server) -> String {
        let own = b.servers.iter().find(|o| o.check && o.name != s.name);
        match own {
            Some(o) => o.name.clone(),
            None => (self.backends.iter())
                .flat_map(|x| x.servers.iter().map(move |o| (x, o)))
                .find(|(_, o)| o.check)
                .map_or("backend/server".into(), |(x, o)| {
                    format!("{}/{}", x.name, o.name)
                }),
        }
    }

    /// Where following `s`'s track chain from backend `backend` comes back to a server already
    /// seen (`backend/server`), if it does.
    fn track_loop(&self, backend: &str, s: &Server) -> Option<String> {
        let mut seen = vec![(backend.to_string(), s.name.clone())];
        let mut cur = (backend.to_string(), s);
        while let Some((tb, ts)) = cur.1.tracked(&cur.0) {
            if seen.iter().any(|(b, n)| b == tb && n == ts) {
                return Some(format!("{tb}/{ts}"));
            }
            let next = self.server(tb, ts)?;
            seen.push((tb.to_string(), ts.to_string()));
            cur = (tb.to_string(), next);
            if seen.len() > self.backends.iter().map(|b| b.servers.len()).sum::<usize>() {
                return None;
            }
        }
        None
    }

    /// A stick table naming a peers section that does not exist, a peers section without a
    /// local name, peer names used twice, peer addresses that do not parse.
    fn validate_peers(&self, err: &mut impl FnMut(String, String, String)) {
        let section = self.peers.as_ref().map(|p| p.name.as_str());
        for (i, b) in self.backends.iter().enumerate() {
            match b.stick_table.peers.as_deref() {
                Some(name) if Some(name) != section => err(
                    format!("backend[{i}].stick-table.peers"),
                    format!("backend {}: stick table shared with peers {name:?}, which is not defined", b.name),
                    format!("add [peers] with name = {name:?}, local = \"<this host's peer name>\" and its [[peers.peer]] entries"),
                ),
                _ => {}
            }
        }
        let Some(p) = &self.peers else { return };
        if p.local.trim().is_empty() {
            err(
                "peers.local".into(),
                "peers: no local peer name".into(),
                "write local = \"lb1\" (the name the other peers list for this host)".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, e) in p.peers.iter().enumerate() {
            if !seen.insert(e.name.as_str()) {
                err(
                    format!("peers.peer[{i}].name"),
                    format!("peer {:?} is listed twice", e.name),
                    "give each peer one entry".into(),
                );
            }
            if e.address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                err(
                    format!("peers.peer[{i}].address"),
                    format!("peer {:?}: address {:?} has no port", e.name, e.address),
                    "write host:port, e.g. address = \"10.0.0.2:10000\"".into(),
                );
            }
        }
    }

    /// Two listeners on one address (or a wildcard and an address on the same port): one
    /// would silently take every connection, or the second bind fails at start. Port 0 (the
    /// system picks a free port) never conflicts.
    fn validate_bind_conflicts(&self, err: &mut impl FnMut(String, String, String)) {
        let mut taken: Vec<(SocketAddr, String)> = Vec::new();
        let binds = self.frontends.iter().enumerate().flat_map(|(i, f)| {
            f.bind.iter().map(move |b| {
                (
                    format!("frontend[{i}].bind"),
                    format!("frontend {}", f.name),
                    b,
                )
            })
        });
        let stats = self.stats.iter().map(|s| {
            (
                "stats.bind".to_string(),
                "the stats page".to_string(),
                &s.bind,
            )
        });
        for (path, owner, text) in binds.chain(stats) {
            let Ok(addr) = text.parse::<SocketAddr>() else {
                continue;
            };
            if addr.port() == 0 {
                continue;
            }
            if let Some((_, first)) = taken.iter().find(|(a, _)| overlaps(*a, addr)) {
                err(
                    path,
                    format!("{owner} binds {addr}, which {first} already listens on"),
                    "give each listener its own address or port".into(),
                );
            } else {
                taken.push((addr, owner));
            }
        }
    }

    /// Frontends: names, bind addresses, the backend each one names.
    fn validate_frontends(&self, err: &mut impl FnMut(String, String, String)) {
        let backend_names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (i, f) in self.frontends.iter().enumerate() {
            let p = format!("frontend[{i}]");
            check_name(err, &p, &f.name, "frontend", &mut seen);
            if f.bind.is_empty() {
                err(
                    format!("{p}.bind"),
                    "no bind address".into(),
                    "write e.g. bind = [\"0.0.0.0:9443\"]".into(),
                );
            }
            for b in &f.bind {
                if b.parse::<SocketAddr>().is_err() {
                    err(
                        format!("{p}.bind"),
                        format!("invalid bind address \"{b}\""),
                        bind_fix(b),
                    );
                }
            }
            if !backend_names.contains(&f.backend.as_str()) {
                let fix = if backend_names.is_empty() {
                    format!("add a [[backend]] with name = \"{}\"", f.backend)
                } else {
                    format!(
                        "write one of the defined backends: {}",
                        backend_names
                            .iter()
                            .map(|n| format!("backend = \"{n}\""))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                };
                err(
                    format!("{p}.backend"),
                    format!("unknown backend \"{}\"", f.backend),
                    fix,
                );
            }
            validate_routes(err, &p, f, &backend_names);
            if f.inspect_cap == 0 {
                err(
                    format!("{p}.inspect-cap"),
                    "inspect-cap 0 cannot hold a ClientHello".into(),
                    "write inspect-cap = \"15k\" (HAProxy's limit)".into(),
                );
            }
        }
    }
}

/// A frontend's `[[frontend.route]]` rules: actions, backends, conditions, list files; and a
/// `destination` test needs a bind address that says which address the client reached.
fn validate_routes(
    err: &mut impl FnMut(String, String, String),
    p: &str,
    f: &super::Frontend,
    backend_names: &[&str],
) {
    if let Err(problems) = super::route::compile_rules(&f.routes, backend_names) {
        for (j, pr) in problems {
            err(format!("{p}.route[{j}].{}", pr.key), pr.message, pr.fix);
        }
    }
    let wildcard_bind = f.bind_addrs().iter().any(|a| a.ip().is_unspecified());
    for (j, r) in f.routes.iter().enumerate() {
        let uses_dst = [&r.when, &r.unless]
            .into_iter()
            .flatten()
            .any(super::route::Match::mentions_destination);
        if uses_dst && wildcard_bind {
            err(
                format!("{p}.route[{j}]"),
                "a destination test on a frontend bound to every address (0.0.0.0 or ::)".into(),
                "bind the addresses the test tells apart, e.g. bind = [\"192.0.2.10:443\"], or \
                 test destination-port instead"
                    .into(),
            );
        }
    }
}

/// One backend's own settings: servers present, affinity, hashing, table, checks.
fn validate_backend(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    if b.servers.is_empty() {
        err(
            p.to_string(),
            format!("backend \"{}\" has no server", b.name),
            "add [[backend.server]] with name = \"s1\" and address = \"10.0.0.1:443\"".into(),
        );
    }
    if b.affinity.is_some() && b.haproxy.is_some() {
        err(
            format!("{p}.affinity"),
            "both `affinity` and [backend.haproxy] rules are set".into(),
            "keep one: the native `affinity` chain, or HAProxy's stick rules".into(),
        );
    }
    validate_affinity(err, p, b);
    validate_balance(err, p, b);
    validate_table_and_checks(err, p, b);
}

/// The native affinity chain (each key once, no imported `rule` key) and the ticket key name.
fn validate_affinity(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    if let Some(chain) = &b.affinity {
        let mut keys = BTreeSet::new();
        for k in chain {
            if *k == AffinityKey::Rule {
                err(
                    format!("{p}.affinity"),
                    "affinity key \"rule\" names the keys of imported HAProxy stick rules".into(),
                    "use session-id, ticket, psk, source or sni in a native chain".into(),
                );
            }
            if !keys.insert(*k) {
                err(
                    format!("{p}.affinity"),
                    format!("affinity key {k:?} listed twice"),
                    "list each key once, e.g. affinity = [\"session-id\", \"ticket\", \
                     \"psk\", \"source\"]"
                        .into(),
                );
            }
        }
    }
    if let Some(span) = b.ticket_key_name {
        if span.length == 0 || usize::from(span.length) > crate::affinity::ticket_keys::MAX_NAME_LEN
        {
            err(
                format!("{p}.ticket-key-name.length"),
                format!("ticket key name length {} out of range 1..=32", span.length),
                "write length = 16 (RFC 5077's key_name, as OpenSSL and BoringSSL use)".into(),
            );
        }
    }
}

/// Settings of the balance algorithm that only one algorithm reads, and their ranges.
fn validate_balance(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    if b.hash_key.is_some() && b.balance != BalanceAlgorithm::Hash {
        err(
            format!("{p}.hash-key"),
            "hash-key only applies to balance = \"hash\"".into(),
            "write balance = \"hash\" or remove hash-key".into(),
        );
    }
    if let Some(d) = b.random_draws {
        if b.balance != BalanceAlgorithm::Random {
            err(
                format!("{p}.random-draws"),
                "random-draws only applies to balance = \"random\"".into(),
                "write balance = \"random\" or remove random-draws".into(),
            );
        }
        let max = crate::balance::random::MAX_DRAWS;
        if d == 0 || d > max {
            err(
                format!("{p}.random-draws"),
                format!("random-draws {d} out of range 1..={max}"),
                "write random-draws = 2 (HAProxy's default: the less loaded of two)".into(),
            );
        }
    }
    if let Some(f) = b.hash_balance_factor {
        if f != 0 && f < 100 {
            err(
                format!("{p}.hash-balance-factor"),
                format!("hash-balance-factor {f} is below 100"),
                "write a percentage of at least 100, e.g. hash-balance-factor = 150".into(),
            );
        }
    }
}

/// The stick table's size and key length, and the health-check timing and protocol.
fn validate_table_and_checks(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    if b.stick_table.size == 0 {
        err(
            format!("{p}.stick-table.size"),
            "a stick table of size 0 holds nothing".into(),
            "write e.g. size = \"60k\"".into(),
        );
    }
    if b.stick_table.key_len == 0 || b.stick_table.key_len > 1024 {
        err(
            format!("{p}.stick-table.key-len"),
            format!("key-len {} out of range 1..=1024", b.stick_table.key_len),
            "write key-len = 32 (the longest TLS session ID)".into(),
        );
    }
    if b.check.rise == 0 || b.check.fall == 0 {
        err(
            format!("{p}.check"),
            "rise and fall must be at least 1".into(),
            "write rise = 2 and fall = 3 (HAProxy's defaults)".into(),
        );
    }
    if let Err(e) = b.check.protocol.plan() {
        err(format!("{p}.check.protocol"), e.what, e.fix);
    }
    if b.check.inter.is_zero() {
        err(
            format!("{p}.check.inter"),
            "check interval 0".into(),
            "write inter = \"2s\"".into(),
        );
    }
}

/// HAProxy stick rules: each sample must fit the table's key type.
fn validate_stick_rules(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    if let Some(rules) = &b.haproxy {
        for (j, r) in rules.stick.iter().enumerate() {
            let ip_sample = r.sample == Sample::Src;
            let ip_table = b.stick_table.key_type == StickKeyType::Ip;
            if ip_sample != ip_table {
                err(
                    format!("{p}.haproxy.stick[{j}].sample"),
                    format!(
                        "sample {} does not fit a stick table of type {:?}",
                        r.sample, b.stick_table.key_type
                    ),
                    if ip_sample {
                        "set [backend.stick-table] type = \"ip\"".into()
                    } else {
                        "set [backend.stick-table] type = \"binary\" (or \"string\" for sni)".into()
                    },
                );
            }
        }
    }
}

/// Servers: names, addresses, weights, rise/fall overrides.
fn validate_servers(err: &mut impl FnMut(String, String, String), p: &str, b: &Backend) {
    let mut servers = BTreeSet::new();
    let mut ids = std::collections::BTreeMap::new();
    for (j, s) in b.servers.iter().enumerate() {
        let sp = format!("{p}.server[{j}]");
        check_name(err, &sp, &s.name, "server", &mut servers);
        if let Some(id) = s.id {
            check_server_id(err, &sp, id, &s.name, &mut ids);
        }
        if let Some(unix) = super::UnixAddress::parse(&s.address) {
            if let Some(problem) = unix.problem() {
                err(
                    format!("{sp}.address"),
                    format!("unix socket address \"{}\": {problem}", s.address),
                    "write address = \"unix@/run/app.sock\" (or \"abns@NAME\"), the path \
                     at most 107 bytes"
                        .into(),
                );
            }
        } else if !is_host_port(&s.address) {
            err(
                format!("{sp}.address"),
                format!("invalid address \"{}\"", s.address),
                "expected HOST:PORT, e.g. address = \"10.0.0.1:443\", or a unix socket, \
                 address = \"unix@/run/app.sock\""
                    .into(),
            );
        }
        if s.weight > 256 {
            err(
                format!("{sp}.weight"),
                format!("weight {} above 256", s.weight),
                "write a weight from 0 to 256, e.g. weight = 100".into(),
            );
        }
        if s.rise == Some(0) || s.fall == Some(0) {
            err(
                sp.clone(),
                "rise and fall must be at least 1".into(),
                "write rise = 2 and fall = 3, or remove the overrides".into(),
            );
        }
        validate_check_tls(err, p, &sp, b, s);
        if let Some(a) = &s.agent {
            if a.port == 0 {
                err(
                    format!("{sp}.agent.port"),
                    "agent port 0".into(),
                    "write the port the agent listens on, e.g. agent = { port = 5555 }".into(),
                );
            }
        }
    }
}

/// A server's checks over TLS: HAProxy refuses `verify required` (its default) without a
/// `ca-file`, and so does tether.
fn validate_check_tls(
    err: &mut impl FnMut(String, String, String),
    p: &str,
    sp: &str,
    b: &Backend,
    s: &Server,
) {
    let needs_tls = b.check.protocol.plan().is_ok_and(|plan| plan.needs_tls());
    let (path, tls) = match (&s.check_tls, &b.check.tls) {
        (Some(t), _) => (format!("{sp}.check-tls"), t.clone()),
        (None, Some(t)) => (format!("{p}.check.tls"), t.clone()),
        (None, None) => (
            format!("{p}.check.protocol"),
            CheckTls {
                enabled: false,
                ..CheckTls::default()
            },
        ),
    };
    if !s.check || !(tls.enabled || needs_tls) {
        return;
    }
    if let Some(e) = tls.problem() {
        err(path, format!("server {}: {}", s.name, e.what), e.fix);
    }
}

/// `monitor fail` conditions name existing backends.
fn validate_monitor_fail(
    err: &mut impl FnMut(String, String, String),
    s: &Stats,
    backends: &[Backend],
) {
    for (i, m) in s.monitor_fail.iter().enumerate() {
        if !backends.iter().any(|b| b.name == m.backend) {
            let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
            err(
                format!("stats.monitor-fail[{i}].backend"),
                format!("unknown backend \"{}\" in nbsrv()", m.backend),
                format!("name one of the backends: {}", names.join(", ")),
            );
        }
    }
}

/// The stats page: its address, path and password source.
fn validate_stats(err: &mut impl FnMut(String, String, String), s: &Stats) {
    if s.bind.parse::<SocketAddr>().is_err() {
        err(
            "stats.bind".into(),
            format!("invalid bind address \"{}\"", s.bind),
            "write e.g. bind = \"127.0.0.1:1936\"".into(),
        );
    }
    if !s.uri.starts_with('/') {
        err(
            "stats.uri".into(),
            format!("uri \"{}\" does not start with /", s.uri),
            "write e.g. uri = \"/\"".into(),
        );
    }
    if let Some(a) = &s.auth {
        let sources = [
            a.password_file.is_some(),
            a.password_env.is_some(),
            a.password.is_some(),
        ];
        match sources.iter().filter(|&&set| set).count() {
            0 => err(
                "stats.auth".into(),
                "no password source".into(),
                "write password-file = \"/etc/tether/stats.pass\" or password-env = \
                 \"TETHER_STATS_PASSWORD\""
                    .into(),
            ),
            1 => {}
            _ => err(
                "stats.auth".into(),
                "more than one of password-file, password-env and password is set".into(),
                "keep one of them".into(),
            ),
        }
        if a.password.as_ref().is_some_and(|p| p.0.is_empty()) {
            err(
                "stats.auth.password".into(),
                "the password is empty".into(),
                "write the password after the colon: stats auth admin:PASSWORD".into(),
            );
        }
    }
}

/// A server's `id`: non-zero and held by no other server of the backend (HAProxy refuses both).
fn check_server_id<'a>(
    err: &mut impl FnMut(String, String, String),
    path: &str,
    id: u32,
    name: &'a str,
    seen: &mut std::collections::BTreeMap<u32, &'a str>,
) {
    if id == 0 {
        err(
            format!("{path}.id"),
            format!("server \"{name}\" has id 0"),
            "write a positive id, e.g. id = 1, or remove it to number the server by position"
                .into(),
        );
    } else if let Some(other) = seen.insert(id, name) {
        err(
            format!("{path}.id"),
            format!("server \"{name}\" has id {id}, already server \"{other}\"'s"),
            "give each server of the backend its own id, or remove it to number the server \
             by position"
                .into(),
        );
    }
}

fn check_name(
    err: &mut impl FnMut(String, String, String),
    path: &str,
    name: &str,
    kind: &str,
    seen: &mut BTreeSet<String>,
) {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        err(
            format!("{path}.name"),
            format!("invalid {kind} name \"{name}\""),
            format!("write a name without spaces, e.g. name = \"{kind}1\""),
        );
    } else if !seen.insert(name.to_string()) {
        err(
            format!("{path}.name"),
            format!("duplicate {kind} name \"{name}\""),
            format!("give each {kind} its own name"),
        );
    }
}

/// The runtime API socket: a non-empty path (unix sockets take at most 107 bytes) and an octal
/// mode.
fn validate_admin_socket(err: &mut impl FnMut(String, String, String), a: &super::AdminSocket) {
    if a.socket.is_empty() || a.socket.len() > 107 {
        err(
            "admin.socket".into(),
            format!(
                "socket path {:?} must be 1 to 107 bytes (a unix socket address limit)",
                a.socket
            ),
            "write e.g. socket = \"/run/tether/admin.sock\"".into(),
        );
    }
    if u32::from_str_radix(&a.mode, 8).map_or(true, |m| m > 0o777) {
        err(
            "admin.mode".into(),
            format!("mode {:?} is not octal permissions", a.mode),
            "write e.g. mode = \"600\"".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert!(is_host_port("10.0.0.1:443"));
        assert!(is_host_port("[::1]:443"));
        assert!(is_host_port("node1.example:8443"));
        assert!(!is_host_port("node1"));
        assert!(!is_host_port("check"));
        assert!(!is_host_port("10.0.0.1:0"));
        assert!(!is_host_port(":443"));
        assert!(!is_host_port("a b:443"));
    }
}
