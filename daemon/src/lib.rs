//! The tether daemon as a library: what the `tether` binary wires together, kept testable.

pub mod logsink;
pub mod net;
pub mod run;
