//! The run report: summary numbers, the per-second timeline, and the files `--report DIR` writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use statrs::statistics::{Data, Distribution, Max, Min};

use crate::chart::{self, Chart, ChartError, Panel, Series};
use crate::config::{Load, RunConfig};
use crate::record::{ErrorCounts, SecondStats, Totals};

/// Size of `timeline.png` / `timeline.svg`.
pub const CHART_SIZE: (u32, u32) = (1200, 900);

/// Why report files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or the directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// Latency percentiles over the whole run, milliseconds from the intended send time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Fastest response.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest response.
    pub max: f64,
}

/// Spread of the achieved rate over the full seconds of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateSpread {
    /// Mean responses per second.
    pub mean: f64,
    /// Standard deviation across seconds.
    pub stdev: f64,
    /// Slowest second.
    pub min: f64,
    /// Busiest second.
    pub max: f64,
}

/// The final numbers of a run (what `--json` prints and `summary.json` holds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Target base URL.
    pub url: String,
    /// `open` (scheduled) or `max` (closed loop at maximum rate).
    pub mode: String,
    /// Seed of the request mix.
    pub seed: u64,
    /// Length of the load phase used for the rates, seconds.
    pub duration_secs: f64,
    /// Wall time including the final drain, seconds.
    pub total_secs: f64,
    /// The run was stopped early by a shutdown signal.
    pub interrupted: bool,
    /// The run stopped at the request cap.
    pub capped: bool,
    /// Requests the schedule asked for.
    pub offered: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests dropped at the in-flight cap.
    pub dropped: u64,
    /// Requests sent late.
    pub late: u64,
    /// HTTP responses received (any status).
    pub responses: u64,
    /// Offered requests per second.
    pub offered_rps: f64,
    /// Responses per second.
    pub achieved_rps: f64,
    /// Per-second spread of the achieved rate.
    pub achieved_per_second: RateSpread,
    /// Latency percentiles of the responses.
    pub latency_ms: LatencySummary,
    /// Errors by class.
    pub errors: ErrorCounts,
    /// All errors.
    pub error_total: u64,
    /// Responses by status code.
    pub status_codes: BTreeMap<String, u64>,
}

/// A finished run: the summary and one row per second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The final numbers.
    pub summary: Summary,
    /// What happened in each second.
    pub timeline: Vec<SecondStats>,
}

/// Facts about how the run went, gathered by the runner.
pub(crate) struct RunFacts<'a> {
    pub config: &'a RunConfig,
    pub measured_secs: f64,
    pub total_secs: f64,
    pub interrupted: bool,
    pub capped: bool,
}

impl Report {
    pub(crate) fn build(
        facts: RunFacts<'_>,
        timeline: Vec<SecondStats>,
        totals: Totals,
        overall: &Histogram<u64>,
    ) -> Self {
        let secs = facts.measured_secs.max(1e-3);
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = if overall.is_empty() {
            LatencySummary::default()
        } else {
            LatencySummary {
                min: ms(overall.min()),
                mean: overall.mean() / 1000.0,
                stdev: overall.stdev() / 1000.0,
                p50: ms(overall.value_at_quantile(0.50)),
                p90: ms(overall.value_at_quantile(0.90)),
                p95: ms(overall.value_at_quantile(0.95)),
                p99: ms(overall.value_at_quantile(0.99)),
                p999: ms(overall.value_at_quantile(0.999)),
                max: ms(overall.max()),
            }
        };
        let full_seconds = (facts.measured_secs.floor() as usize).min(timeline.len());
        let per_second: Vec<f64> = timeline[..full_seconds]
            .iter()
            .map(|s| s.achieved as f64)
            .collect();
        let achieved_per_second = if per_second.is_empty() {
            RateSpread::default()
        } else {
            let data = Data::new(per_second);
            RateSpread {
                mean: data.mean().unwrap_or(0.0),
                stdev: data.std_dev().unwrap_or(0.0),
                min: data.min(),
                max: data.max(),
            }
        };
        let config = facts.config;
        let summary = Summary {
            url: config.url.clone(),
            mode: match config.load {
                Load::Schedule(_) => "open".to_string(),
                Load::Max { .. } => "max".to_string(),
            },
            seed: config.seed,
            duration_secs: facts.measured_secs,
            total_secs: facts.total_secs,
            interrupted: facts.interrupted,
            capped: facts.capped,
            offered: totals.offered,
            requests: totals.sent,
            dropped: totals.dropped,
            late: totals.late,
            responses: totals.responses,
            offered_rps: totals.offered as f64 / secs,
            achieved_rps: totals.responses as f64 / secs,
            achieved_per_second,
            latency_ms,
            error_total: totals.errors.total(),
            errors: totals.errors,
            status_codes: totals
                .status_codes
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
        };
        Self { summary, timeline }
    }

