//! HAProxy configuration support: reading haproxy.cfg ([`lexer`]), importing it into a native
//! [`tether_core::config::Config`] ([`import()`]), validating it as `run` will ([`load()`]),
//! checking what its rules will do ([`rules`]) and printing the equivalent TOML ([`convert`]).
pub mod convert;
pub mod import;
pub mod lexer;
pub mod load;
pub mod rules;

pub use convert::{convert_haproxy, to_toml, ConvertError};
pub use import::{import, Import};
pub use load::load;
