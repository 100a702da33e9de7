//! A short per-endpoint history of the selected series, trimmed to the window and bounded.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::clock::Instant;

/// Series per endpoint beyond this are dropped (a page exploding in cardinality must not grow
/// our memory without bound).
pub const MAX_SERIES_PER_ENDPOINT: usize = 10_000;
/// Points per series beyond this are dropped oldest-first (a window of 1 h at 1 s fits).
pub const MAX_POINTS_PER_SERIES: usize = 4_096;

/// One series' recent points.
#[derive(Debug, Default)]
pub struct Series {
    /// The bucket's upper bound, for histogram buckets.
    pub le: Option<f64>,
    /// `(scrape time, value)`, oldest first.
    pub points: VecDeque<(Instant, f64)>,
}

/// Everything remembered about one endpoint.
#[derive(Debug, Default)]
pub struct EndpointHistory {
    /// Series by canonical key (`name{a="b",…}`).
    pub series: HashMap<Box<str>, Series>,
    /// When a scrape of this endpoint last succeeded.
    pub last_ok: Option<Instant>,
    /// When a scrape of this endpoint first succeeded: windows reaching further back than this
    /// are not covered by samples yet.
    pub first_ok: Option<Instant>,
}

/// One selected sample of a fresh scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Canonical key of the series.
    pub key: Box<str>,
    /// `le`, for buckets.
    pub le: Option<f64>,
    /// The value.
    pub value: f64,
}

impl EndpointHistory {
    /// Appends one successful scrape taken at `at`, then forgets points older than `keep`.
    pub fn record(&mut self, at: Instant, samples: &[Selected], keep: Duration) {
        self.last_ok = Some(at);
        self.first_ok.get_or_insert(at);
        for s in samples {
            if !self.series.contains_key(&s.key) && self.series.len() >= MAX_SERIES_PER_ENDPOINT {
                continue;
            }
            let series = match self.series.get_mut(&s.key) {
                Some(series) => series,
                None => self.series.entry(s.key.clone()).or_insert_with(|| Series {
                    le: s.le,
                    points: VecDeque::new(),
                }),
            };
            if series.points.len() >= MAX_POINTS_PER_SERIES {
                series.points.pop_front();
            }
            series.points.push_back((at, s.value));
        }
        self.trim(at.checked_sub(keep).unwrap_or(at));
    }

    /// Drops points before `oldest`, and series left with none.
    pub fn trim(&mut self, oldest: Instant) {
        self.series.retain(|_, s| {
            while s.points.front().is_some_and(|(t, _)| *t < oldest) {
                s.points.pop_front();
            }
            !s.points.is_empty()
        });
    }

    /// The part of a `window` (seconds) ending at `now` that samples cover: the whole window
    /// once the endpoint has been scraped for that long, else the time since its first scrape.
    /// A rate over a window that is not yet covered is a rate over this span: extrapolating a
    /// second of samples to a whole window would report a fraction of the true rate.
    pub fn covered(&self, now: Instant, window: f64) -> f64 {
        match self.first_ok {
            Some(first) => window.min(now.saturating_duration_since(first).as_secs_f64()),
            None => 0.0,
        }
    }

    /// The points of one series as `(seconds relative to now, value)`, written into `out`
    /// (a buffer reused across series), for the rate arithmetic.
    pub fn relative_into(series: &Series, now: Instant, out: &mut Vec<(f64, f64)>) {
        out.clear();
        out.extend(
            series
                .points
                .iter()
                .map(|(t, v)| (-(now.saturating_duration_since(*t).as_secs_f64()), *v)),
        );
    }

    /// Bytes this history holds (approximate: containers' capacities plus key text).
    pub fn approx_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(Box<str>, Series)>() + 8;
        self.series
            .iter()
            .map(|(k, s)| {
                per_entry + k.len() + s.points.capacity() * std::mem::size_of::<(Instant, f64)>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn sel(key: &str, v: f64) -> Selected {
        Selected {
            key: key.into(),
            le: None,
            value: v,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_only_the_window_and_drops_dead_series() {
        let mut h = EndpointHistory::default();
        let keep = Duration::from_secs(5);
        for i in 0..10 {
            let mut s = vec![sel("a", i as f64)];
            if i < 3 {
                s.push(sel("gone", 1.0));
            }
            h.record(clock::now(), &s, keep);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(h.series.len(), 1);
        assert_eq!(h.series["a"].points.len(), 6);
        assert!(h.approx_bytes() > 6 * 24);
    }

    #[tokio::test(start_paused = true)]
    async fn series_count_is_bounded() {
        let mut h = EndpointHistory::default();
        let many: Vec<_> = (0..MAX_SERIES_PER_ENDPOINT + 50)
            .map(|i| sel(&format!("s{i}"), 1.0))
            .collect();
        h.record(clock::now(), &many, Duration::from_secs(60));
        assert_eq!(h.series.len(), MAX_SERIES_PER_ENDPOINT);
    }
}
