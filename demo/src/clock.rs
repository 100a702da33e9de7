//! The service's one reading of the wall clock.

/// Seconds since the Unix epoch, for `last_updated`.
#[allow(clippy::disallowed_methods)] // stored timestamps are wall-clock by definition
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
