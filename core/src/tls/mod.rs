//! TLS parsing for a passive balancer: find the ClientHello in the client stream and learn what
//! the server decided from the cleartext part of its stream.
//!
//! - `reader`: the bounds-checked cursor every parser uses.
//! - [`record`]: record layer and reassembly of a handshake message across records and segments.
//! - [`client_hello`]: [`ClientHello`] and [`ClientHelloParser`] (`Progress::NeedMore` until decided).
//! - [`server_hello`]: [`ServerHelloInfo`] (negotiated version, session ID echo, PSK accepted).
//! - [`server_flight`]: [`ServerFlight`], incremental events up to ChangeCipherSpec.
//! - [`haproxy`]: HAProxy-compatible samples (`req_ssl_hello_type`, `payload_lv`).
//! - [`encode`]: the writers beside these readers (records, hellos, tickets), for the
//!   simulator's TLS peers and for tests.
//!
//! Everything is zero-copy over `&[u8]`, bounded by caps, and returns [`Malformed`] instead of
//! panicking.

pub mod client_hello;
pub mod encode;
pub mod extension;
pub mod haproxy;
mod malformed;
pub(crate) mod reader;
pub mod record;
pub mod server_flight;
pub mod server_hello;
mod version;

pub use client_hello::{
    ClientHello, ClientHelloParser, HelloOutcome, TicketExt, DEFAULT_HELLO_CAP,
};
pub use extension::{Extension, Extensions};
pub use haproxy::{payload_lv, rep_ssl_hello_type, req_ssl_hello_type, Sample};
pub use malformed::Malformed;
pub use server_flight::{ServerEvent, ServerFlight};
pub use server_hello::{ServerHelloInfo, HELLO_RETRY_REQUEST_RANDOM};
pub use version::{ProtocolVersion, SessionId};
