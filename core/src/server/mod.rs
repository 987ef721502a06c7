//! Servers of a backend: identity, admin and operational state, health counting.

pub mod check;
pub mod health;
pub mod number;
pub mod state;

pub use health::{Health, HealthConfig, Transition};
pub use state::{AdminState, OperState, ServerState, MAX_WEIGHT};

/// Index of a server in its backend's declaration order. Stable across reloads for a server that
/// keeps its name, so stick-table entries survive them.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ServerId(pub u32);

impl ServerId {
    /// The declaration index as a `usize`, for slice access.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
