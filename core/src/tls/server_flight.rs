//! The cleartext part of the server→client stream, parsed incrementally from copies of the
//! chunks the engine forwards.
//!
//! In TLS ≤ 1.2 everything the server sends before its ChangeCipherSpec is readable:
//! ServerHello, Certificate (absent when a session is resumed) and NewSessionTicket (RFC 5077),
//! which is what lets a passive balancer learn session IDs and tickets. In TLS 1.3 only the
//! ServerHello (and a HelloRetryRequest) is cleartext. [`ServerFlight`] reports these as
//! [`ServerEvent`]s and then stops: after it is done, feeding it costs one branch.
//!
//! Certificates and other messages tether does not need are skipped without being buffered;
//! only ServerHello and NewSessionTicket bodies are kept, each bounded by the cap.

use super::reader::{Reader, U16};
use super::record::{self, RecordHeader, HEADER_LEN, MAX_CIPHERTEXT};
use super::{Malformed, ServerHelloInfo};

/// Something learned from the server stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A ServerHello or HelloRetryRequest.
    ServerHello(ServerHelloInfo),
    /// A Certificate message: the handshake is a full one, not a resumption.
    Certificate,
    /// A TLS ≤ 1.2 NewSessionTicket: the ticket the client will present to resume.
    NewSessionTicket {
        /// Lifetime hint in seconds (0 = unspecified).
        lifetime_hint: u32,
        /// The opaque ticket.
        ticket: Vec<u8>,
    },
    /// The server switched to encryption; nothing further is readable.
    ChangeCipherSpec,
    /// A cleartext alert (level, description): the handshake failed.
    Alert {
        /// 1 = warning, 2 = fatal.
        level: u8,
        /// Alert description code.
        description: u8,
    },
    /// The stream broke TLS framing or exceeded the cap; parsing stopped.
    Malformed(Malformed),
}

/// Incremental parser of the server→client stream; one per connection.
#[derive(Debug)]
pub struct ServerFlight {
    cap: usize,
    examined: usize,
    done: bool,
    seen_hello: bool,
    after_hrr: bool,
    header: [u8; HEADER_LEN],
    header_len: usize,
    record_type: u8,
    record_left: usize,
    alert: Vec<u8>,
    msg_header: [u8; 4],
    msg_header_len: usize,
    msg_type: u8,
    msg_left: usize,
    keep: bool,
    msg: Vec<u8>,
}

