//! The demo's live view: one status block, redrawn every second.

use std::io::{IsTerminal, Write};

use tidescale_loadgen::LiveStats;

use super::report::Sample;
use crate::control::TickRecord;

/// Draws the status block on stderr: in place on a terminal, one line per tick otherwise.
#[derive(Debug)]
pub struct LiveView {
    label: String,
    terminal: bool,
    drawn: bool,
}

impl LiveView {
    /// A view for the run called `label`.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_string(),
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Redraws the block with the latest pool sample, load and decision.
    pub fn draw(&mut self, sample: &Sample, load: &LiveStats, decision: Option<&TickRecord>) {
        let (offered, achieved, p95, errors) = match &load.last_second {
            // A 404 for a key never written is an answer; failures are what a user would see break.
            Some(s) => (
                s.offered,
                s.achieved,
                s.p95_ms,
                s.errors.total() - s.errors.http_4xx,
            ),
            None => (0, 0, 0.0, 0),
        };
        let cpu = decision
            .and_then(|d| d.metrics.get("cpu"))
            .and_then(|r| r.as_ref().ok())
            .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
        let status = format!(
            "[{}] t={:>4.0}s  replicas desired {:>2} ready {:>2}  |  offered {:>4} rps  achieved {:>4} rps  |  p95 {:>7.1} ms  |  cpu {}  |  failed {}",
            self.label, sample.t, sample.desired, sample.ready, offered, achieved, p95, cpu, errors
        );
        let line = decision.map_or_else(String::new, |d| format!("  last decision: {}", d.line));
        let mut err = std::io::stderr().lock();
        if self.terminal {
            if self.drawn {
                let _ = write!(err, "\x1b[2A");
            }
            let _ = write!(err, "\x1b[2K{status}\n\x1b[2K{line}\n");
        } else {
            let _ = writeln!(err, "{status}\n{line}");
        }
        self.drawn = true;
    }

    /// Leaves the last block on screen.
    pub fn finish(&mut self) {
        let _ = std::io::stderr().flush();
    }
}
