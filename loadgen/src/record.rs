//! Recording: outcomes by class, per-second and overall HDR histograms, fed by one collector task.
//!
//! Request tasks never touch a histogram: they send one small event through an unbounded channel
//! (lock-free) and the collector alone records, so the hot path takes no lock.

use std::collections::{BTreeMap, VecDeque};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds up to one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a request did not get a successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The connection was refused (nothing listening).
    Refused,
    /// Any other I/O failure: reset, broken pipe, unreachable.
    Io,
    /// The server answered 4xx.
    Http4xx,
    /// The server answered 5xx.
    Http5xx,
    /// Anything else, such as a malformed response.
    Other,
}

/// What became of one sent request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with this status arrived in full.
    Status(u16),
    /// No usable response.
    Failed(ErrorClass),
}

impl Outcome {
    /// The error class, if this outcome counts as an error (transport failure, 4xx or 5xx).
    pub fn error_class(self) -> Option<ErrorClass> {
        match self {
            Outcome::Status(s) if (400..500).contains(&s) => Some(ErrorClass::Http4xx),
            Outcome::Status(s) if s >= 500 => Some(ErrorClass::Http5xx),
            Outcome::Status(_) => None,
            Outcome::Failed(class) => Some(class),
        }
    }
}

/// Error counts by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Requests that timed out.
    pub timeout: u64,
    /// Connections refused.
    pub refused: u64,
    /// Other I/O failures.
    pub io: u64,
    /// 4xx answers.
    pub http_4xx: u64,
    /// 5xx answers.
    pub http_5xx: u64,
    /// Anything else.
    pub other: u64,
}

impl ErrorCounts {
    /// Adds one error of `class`.
    pub fn add(&mut self, class: ErrorClass) {
        match class {
            ErrorClass::Timeout => self.timeout += 1,
            ErrorClass::Refused => self.refused += 1,
            ErrorClass::Io => self.io += 1,
            ErrorClass::Http4xx => self.http_4xx += 1,
            ErrorClass::Http5xx => self.http_5xx += 1,
            ErrorClass::Other => self.other += 1,
        }
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        self.timeout + self.refused + self.io + self.http_4xx + self.http_5xx + self.other
    }
}

/// What happened during one second of the run.
///
/// `offered`, `sent`, `dropped` and `late` count requests by their intended send second;
/// `achieved`, `errors` and the latencies count completions in this second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Seconds since the start (0-based).
    pub second: u32,
    /// Requests the schedule asked for.
    pub offered: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// Requests not sent because the in-flight cap was reached.
    pub dropped: u64,
    /// Requests sent more than [`LATE_AFTER`](crate::LATE_AFTER) after their intended time.
    pub late: u64,
    /// HTTP responses (any status) completed in this second.
    pub achieved: u64,
    /// Errors completed in this second, by class.
    pub errors: ErrorCounts,
    /// Median latency of the responses, milliseconds (from the intended send time).
    pub p50_ms: f64,
    /// 95th percentile latency, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Highest latency, milliseconds.
    pub max_ms: f64,
}

/// Running totals over the whole run so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests the schedule asked for.
    pub offered: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests dropped at the in-flight cap.
    pub dropped: u64,
    /// Requests sent late.
    pub late: u64,
    /// HTTP responses received (any status).
    pub responses: u64,
    /// Errors by class.
    pub errors: ErrorCounts,
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
}

/// Messages from the dispatcher and request tasks to the collector.
#[derive(Debug)]
pub(crate) enum Event {
    /// One request finished.
    Done {
        /// Completion second since start.
        second: u32,
        /// Latency from the intended send time.
        latency_us: u64,
        outcome: Outcome,
    },
    /// Dispatcher counts for one intended-send second.
    Dispatched {
        second: u32,
        offered: u64,
        sent: u64,
        dropped: u64,
        late: u64,
    },
}

struct Bucket {
    stats: SecondStats,
    histogram: Histogram<u64>,
}

impl Bucket {
    fn new(second: u32) -> Self {
        Self {
            stats: SecondStats {
                second,
                ..SecondStats::default()
            },
            // Two significant digits keep a per-second histogram around 20 KiB.
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                .expect("static histogram bounds are valid"),
        }
    }

    fn finish(mut self) -> SecondStats {
        let h = &self.histogram;
        if !h.is_empty() {
            let ms = |us: u64| us as f64 / 1000.0;
            self.stats.p50_ms = ms(h.value_at_quantile(0.50));
            self.stats.p95_ms = ms(h.value_at_quantile(0.95));
            self.stats.p99_ms = ms(h.value_at_quantile(0.99));
            self.stats.max_ms = ms(h.max());
        }
        self.stats
    }
}

/// Accumulates events into per-second stats and overall totals.
pub(crate) struct Recorder {
    open: VecDeque<Bucket>,
    first_open: u32,
    finished: Vec<SecondStats>,
    totals: Totals,
    overall: Histogram<u64>,
    sends_from_completions: bool,
}