    /// The per-second timeline as CSV with a header line.
    pub fn timeline_csv(&self) -> String {
        let mut out = String::from(
            "second,offered,sent,dropped,late,achieved,errors,timeout,refused,io,http_4xx,http_5xx,other,p50_ms,p95_ms,p99_ms,max_ms\n",
        );
        for s in &self.timeline {
            let e = &s.errors;
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3}",
                s.second,
                s.offered,
                s.sent,
                s.dropped,
                s.late,
                s.achieved,
                e.total(),
                e.timeout,
                e.refused,
                e.io,
                e.http_4xx,
                e.http_5xx,
                e.other,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.max_ms
            );
        }
        out
    }

    /// The chart of the timeline: offered vs achieved rate, p50/p99 latency, errors and drops.
    pub fn timeline_chart(&self) -> Chart {
        let series = |name: &str, color: [u8; 3], f: &dyn Fn(&SecondStats) -> f64| Series {
            name: name.to_string(),
            color,
            points: self
                .timeline
                .iter()
                .map(|s| (f64::from(s.second), f(s)))
                .collect(),
        };
        Chart {
            title: format!("loadgen: {}", self.summary.url),
            x_label: "seconds".to_string(),
            panels: vec![
                Panel {
                    y_label: "requests/s".to_string(),
                    series: vec![
                        series("offered", [120, 120, 120], &|s| s.offered as f64),
                        series("achieved", [31, 119, 180], &|s| s.achieved as f64),
                    ],
                },
                Panel {
                    y_label: "latency ms".to_string(),
                    series: vec![
                        series("p50", [44, 160, 44], &|s| s.p50_ms),
                        series("p99", [214, 39, 40], &|s| s.p99_ms),
                    ],
                },
                Panel {
                    y_label: "per second".to_string(),
                    series: vec![
                        series("errors", [214, 39, 40], &|s| s.errors.total() as f64),
                        series("dropped", [255, 127, 14], &|s| s.dropped as f64),
                    ],
                },
            ],
        }
    }

    /// Writes `summary.json`, `timeline.csv`, `timeline.png` and `timeline.svg` into `dir`
    /// (created if missing) and returns the paths written.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let summary = dir.join("summary.json");
        let json = serde_json::to_string_pretty(&self.summary)
            .expect("the summary holds only plain numbers and strings");
        std::fs::write(&summary, json + "\n").map_err(write_err(&summary))?;
        let csv = dir.join("timeline.csv");
        std::fs::write(&csv, self.timeline_csv()).map_err(write_err(&csv))?;
        let chart = self.timeline_chart();
        let png = dir.join("timeline.png");
        chart::render_png(&chart, &png, CHART_SIZE)?;
        let svg = dir.join("timeline.svg");
        chart::render_svg(&chart, &svg, CHART_SIZE)?;
        Ok(vec![summary, csv, png, svg])
    }

    /// A short human-readable table of the summary.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let l = &s.latency_ms;
        let e = &s.errors;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target        {} ({} mode, seed {})",
            s.url, s.mode, s.seed
        );
        let _ = writeln!(
            out,
            "duration      {:.1} s{}",
            s.duration_secs,
            if s.interrupted {
                " (interrupted)"
            } else if s.capped {
                " (request cap reached)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "requests      offered {}  sent {}  responses {}  dropped {}  late {}",
            s.offered, s.requests, s.responses, s.dropped, s.late
        );
        let _ = writeln!(
            out,
            "rate          offered {:.1}/s  achieved {:.1}/s  (per second: mean {:.1}, sd {:.1})",
            s.offered_rps, s.achieved_rps, s.achieved_per_second.mean, s.achieved_per_second.stdev
        );
        let _ = writeln!(
            out,
            "latency ms    p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p95, l.p99, l.p999, l.max
        );
        let _ = writeln!(
            out,
            "errors        {} (timeout {}, refused {}, io {}, 4xx {}, 5xx {}, other {})",
            s.error_total, e.timeout, e.refused, e.io, e.http_4xx, e.http_5xx, e.other
        );
        let codes: Vec<String> = s
            .status_codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let _ = writeln!(out, "status codes  {}", codes.join(", "));
        out
    }
}