impl ServerFlight {
    /// A parser that keeps at most `cap` bytes per message and examines at most `4 * cap`
    /// bytes of stream (certificate chains are skipped, not kept).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            examined: 0,
            done: false,
            seen_hello: false,
            after_hrr: false,
            header: [0; HEADER_LEN],
            header_len: 0,
            record_type: 0,
            record_left: 0,
            alert: Vec::new(),
            msg_header: [0; 4],
            msg_header_len: 0,
            msg_type: 0,
            msg_left: 0,
            keep: false,
            msg: Vec::new(),
        }
    }

    /// True once nothing more can be learned: after ChangeCipherSpec, an encrypted or unknown
    /// record, a TLS 1.3 ServerHello, an alert, an error, or the cap.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds the next chunk of the server stream; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<ServerEvent> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out);
        out
    }

    /// Like [`ServerFlight::feed`], appending to `out` to reuse its allocation.
    pub fn feed_into(&mut self, mut chunk: &[u8], out: &mut Vec<ServerEvent>) {
        if self.done {
            return;
        }
        self.examined = self.examined.saturating_add(chunk.len());
        while !chunk.is_empty() && !self.done {
            if self.record_left == 0 {
                let n = (HEADER_LEN - self.header_len).min(chunk.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&chunk[..n]);
                self.header_len += n;
                chunk = &chunk[n..];
                if self.header_len == HEADER_LEN {
                    self.header_len = 0;
                    self.start_record(RecordHeader::decode(&self.header), out);
                }
                continue;
            }
            let n = self.record_left.min(chunk.len());
            let (data, rest) = chunk.split_at(n);
            chunk = rest;
            self.record_left -= n;
            match self.record_type {
                record::HANDSHAKE => self.handshake_bytes(data, out),
                record::ALERT => {
                    let keep = data.len().min(2usize.saturating_sub(self.alert.len()));
                    self.alert.extend_from_slice(&data[..keep]);
                    if self.record_left == 0 {
                        if let [level, description, ..] = self.alert[..] {
                            out.push(ServerEvent::Alert { level, description });
                        }
                        self.done = true;
                    }
                }
                _ => {}
            }
        }
        if !self.done && self.examined > self.cap.saturating_mul(4) {
            self.fail(Malformed::FlightTooLarge, out);
        }
    }

    fn fail(&mut self, why: Malformed, out: &mut Vec<ServerEvent>) {
        out.push(ServerEvent::Malformed(why));
        self.finish();
    }

    fn finish(&mut self) {
        self.done = true;
        self.msg = Vec::new();
        self.alert = Vec::new();
    }

    fn start_record(&mut self, h: RecordHeader, out: &mut Vec<ServerEvent>) {
        if !self.seen_hello && h.typ != record::HANDSHAKE && h.typ != record::ALERT {
            return self.fail(Malformed::NotHandshake(h.typ), out);
        }
        if h.version >> 8 != 3 {
            return self.fail(Malformed::RecordVersion(h.version), out);
        }
        if h.len > MAX_CIPHERTEXT {
            return self.fail(Malformed::RecordOverflow(h.len), out);
        }
        self.record_type = h.typ;
        self.record_left = h.len;
        match h.typ {
            record::HANDSHAKE => {
                if let Err(e) = h.check_handshake() {
                    self.fail(e, out);
                }
            }
            record::CHANGE_CIPHER_SPEC => {
                out.push(ServerEvent::ChangeCipherSpec);
                // TLS 1.3 middlebox compatibility: a CCS follows a HelloRetryRequest and the real
                // ServerHello is still to come in cleartext.
                if !self.after_hrr {
                    self.finish();
                }
            }
            record::ALERT => {
                self.alert.clear();
                if h.len == 0 {
                    self.finish();
                }
            }
            _ => self.finish(),
        }
    }

    fn handshake_bytes(&mut self, mut data: &[u8], out: &mut Vec<ServerEvent>) {
        while !data.is_empty() && !self.done {
            if self.msg_left == 0 && self.msg_header_len < 4 {
                let n = (4 - self.msg_header_len).min(data.len());
                self.msg_header[self.msg_header_len..self.msg_header_len + n]
                    .copy_from_slice(&data[..n]);
                self.msg_header_len += n;
                data = &data[n..];
                if self.msg_header_len == 4 {
                    self.start_message(out);
                }
                continue;
            }
            let n = self.msg_left.min(data.len());
            if self.keep {
                self.msg.extend_from_slice(&data[..n]);
            }
            data = &data[n..];
            self.msg_left -= n;
            if self.msg_left == 0 {
                self.end_message(out);
            }
        }
    }

    fn start_message(&mut self, out: &mut Vec<ServerEvent>) {
        let (typ, len) = record::handshake_header(&self.msg_header).unwrap_or((0, 0));
        self.msg_type = typ;
        self.msg_left = len;
        if !self.seen_hello && self.msg_type != record::SERVER_HELLO {
            return self.fail(Malformed::UnexpectedHandshake(self.msg_type), out);
        }
        self.keep = matches!(
            self.msg_type,
            record::SERVER_HELLO | record::NEW_SESSION_TICKET
        );
        if self.keep {
            if self.msg_left > self.cap {
                return self.fail(Malformed::MessageTooLarge(self.msg_left), out);
            }
            self.msg.clear();
        }
        if self.msg_type == record::CERTIFICATE {
            out.push(ServerEvent::Certificate);
        }
        if self.msg_left == 0 {
            self.end_message(out);
        }
    }

    fn end_message(&mut self, out: &mut Vec<ServerEvent>) {
        self.msg_header_len = 0;
        if !self.keep {
            return;
        }
        match self.msg_type {
            record::SERVER_HELLO => match ServerHelloInfo::parse(&self.msg) {
                Ok(info) => {
                    self.seen_hello = true;
                    self.after_hrr = info.hello_retry_request;
                    out.push(ServerEvent::ServerHello(info));
                    if info.is_tls13() && !info.hello_retry_request {
                        self.finish();
                    }
                }
                Err(e) => self.fail(e, out),
            },
            _ => match new_session_ticket(&self.msg) {
                Ok((lifetime_hint, ticket)) => out.push(ServerEvent::NewSessionTicket {
                    lifetime_hint,
                    ticket: ticket.to_vec(),
                }),
                Err(e) => self.fail(e, out),
            },
        }
    }
}

impl Default for ServerFlight {
    fn default() -> Self {
        Self::new(super::DEFAULT_HELLO_CAP)
    }
}

/// RFC 5077 §3.3: `uint32 ticket_lifetime_hint; opaque ticket<0..2^16-1>;`
fn new_session_ticket(body: &[u8]) -> Result<(u32, &[u8]), Malformed> {
    let mut r = Reader::new(body);
    let lifetime = r.u32()?;
    let ticket = r.vec::<U16>()?;
    r.expect_end()?;
    Ok((lifetime, ticket))
}
