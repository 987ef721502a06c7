//! DNS for servers whose address is a host name (HAProxy's `resolvers`): the wire format and
//! the resolution state machine, both sans-IO; the engine's resolver task moves the datagrams.

pub mod resolver;
pub mod wire;

pub use resolver::{pick_address, Failure, Name, Output, Resolver};
pub use wire::{decode_response, encode_query, QType, Rcode, Response, WireError};
