//! The service's one place that reads time: tokio's clock (pausable in tests) for durations and
//! deadlines, and the wall clock for stored timestamps.

use std::time::Duration;

pub use tokio::time::Instant;

/// Now, on tokio's clock.
#[allow(clippy::disallowed_methods)] // the one monotonic clock read
pub fn now() -> Instant {
    Instant::now()
}

/// How long since `earlier`, on tokio's clock.
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}

/// Seconds since the Unix epoch, for `last_updated`.
#[allow(clippy::disallowed_methods)] // stored timestamps are wall-clock by definition
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A stopwatch on the real monotonic clock, for `/load`'s CPU burn: it spends real time on
/// purpose, so a paused test clock must not stop it from ending.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Starts now.
    #[allow(clippy::disallowed_methods)] // real time by definition (see above)
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Real time since the start.
    #[allow(clippy::disallowed_methods)] // real time by definition (see above)
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}
