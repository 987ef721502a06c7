//! A whole configuration at run time: frontends wired to backends, process limits.
//!
//! Built from a validated [`crate::config::Config`] by [`build`]; a reload builds a new one that
//! takes over the stick tables of the old one, backend by backend and server by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::frontend::Frontend;

/// Frontends, backends and process-wide settings.
#[derive(Debug)]
pub struct Runtime {
    /// Frontends, in configuration order.
    pub frontends: Vec<Arc<Frontend>>,
    /// Backends by name (stable order).
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// Most connections the process keeps open; accepting pauses at the limit.
    pub maxconn: usize,
    /// How long established connections may take to finish after SIGTERM.
    pub grace: Duration,
}
