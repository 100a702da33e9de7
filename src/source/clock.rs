//! Time for sources: tokio's monotonic clock, mapped onto wall time read once.
//!
//! Windows and rates use [`tokio::time::Instant`] (so tests can pause and advance time); readings
//! carry wall-clock stamps derived from it, so the wall clock is read in exactly one place.

use std::time::SystemTime;

use tokio::time::Instant;

/// Maps tokio instants to wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct SourceClock {
    base_mono: Instant,
    base_wall: SystemTime,
}

impl SourceClock {
    /// Reads the wall clock once and pairs it with tokio's now.
    #[allow(clippy::disallowed_methods)] // the one wall-clock read of the sources: readings are stamped for people and for the store
    pub fn start() -> Self {
        Self {
            base_mono: Instant::now(),
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
        let mono = Instant::now();
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

impl Default for SourceClock {
    fn default() -> Self {
        Self::start()
    }
}