impl Recorder {
    /// `sends_from_completions`: in closed-loop mode every completion also counts as offered and
    /// sent, since no dispatcher reports them.
    pub(crate) fn new(sends_from_completions: bool) -> Self {
        Self {
            open: VecDeque::new(),
            first_open: 0,
            finished: Vec::new(),
            totals: Totals::default(),
            overall: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
            sends_from_completions,
        }
    }

    fn bucket(&mut self, second: u32) -> &mut Bucket {
        // A second that was already finished is folded into the oldest open one.
        let second = second.max(self.first_open);
        let index = (second - self.first_open) as usize;
        while self.open.len() <= index {
            let next = self.first_open + self.open.len() as u32;
            self.open.push_back(Bucket::new(next));
        }
        &mut self.open[index]
    }

    pub(crate) fn record(&mut self, event: Event) {
        match event {
            Event::Done {
                second,
                latency_us,
                outcome,
            } => {
                let from_completions = self.sends_from_completions;
                let latency = latency_us.clamp(1, MAX_LATENCY_US);
                let bucket = self.bucket(second);
                if from_completions {
                    bucket.stats.offered += 1;
                    bucket.stats.sent += 1;
                }
                if let Outcome::Status(_) = outcome {
                    bucket.stats.achieved += 1;
                    bucket.histogram.saturating_record(latency);
                }
                if let Some(class) = outcome.error_class() {
                    bucket.stats.errors.add(class);
                    self.totals.errors.add(class);
                }
                if let Outcome::Status(code) = outcome {
                    self.totals.responses += 1;
                    *self.totals.status_codes.entry(code).or_default() += 1;
                    self.overall.saturating_record(latency);
                }
                if from_completions {
                    self.totals.offered += 1;
                    self.totals.sent += 1;
                }
            }
            Event::Dispatched {
                second,
                offered,
                sent,
                dropped,
                late,
            } => {
                let stats = &mut self.bucket(second).stats;
                stats.offered += offered;
                stats.sent += sent;
                stats.dropped += dropped;
                stats.late += late;
                self.totals.offered += offered;
                self.totals.sent += sent;
                self.totals.dropped += dropped;
                self.totals.late += late;
            }
        }
    }

    /// Closes every second before `before`; returns the newest closed one.
    pub(crate) fn close_before(&mut self, before: u32) -> Option<&SecondStats> {
        let mut closed = false;
        while self.first_open < before {
            let bucket = match self.open.pop_front() {
                Some(b) => b,
                None => Bucket::new(self.first_open),
            };
            self.finished.push(bucket.finish());
            self.first_open += 1;
            closed = true;
        }
        if closed { self.finished.last() } else { None }
    }

    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Closes everything and hands back the timeline, totals and overall histogram.
    pub(crate) fn finish(mut self, seconds: u32) -> (Vec<SecondStats>, Totals, Histogram<u64>) {
        let end = seconds.max(self.first_open + self.open.len() as u32);
        self.close_before(end);
        (self.finished, self.totals, self.overall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(second: u32, latency_us: u64, outcome: Outcome) -> Event {
        Event::Done {
            second,
            latency_us,
            outcome,
        }
    }

    #[test]
    fn classes_and_seconds_are_kept_apart() {
        let mut r = Recorder::new(false);
        r.record(Event::Dispatched {
            second: 0,
            offered: 5,
            sent: 4,
            dropped: 1,
            late: 0,
        });
        r.record(done(0, 1_000, Outcome::Status(200)));
        r.record(done(0, 2_000, Outcome::Status(503)));
        r.record(done(1, 3_000, Outcome::Status(404)));
        r.record(done(1, 0, Outcome::Failed(ErrorClass::Timeout)));
        r.record(done(2, 0, Outcome::Failed(ErrorClass::Refused)));
        let closed = r.close_before(1).unwrap().clone();
        assert_eq!(closed.achieved, 2);
        assert_eq!(closed.errors.http_5xx, 1);
        assert_eq!(closed.offered, 5);
        // A late event for a closed second lands in the oldest open one.
        r.record(done(0, 1_000, Outcome::Status(200)));
        let (timeline, totals, overall) = r.finish(4);
        assert_eq!(timeline.len(), 4);
        assert_eq!(timeline[1].achieved, 2);
        assert_eq!(timeline[1].errors.timeout, 1);
        assert_eq!(timeline[2].errors.refused, 1);
        assert_eq!(
            timeline[3],
            SecondStats {
                second: 3,
                ..Default::default()
            }
        );
        assert_eq!(totals.errors.total(), 4);
        assert_eq!(totals.responses, 4);
        assert_eq!(totals.status_codes[&200], 2);
        assert_eq!(overall.len(), 4);
    }

    #[test]
    fn percentiles_come_from_the_second_histogram() {
        let mut r = Recorder::new(true);
        for i in 1..=100u64 {
            r.record(done(0, i * 1_000, Outcome::Status(200)));
        }
        let s = r.close_before(1).unwrap();
        assert_eq!(s.sent, 100);
        assert!((s.p50_ms - 50.0).abs() < 1.0, "{}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() < 1.5, "{}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 1.5);
    }
}
