//! Time as an argument: core never reads a clock.
//!
//! A [`Timestamp`] is a count of milliseconds on the caller's monotonic clock (the engine uses
//! `tokio::time::Instant`, which turmoil virtualises). Milliseconds in a `u64` keep stick-table
//! entries small and make every decision reproducible from the inputs alone.

use std::time::Duration;

/// A point on the caller's monotonic clock, in milliseconds since an arbitrary origin.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The origin of the caller's clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time rather than wrapping.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_saturates_instead_of_wrapping() {
        let t = Timestamp(u64::MAX - 5);
        assert_eq!(t + Duration::from_millis(10), Timestamp(u64::MAX));
        assert_eq!(Timestamp(1000) + Duration::from_secs(2), Timestamp(3000));
    }

    #[test]
    fn duration_since_never_negative() {
        assert_eq!(Timestamp(5).saturating_duration_since(Timestamp(9)), Duration::ZERO);
        assert_eq!(Timestamp(9).saturating_duration_since(Timestamp(5)), Duration::from_millis(4));
    }
}
