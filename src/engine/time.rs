//! Engine time: instants and spans the caller passes in (the engine never reads a clock).

use std::fmt;
use std::ops::{Add, Sub};

/// An instant, in milliseconds on the caller's timeline (e.g. since the Unix epoch, or since
/// the start of a replay). Only differences between instants matter to the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

impl Time {
    /// The instant `secs` seconds after the timeline's origin.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// The instant `millis` milliseconds after the timeline's origin.
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the timeline's origin.
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

/// A span of whole seconds, the unit of every window, period and cooldown in a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u32);

impl Seconds {
    /// The span in milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::from(self.0) * 1000
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl Add<Seconds> for Time {
    type Output = Time;

    fn add(self, rhs: Seconds) -> Time {
        Time(self.0.saturating_add(rhs.as_millis()))
    }
}

impl Sub<Seconds> for Time {
    type Output = Time;

    fn sub(self, rhs: Seconds) -> Time {
        Time(self.0.saturating_sub(rhs.as_millis()))
    }
}
