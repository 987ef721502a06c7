//! The invariants the fuzz targets check, one function per target, shared with the workspace's
//! `cargo test` (`daemon/tests/fuzz_corpus.rs` runs every corpus and regression input through
//! them, so a crash found once stays fixed). Beyond "never panics":
//! - the ClientHello parser gives the same outcome however the stream is split into reads, and
//!   a decided outcome does not change when more bytes arrive (it never needed them);
//! - the server flight gives the same events however the stream is split;
//! - a PROXY header's decided result does not change with trailing bytes, and never claims
//!   more bytes than it was given;
//! - an haproxy.cfg that loads without errors converts to TOML that loads to the same config;
//! - a native TOML config that loads serialises to TOML that loads to the same config;
//! - a stats request head that parses stays within its bounds (headers, body length), and a
//!   percent-encoded value decodes back to itself;
//! - a simulator scenario that loads serialises to TOML that loads and serialises the same;
//! - the ticket-key learner, taught by whole connections (ClientHello, server flight) in any
//!   split, decides and learns the same whatever the split, and never holds more than its caps.

use tether_core::engine::proxy_protocol::{self, ProxyHeader};
use tether_core::tls::server_flight::ServerFlight;
use tether_core::tls::ClientHelloParser;
use tether_core::Progress;

pub mod ticket_keys;
pub use ticket_keys::ticket_keys;

/// The cap the ClientHello target parses with: small, so inputs reach it.
pub const HELLO_CAP: usize = 2048;

/// Cut points from the first bytes of `data`: (cuts, stream).
fn cuts(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(n % 8).min(rest.len());
    let (seeds, stream) = rest.split_at(n);
    let mut at: Vec<usize> = seeds
        .iter()
        .map(|&s| usize::from(s) * stream.len() / 256)
        .collect();
    at.sort_unstable();
    at.dedup();
    (at, stream)
}

/// ClientHello: the same outcome whatever the split into reads, and a decision taken on a
/// prefix is the one the whole stream gets (the parser never needed the later bytes).
pub fn client_hello(data: &[u8]) {
    let (cuts, stream) = cuts(data);
    let whole = format!("{:?}", ClientHelloParser::new(HELLO_CAP).parse(stream));
    let mut split = ClientHelloParser::new(HELLO_CAP);
    for &c in &cuts {
        let outcome = split.parse(&stream[..c]);
        if !matches!(outcome, Progress::NeedMore) {
            assert_eq!(
                format!("{outcome:?}"),
                whole,
                "decided on a prefix, then changed"
            );
            return;
        }
    }
    let last = format!("{:?}", split.parse(stream));
    assert_eq!(last, whole, "re-split stream parsed differently");
}

/// The server's cleartext flight: the same events whatever the split.
pub fn server_flight(data: &[u8]) {
    let (cuts, stream) = cuts(data);
    let cap = 16 * 1024;
    let whole = ServerFlight::new(cap).feed(stream);
    let mut flight = ServerFlight::new(cap);
    let mut events = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        flight.feed_into(&stream[from..c], &mut events);
        from = c;
    }
    assert_eq!(whole, events, "re-split server stream gave other events");
}

/// PROXY v1/v2: decided results are final and stay within the bytes given.
pub fn proxy_header(data: &[u8]) {
    let result = proxy_protocol::parse(data);
    if let Ok(Progress::Done(ProxyHeader { header_len, .. })) = result {
        assert!(header_len <= data.len(), "header longer than the input");
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\x16\x03\x01trailing");
        assert_eq!(
            proxy_protocol::parse(&longer),
            result,
            "trailing bytes changed the header"
        );
        assert_eq!(proxy_protocol::parse(&data[..header_len]), result);
    }
    if let Err(e) = result {
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            proxy_protocol::parse(&longer),
            Err(e),
            "an error was not final"
        );
    }
    for cut in 0..data.len().min(64) {
        let _ = proxy_protocol::parse(&data[..cut]);
    }
}

