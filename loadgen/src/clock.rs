//! The load generator's one place that reads time: tokio's clock, so that a schedule's send
//! times, timeouts and latencies all come from the same source (and tests can pause it).

use std::time::Duration;

pub use tokio::time::Instant;

/// Now, on tokio's clock.
#[allow(clippy::disallowed_methods)] // the one clock read of the load generator
pub fn now() -> Instant {
    Instant::now()
}

/// How long since `earlier`, on tokio's clock.
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}
