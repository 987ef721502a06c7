//! The engine's clock: `tokio::time::Instant` turned into core [`Timestamp`]s.
//!
//! tokio's clock is the one turmoil virtualises, so decisions made with it replay exactly in the
//! simulator. `std::time::Instant` is never used here.

use std::time::Duration;

use tokio::time::Instant;

use crate::Timestamp;

/// Converts between the runtime's instants and the core's millisecond timestamps.
#[derive(Copy, Clone, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose timestamp zero is now.
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// A clock whose timestamp zero is `origin` (tests and drivers that own their time).
    pub fn from_origin(origin: Instant) -> Self {
        Clock { origin }
    }

    /// The current time as a core timestamp.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// An instant as a core timestamp.
    pub fn at(&self, instant: Instant) -> Timestamp {
        let ms = instant.saturating_duration_since(self.origin).as_millis();
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// A core timestamp as an instant.
    pub fn instant(&self, t: Timestamp) -> Instant {
        self.origin + Duration::from_millis(t.0)
    }
}
