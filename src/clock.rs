//! The one place tidescale reads time.
//!
//! The rule: the engine never sees a clock (it is handed `now`); every other module reads time
//! through this module, which reads tokio's clock, so tests pause and advance it
//! (`tokio::time::pause`) and every timer, window and timestamp moves with it. Wall-clock time
//! is derived from that same clock by a [`Clock`] that reads the system time once.
//! `clippy.toml` forbids every other clock read (std's and tokio's), and `tests/architecture.rs`
//! checks that only the `clock.rs` modules of the workspace lift that ban.

use std::time::{Duration, SystemTime};

pub use tokio::time::Instant;

/// Now, on tokio's clock (paused and advanced in tests).
#[allow(clippy::disallowed_methods)] // the one monotonic clock read
pub fn now() -> Instant {
    Instant::now()
}

/// How long since `earlier`, on tokio's clock (zero if `earlier` is in the future).
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}

/// Maps tokio instants to wall-clock times: the wall clock is read once, at [`Clock::start`],
/// and then advances with tokio's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_mono: Instant,
    base_wall: SystemTime,
}

impl Clock {
    /// Reads the wall clock once and pairs it with tokio's now.
    #[allow(clippy::disallowed_methods)] // the one wall-clock read
    pub fn start() -> Self {
        Self {
            base_mono: now(),
            base_wall: SystemTime::now(),
        }
    }

    /// A clock whose `base` instant is `wall` (for tests).
    pub fn at(base: Instant, wall: SystemTime) -> Self {
        Self {
            base_mono: base,
            base_wall: wall,
        }
    }

    /// Tokio's now and the wall time it corresponds to.
    pub fn now(&self) -> (Instant, SystemTime) {
        let mono = now();
        (mono, self.wall(mono))
    }

    /// The wall time of a tokio instant.
    pub fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.base_mono) {
            Some(d) => self.base_wall + d,
            None => self.base_wall - self.base_mono.duration_since(at),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_advances_with_the_paused_clock() {
        let clock = Clock::start();
        let (t0, w0) = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        let (t1, w1) = clock.now();
        assert_eq!(t1 - t0, Duration::from_secs(90));
        assert_eq!(w1.duration_since(w0).unwrap(), Duration::from_secs(90));
        assert_eq!(since(t0), Duration::from_secs(90));
        assert_eq!(since(t1 + Duration::from_secs(1)), Duration::ZERO);
    }
}
