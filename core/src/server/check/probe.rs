//! One run of a check: a state machine over a [`Plan`](super::Plan)'s steps. The caller asks
//! [`Probe::poll`] what to do, does it on its network, and reports back; the probe ends with a
//! [`Verdict`].
//!
//! A plan that does not start with a connect step gets one, as in HAProxy, over TLS when the
//! server has `check-ssl`. A TLS connect is done in two stages, the TCP connection then the
//! handshake, so that a failure or timeout in the handshake is a layer-6 verdict (`L6RSP`,
//! `L6TOUT`) as HAProxy reports it. Every send clears
//! the bytes received so far, so each expect judges the answer to the last thing sent; a plan
//! that ends without an expect passes with `L4OK`, otherwise with the last expect's verdict.

use std::sync::Arc;

use super::expect::Outcome;
use super::status::{CheckStatus, Verdict};
use super::{CheckDefaults, Connect, Step, MAX_RESPONSE};

/// What the caller must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Io {
    /// Connect to the check address, on `addr` and `port` if given, and open the connection as
    /// `opening` says; then [`Probe::on_connected`] or [`Probe::on_connect_error`], and for a
    /// TLS opening [`Probe::on_handshake_done`] or [`Probe::on_handshake_error`].
    Connect {
        /// Port instead of the check port.
        port: Option<u16>,
        /// Address instead of the check address.
        addr: Option<std::net::IpAddr>,
        /// What goes before the check's own bytes.
        opening: Opening,
    },
    /// Write all these bytes; then [`Probe::on_sent`] (or [`Probe::on_io_error`]).
    Send(Vec<u8>),
    /// Read; then [`Probe::on_data`] (empty when the server closed).
    Recv,
    /// The check is over.
    Done(Verdict),
}

/// What a new check connection needs before the check's own bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// A PROXY header first (the server's version; a check's is a LOCAL one).
    pub send_proxy: bool,
    /// Then a TLS handshake.
    pub tls: bool,
    /// The server name that handshake sends.
    pub sni: Sni,
}

/// The server name a check's TLS handshake sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sni {
    /// The server's `check-sni` (none when it has none).
    Server,
    /// None.
    Absent,
    /// This one (`tcp-check connect ssl sni NAME`).
    Name(Arc<str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Handshaking,
    Connected,
}

/// A check in progress.
#[derive(Clone, Debug)]
pub struct Probe {
    steps: Arc<[Step]>,
    defaults: CheckDefaults,
    tls: bool,
    next: usize,
    state: State,
    buf: Vec<u8>,
    eof: bool,
    last_pass: Option<Verdict>,
    verdict: Option<Verdict>,
}

