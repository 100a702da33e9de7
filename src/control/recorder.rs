//! What a loop reports about itself: decisions, failed rescales and source reads. The wiring
//! hands each loop a recorder (tidescale's Prometheus registry in the binary, a counter in tests).

use std::sync::atomic::{AtomicU64, Ordering};

/// Receives a loop's own measurements. Implementations must be cheap: they run on every tick.
pub trait Recorder: Send + Sync {
    /// One decision: the step that settled it and the counts before and after.
    fn decision(&self, policy: &str, reason: &'static str, current: i32, desired: i32);
    /// A rescale the target refused or failed.
    fn scale_error(&self, policy: &str);
    /// A rescale the target accepted.
    fn scaled(&self, _policy: &str) {}
    /// One read of one metric: how long it took and whether it succeeded.
    fn source_read(&self, policy: &str, metric: &str, seconds: f64, ok: bool);
    /// A metric's value next to its target, in the target's units (percent for utilization).
    fn metric_value(&self, _policy: &str, _metric: &str, _value: f64, _target: f64) {}
    /// The policy stopped: its gauges no longer describe anything.
    fn forget(&self, _policy: &str, _metrics: &[String]) {}
}

/// A recorder that counts what it is told (tests, benchmarks, and loops nobody scrapes).
#[derive(Debug, Default)]
pub struct CountingRecorder {
    decisions: AtomicU64,
    scale_errors: AtomicU64,
    reads: AtomicU64,
    failed_reads: AtomicU64,
}

/// A snapshot of a [`CountingRecorder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Decisions recorded.
    pub decisions: u64,
    /// Failed rescales.
    pub scale_errors: u64,
    /// Source reads, failed or not.
    pub reads: u64,
    /// Source reads that failed.
    pub failed_reads: u64,
}

impl CountingRecorder {
    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            decisions: self.decisions.load(Ordering::Relaxed),
            scale_errors: self.scale_errors.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            failed_reads: self.failed_reads.load(Ordering::Relaxed),
        }
    }
}

impl Recorder for CountingRecorder {
    fn decision(&self, _: &str, _: &'static str, _: i32, _: i32) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
    }

    fn scale_error(&self, _: &str) {
        self.scale_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn source_read(&self, _: &str, _: &str, _: f64, ok: bool) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed_reads.fetch_add(1, Ordering::Relaxed);
        }
    }
}