/// Peers protocol, accepting side: whatever arrives (after a valid hello when the first byte is
/// even), the session never panics, and reports the same events however the bytes are split.
pub fn peers_session(data: &[u8]) {
    use std::sync::Arc;
    use tether_core::peers::{LocalTable, Session, SessionConfig};
    use tether_core::Timestamp;
    let config = Arc::new(SessionConfig {
        local_name: "lb2".into(),
        tables: vec![LocalTable {
            name: "app".into(),
            key_len: 32,
            expire_ms: 60_000,
        }],
    });
    let (cut_at, stream) = cuts(data);
    let hello: &[u8] = if data.first().is_some_and(|b| b % 2 == 0) {
        b"HAProxyS 2.1\nlb2\nlb1 1 1\n"
    } else {
        b""
    };
    let run = |pieces: &[&[u8]]| {
        let mut s = Session::accept(config.clone(), vec!["lb1".into()], Timestamp(0));
        let _ = s.handle_input(hello, Timestamp(0));
        for p in pieces {
            let _ = s.handle_input(p, Timestamp(1));
        }
        std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>()
    };
    let whole = run(&[stream]);
    let mut pieces = Vec::new();
    let mut from = 0;
    for &c in &cut_at {
        pieces.push(&stream[from..c]);
        from = c;
    }
    pieces.push(&stream[from..]);
    assert_eq!(
        whole,
        run(&pieces),
        "re-split peers stream gave other events"
    );
}

/// haproxy.cfg import: a file that loads converts to TOML that loads to the same config.
/// (Built for fuzzing only with the `daemon` feature: the importer pulls in the whole daemon.)
#[cfg(any(feature = "daemon", not(fuzzing)))]
pub fn haproxy_cfg(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((config, _)) = tether::haproxy::convert_haproxy("fuzz.cfg", text) else {
        return;
    };
    let toml = tether::haproxy::to_toml(&config);
    let back = tether_core::config::load_toml("converted.toml", &toml)
        .unwrap_or_else(|e| panic!("converted TOML does not load: {e}\n{toml}"));
    assert_eq!(back, config, "converted TOML loads to another config");
}

/// Native TOML: a config that loads serialises to TOML that loads to the same config.
pub fn native_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = tether_core::config::load_toml("fuzz.toml", text) else {
        return;
    };
    let again = toml::to_string(&config).expect("a loaded config serialises");
    let back = tether_core::config::load_toml("again.toml", &again)
        .unwrap_or_else(|e| panic!("serialised config does not load: {e}\n{again}"));
    assert_eq!(back, config);
}

/// Stats/table HTTP requests: the head parser (the stats listener's only parser of stranger
/// bytes) never panics, keeps every bound, and its decoded values round-trip through encoding.
#[cfg(any(feature = "daemon", not(fuzzing)))]
pub fn stats_request(data: &[u8]) {
    use tether::stats::server::{parse_head, percent_decode, percent_encode, MAX_BODY, MAX_HEAD};
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len())
        .min(MAX_HEAD);
    let Ok((req, body_len)) = parse_head(&data[..end]) else {
        return;
    };
    assert!(
        body_len <= MAX_BODY,
        "body length {body_len} over the bound"
    );
    assert!(req.headers.len() <= 64, "more headers than the bound");
    assert!(!req.method.is_empty() && req.method.bytes().all(|b| b.is_ascii_uppercase()));
    for (name, _) in &req.headers {
        assert_eq!(
            name,
            &name.to_ascii_lowercase(),
            "header name not lower-cased"
        );
    }
    for value in std::iter::once(&req.path).chain(req.query.iter().flat_map(|(k, v)| [k, v])) {
        assert_eq!(&percent_decode(&percent_encode(value), true), value);
    }
}

/// Simulator scenario TOML: a scenario that loads serialises to TOML that loads again and
/// serialises to the same text (the scenario has no `PartialEq`; its TOML is its identity).
#[cfg(any(feature = "sim", not(fuzzing)))]
pub fn scenario_toml(data: &[u8]) {
    use tether_sim::scenario::Scenario;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::from_toml(text) else {
        return;
    };
    let once = toml::to_string(&scenario).expect("a loaded scenario serialises");
    let back = Scenario::from_toml(&once)
        .unwrap_or_else(|e| panic!("serialised scenario does not load: {e}\n{once}"));
    let twice = toml::to_string(&back).expect("a reloaded scenario serialises");
    assert_eq!(once, twice, "scenario changed through TOML");
}

/// A target: its name (the corpus directory) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for the corpus runner.
pub fn targets() -> Vec<Target> {
    let all: Vec<Target> = vec![
        ("client_hello", client_hello),
        ("server_flight", server_flight),
        ("proxy_header", proxy_header),
        ("native_toml", native_toml),
        ("peers_session", peers_session),
        ("ticket_keys", ticket_keys),
    ];
    #[cfg(any(feature = "daemon", not(fuzzing)))]
    let all = {
        let mut all = all;
        all.push(("haproxy_cfg", haproxy_cfg));
        all.push(("stats_request", stats_request));
        all
    };
    #[cfg(any(feature = "sim", not(fuzzing)))]
    let all = {
        let mut all = all;
        all.push(("scenario_toml", scenario_toml));
        all
    };
    all
}