impl Probe {
    /// A probe at the start of `steps`; default connects take the server's `defaults`.
    pub fn new(steps: Arc<[Step]>, defaults: CheckDefaults) -> Probe {
        Probe {
            steps,
            defaults,
            tls: false,
            next: 0,
            state: State::Idle,
            buf: Vec::new(),
            eof: false,
            last_pass: None,
            verdict: None,
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Io {
        if let Some(v) = &self.verdict {
            return Io::Done(v.clone());
        }
        if self.state == State::Idle {
            let connect = match self.steps.get(self.next) {
                Some(Step::Connect(c)) => {
                    self.next += 1;
                    c.clone()
                }
                _ => Connect {
                    default: true,
                    ..Connect::default()
                },
            };
            return self.connect(&connect);
        }
        loop {
            match self.steps.get(self.next) {
                None => {
                    let v = self
                        .last_pass
                        .take()
                        .unwrap_or_else(|| Verdict::new(CheckStatus::L4Ok, None, ""));
                    return self.finish(v);
                }
                Some(Step::Connect(c)) => {
                    let c = c.clone();
                    self.next += 1;
                    return self.connect(&c);
                }
                Some(Step::Send(bytes)) => {
                    let bytes = bytes.clone();
                    self.next += 1;
                    self.buf.clear();
                    self.eof = false;
                    return Io::Send(bytes);
                }
                Some(Step::Expect(e)) => {
                    let full = self.buf.len() >= MAX_RESPONSE;
                    match e.eval(&self.buf, self.eof || full) {
                        Outcome::NeedMore => return Io::Recv,
                        Outcome::Pass(v) => {
                            self.last_pass = Some(v);
                            self.next += 1;
                        }
                        Outcome::Fail(v) => return self.finish(v),
                    }
                }
            }
        }
    }

    fn connect(&mut self, c: &Connect) -> Io {
        self.state = State::Connecting;
        self.buf.clear();
        self.eof = false;
        self.tls = c.ssl || (c.default && self.defaults.ssl);
        let sni = match (&c.sni, c.default) {
            (Some(name), _) => Sni::Name(name.clone()),
            (None, true) => Sni::Server,
            (None, false) => Sni::Absent,
        };
        Io::Connect {
            port: c.port,
            addr: c.addr,
            opening: Opening {
                send_proxy: c.send_proxy || (c.default && self.defaults.send_proxy),
                tls: self.tls,
                sni,
            },
        }
    }

    fn finish(&mut self, v: Verdict) -> Io {
        self.verdict = Some(v.clone());
        Io::Done(v)
    }

    /// The bytes received since the last send (an agent's line, read once the probe is done).
    pub fn received(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the probe waits for a connection (a timeout now is `L4TOUT`).
    pub fn connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// The TCP connection is up (a TLS connect now does its handshake).
    pub fn on_connected(&mut self) {
        self.state = if self.tls {
            State::Handshaking
        } else {
            State::Connected
        };
    }

    /// The TLS handshake completed.
    pub fn on_handshake_done(&mut self) {
        self.state = State::Connected;
    }

    /// The TLS handshake failed (an alert, a certificate refused, a server that does not speak
    /// TLS): `L6RSP`, with HAProxy's words and the reason.
    pub fn on_handshake_error(&mut self, error: &str) {
        let info = format!("SSL handshake failure ({error})");
        self.verdict = Some(Verdict::new(CheckStatus::L6Rsp, None, info));
    }

    /// The connection failed: `L4CON` with the system's words.
    pub fn on_connect_error(&mut self, error: &str) {
        self.verdict = Some(Verdict::new(CheckStatus::L4Con, None, error));
    }

    /// The bytes of the last [`Io::Send`] are written.
    pub fn on_sent(&mut self) {}

    /// A read or write failed on an established connection (reset): `L4CON`, as HAProxy
    /// reports a connection error met during a check.
    pub fn on_io_error(&mut self, error: &str) {
        self.verdict = Some(Verdict::new(CheckStatus::L4Con, None, error));
    }

    /// Bytes read; empty when the server closed its side. Beyond [`MAX_RESPONSE`] bytes are
    /// dropped and the answer is judged as it stands.
    pub fn on_data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.eof = true;
            return;
        }
        let room = MAX_RESPONSE.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The time allowed ran out: `L4TOUT` while connecting, `L6TOUT` in a TLS handshake, else
    /// the waiting rule's timeout status (`L7TOUT`, `L6TOUT` for SSL hello).
    pub fn on_timeout(&mut self) {
        if self.verdict.is_some() {
            return;
        }
        let status = if self.connecting() {
            CheckStatus::L4Tout
        } else if self.state == State::Handshaking {
            CheckStatus::L6Tout
        } else {
            match self.steps.get(self.next) {
                Some(Step::Expect(e)) => e.timeout,
                _ => CheckStatus::L7Tout,
            }
        };
        self.verdict = Some(Verdict::new(status, None, ""));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{CheckProtocol, Plan, TcpCheck, TcpStep};
    use super::*;
    use proptest::prelude::*;

    /// Runs `protocol` against a server that accepts and answers with `chunks` in turn (an
    /// empty chunk closes); a read after the last chunk times out. Returns what was sent.
    pub(in crate::server::check) fn run(
        protocol: &CheckProtocol,
        chunks: &[&[u8]],
    ) -> (Vec<u8>, Verdict) {
        let mut p = protocol.plan().expect("plan compiles").probe();
        let mut sent = Vec::new();
        let mut chunks = chunks.iter();
        for _ in 0..1000 {
            match p.poll() {
                Io::Connect { .. } => p.on_connected(),
                Io::Send(b) => {
                    sent.extend(b);
                    p.on_sent();
                }
                Io::Recv => match chunks.next() {
                    Some(c) => p.on_data(c),
                    None => p.on_timeout(),
                },
                Io::Done(v) => return (sent, v),
            }
        }
        panic!("probe did not finish");
    }

    fn tcp(steps: Vec<TcpStep>) -> CheckProtocol {
        CheckProtocol::TcpCheck(TcpCheck { steps })
    }

    #[test]
    fn connect_only_is_l4ok_and_failures_are_layer4() {
        let mut p = CheckProtocol::Connect.plan().unwrap().probe();
        assert_eq!(p.poll(), connect_io(None, false, true));
        p.on_connected();
        assert_eq!(
            p.poll(),
            Io::Done(Verdict::new(CheckStatus::L4Ok, None, ""))
        );
        let mut p = CheckProtocol::Connect.plan().unwrap().probe();
        p.poll();
        p.on_connect_error("Connection refused");
        assert!(
            matches!(p.poll(), Io::Done(v) if v.status == CheckStatus::L4Con && v.info == "Connection refused")
        );
        let mut p = CheckProtocol::Connect.plan().unwrap().probe();
        p.poll();
        p.on_timeout();
        assert!(matches!(p.poll(), Io::Done(v) if v.status == CheckStatus::L4Tout));
    }

    #[test]
    fn timeouts_after_connect_take_the_rule_status() {
        let (_, v) = run(&CheckProtocol::Redis, &[]);
        assert_eq!(v.status, CheckStatus::L7Tout);
        let (_, v) = run(&CheckProtocol::SslHello, &[b"\x16"]);
        assert_eq!(v.status, CheckStatus::L6Tout);
    }

    #[test]
    fn connect_steps_use_their_port_and_reset_the_answer() {
        let p = tcp(vec![
            TcpStep::Connect(super::super::ConnectStep {
                port: Some(8008),
                ..Default::default()
            }),
            TcpStep::Send("GET\r\n".into()),
            TcpStep::Expect("string master".into()),
            TcpStep::Connect(super::super::ConnectStep::default()),
            TcpStep::Expect("string ready".into()),
        ]);
        let mut probe = p.plan().unwrap().probe();
        assert_eq!(probe.poll(), connect_io(Some(8008), false, false));
        probe.on_connected();
        assert_eq!(probe.poll(), Io::Send(b"GET\r\n".to_vec()));
        probe.on_sent();
        assert_eq!(probe.poll(), Io::Recv);
        probe.on_data(b"role: master ready");
        assert_eq!(probe.poll(), connect_io(None, false, false));
        probe.on_connected();
        assert_eq!(probe.poll(), Io::Recv, "the first answer is gone");
        probe.on_data(b"ready");
        assert!(matches!(probe.poll(), Io::Done(v) if v.status == CheckStatus::L7Ok));
    }

    /// What a connect asks for with no rule options: HAProxy's own connects take the server's
    /// name; a written-out one sends none.
    fn connect_io(port: Option<u16>, tls: bool, default: bool) -> Io {
        Io::Connect {
            port,
            addr: None,
            opening: Opening {
                send_proxy: false,
                tls,
                sni: if default { Sni::Server } else { Sni::Absent },
            },
        }
    }

    fn defaults(ssl: bool, send_proxy: bool) -> CheckDefaults {
        CheckDefaults { ssl, send_proxy }
    }

    /// The TLS of each connect: HAProxy's own connects follow `check-ssl`, a written-out
    /// `tcp-check connect` is plain unless it says `ssl` (or `default`).
    #[test]
    fn connects_use_tls_as_check_ssl_and_the_rule_say() {
        let http = CheckProtocol::Http(Default::default()).plan().unwrap();
        for ssl in [false, true] {
            let mut p = http.probe_with(defaults(ssl, false));
            assert_eq!(p.poll(), connect_io(None, ssl, true));
        }
        let mysql = CheckProtocol::Mysql(Default::default()).plan().unwrap();
        assert_eq!(
            mysql.probe_with(defaults(true, false)).poll(),
            connect_io(None, true, true)
        );
        let step = |ssl: bool, default: bool| {
            tcp(vec![TcpStep::Connect(super::super::ConnectStep {
                ssl,
                default,
                ..Default::default()
            })])
            .plan()
            .unwrap()
        };
        let first = |plan: Plan, check_ssl: bool| match plan
            .probe_with(defaults(check_ssl, false))
            .poll()
        {
            Io::Connect { opening, .. } => opening.tls,
            other => panic!("{other:?}"),
        };
        assert!(!first(step(false, false), true), "written out: plain");
        assert!(first(step(true, false), false), "connect ssl");
        assert!(first(step(false, true), true), "connect default");
        assert!(!first(step(false, true), false));
        assert!(step(true, false).needs_tls() && !step(false, true).needs_tls());
    }

    /// HAProxy 2.6's `tcpcheck_eval_connect`: the rule's `sni` and `send-proxy` always; the
    /// server's `check-sni` and check PROXY header only on a default connect.
    #[test]
    fn sni_and_proxy_header_come_from_the_rule_or_from_the_server_on_default_connects() {
        let rule = |words: &[&str]| {
            let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            let step = TcpStep::from_haproxy(&words).unwrap();
            tcp(vec![step])
                .plan()
                .unwrap()
                .probe_with(defaults(true, true))
                .poll()
        };
        let io = |tls, sni, send_proxy| Io::Connect {
            port: None,
            addr: None,
            opening: Opening {
                send_proxy,
                tls,
                sni,
            },
        };
        assert_eq!(rule(&["connect", "ssl"]), io(true, Sni::Absent, false));
        assert_eq!(
            rule(&["connect", "ssl", "sni", "api.example", "send-proxy"]),
            io(true, Sni::Name("api.example".into()), true)
        );
        assert_eq!(rule(&["connect", "default"]), io(true, Sni::Server, true));
        assert_eq!(
            rule(&["connect", "default", "sni", "x.example"]),
            io(true, Sni::Name("x.example".into()), true)
        );
        let redis = CheckProtocol::Redis.plan().unwrap();
        assert_eq!(
            redis.probe_with(defaults(false, true)).poll(),
            io(false, Sni::Server, true),
            "a built-in check's connect is a default one"
        );
        assert_eq!(redis.probe().poll(), io(false, Sni::Server, false));
        match rule(&["connect", "addr", "127.0.0.9", "port", "8008"]) {
            Io::Connect { addr, port, .. } => {
                assert_eq!((addr, port), (Some([127, 0, 0, 9].into()), Some(8008)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handshake_failures_and_timeouts_are_layer6() {
        let plan = CheckProtocol::Http(Default::default()).plan().unwrap();
        let mut p = plan.probe_with(defaults(true, false));
        p.poll();
        p.on_connected();
        p.on_handshake_error("invalid peer certificate: UnknownIssuer");
        assert!(
            matches!(p.poll(), Io::Done(v) if v.status == CheckStatus::L6Rsp
            && v.info == "SSL handshake failure (invalid peer certificate: UnknownIssuer)")
        );
        let mut p = plan.probe_with(defaults(true, false));
        p.poll();
        p.on_connected();
        p.on_timeout();
        assert!(matches!(p.poll(), Io::Done(v) if v.status == CheckStatus::L6Tout));
        // Once the handshake is done, the HTTP layer judges.
        let mut p = plan.probe_with(defaults(true, false));
        p.poll();
        p.on_connected();
        p.on_handshake_done();
        assert!(matches!(p.poll(), Io::Send(_)));
        p.on_sent();
        assert_eq!(p.poll(), Io::Recv);
        p.on_data(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(p.poll(), Io::Done(v) if v.status == CheckStatus::L7Sts));
    }

    #[test]
    fn a_flood_is_cut_at_the_buffer_limit_and_judged() {
        let big = vec![b'x'; MAX_RESPONSE * 2];
        let (_, v) = run(
            &tcp(vec![TcpStep::Expect("string never".into())]),
            &[&big, &big],
        );
        assert_eq!(v.status, CheckStatus::L7Rsp);
    }

    proptest! {
        /// Hostile answers, cut anywhere, never panic a probe and always end it.
        #[test]
        fn any_answer_ends_every_protocol(
            answer in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..5),
            which in 0usize..8,
        ) {
            let protocols = [
                CheckProtocol::Redis,
                CheckProtocol::SslHello,
                CheckProtocol::Http(Default::default()),
                CheckProtocol::Mysql(super::super::DbUser { user: "u".into(), pre41: false }),
                CheckProtocol::Pgsql(super::super::DbUser { user: "u".into(), pre41: false }),
                CheckProtocol::Smtp(Default::default()),
                CheckProtocol::Ldap,
                tcp(vec![TcpStep::Expect("rstring ^OK".into())]),
            ];
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(answer.len())).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                if c > at {
                    chunks.push(&answer[at..c]);
                    at = c;
                }
            }
            chunks.push(&answer[at..]);
            chunks.push(b"");
            let (_, v) = run(&protocols[which], &chunks);
            prop_assert!(v.info.len() <= Verdict::MAX_INFO);
        }
    }
}
