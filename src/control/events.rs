//! Events on a policy, and the limiter that keeps a flapping source from flooding the API:
//! an identical event is published once per `dedup` window, and each policy spends from a
//! small token bucket.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Instant;

/// One event: `Normal` or `Warning`, a CamelCase reason and a note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyEvent {
    /// True for `Warning`.
    pub warning: bool,
    /// e.g. `SuccessfulRescale`, `FailedGetScale`.
    pub reason: String,
    /// e.g. `New size: 4; reason: rps above target`.
    pub note: String,
}

impl PolicyEvent {
    /// A `Normal` event.
    pub fn normal(reason: &str, note: &str) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            note: note.into(),
        }
    }

    /// A `Warning` event.
    pub fn warning(reason: &str, note: &str) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

/// Deduplicates and rate-limits one policy's events.
#[derive(Debug)]
pub struct EventLimiter {
    /// An identical event within this long is dropped.
    pub dedup: Duration,
    /// Tokens the bucket holds (the burst).
    pub burst: u32,
    /// One token comes back this often.
    pub refill: Duration,
    tokens: f64,
    refilled: Option<Instant>,
    seen: HashMap<PolicyEvent, Instant>,
    dropped: u64,
}

impl Default for EventLimiter {
    fn default() -> Self {
        Self::new(Duration::from_secs(600), 10, Duration::from_secs(30))
    }
}

impl EventLimiter {
    /// A limiter with its knobs.
    pub fn new(dedup: Duration, burst: u32, refill: Duration) -> Self {
        Self {
            dedup,
            burst,
            refill,
            tokens: f64::from(burst),
            refilled: None,
            seen: HashMap::new(),
            dropped: 0,
        }
    }

    /// Whether `event` may be published at `now`; counts it as published when it may.
    /// A successful rescale is never a duplicate (each one is news), but it spends a token.
    pub fn admit(&mut self, event: &PolicyEvent, now: Instant) -> bool {
        if let Some(at) = self.refilled {
            let gained = now.duration_since(at).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + gained).min(f64::from(self.burst));
        }
        self.refilled = Some(now);
        let dedup = self.dedup;
        self.seen.retain(|_, at| now.duration_since(*at) < dedup);
        let duplicate = event.warning && self.seen.contains_key(event);
        if duplicate || self.tokens < 1.0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1.0;
        self.seen.insert(event.clone(), now);
        true
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flapping_warning_is_published_once_per_window_and_a_burst_is_capped() {
        let mut l = EventLimiter::new(Duration::from_secs(600), 3, Duration::from_secs(30));
        let t0 = crate::clock::now();
        let w = PolicyEvent::warning("FailedGetExternalMetric", "rps: connection refused");
        let admitted = (0..100)
            .filter(|i| l.admit(&w, t0 + Duration::from_secs(*i)))
            .count();
        assert_eq!(admitted, 1, "one identical warning per 10 minutes");
        assert!(
            l.admit(&w, t0 + Duration::from_secs(601)),
            "again after the window"
        );
        let ups: Vec<bool> = (0..6)
            .map(|i| {
                l.admit(
                    &PolicyEvent::normal("SuccessfulRescale", &format!("New size: {i}")),
                    t0 + Duration::from_secs(602),
                )
            })
            .collect();
        assert_eq!(
            ups.iter().filter(|a| **a).count(),
            2,
            "the bucket had 2 tokens left: {ups:?}"
        );
        assert!(l.admit(
            &PolicyEvent::normal("SuccessfulRescale", "New size: 9"),
            t0 + Duration::from_secs(632)
        ));
        assert_eq!(l.dropped(), 99 + 4);
    }
}
