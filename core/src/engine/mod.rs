//! engine (work in progress).

pub mod proxy_protocol;
