//! The demo's report: reaction times, replica-seconds, SLO share and failures, as Markdown,
//! JSON, per-tick decisions and timeline charts (and a side-by-side when comparing).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tidescale_loadgen::chart::{self, Chart, Panel, Series, Style};
use tidescale_loadgen::{Report as LoadReport, Schedule};

use crate::control::TickRecord;

/// Size of the charts, pixels.
pub const CHART_SIZE: (u32, u32) = (1200, 900);

/// One sample of the pool, taken every second.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Replicas asked for.
    pub desired: i32,
    /// Members running (starting or ready, not draining).
    pub running: i32,
    /// Members ready.
    pub ready: i32,
}

/// A pool event, on the run's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct PoolEventRecord {
    /// Seconds since the run started.
    pub t: f64,
    /// The member.
    pub member: String,
    /// `Started`, `Ready`, `Draining`, `Stopped` or `Died`.
    pub kind: String,
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// `tidescale` or `hpa-defaults`.
    pub label: String,
    /// The traffic that was offered.
    pub schedule: Schedule,
    /// The p95 objective, milliseconds.
    pub slo_ms: f64,
    /// One record per policy tick.
    pub records: Vec<TickRecord>,
    /// Pool samples, one per second.
    pub samples: Vec<Sample>,
    /// Pool events.
    pub events: Vec<PoolEventRecord>,
    /// The load generator's report.
    pub load: LoadReport,
}

/// How fast the loop answered one load step.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Reaction {
    /// When the offered rate stepped up.
    pub step_at: f64,
    /// Seconds from the step to the first scale-up decision.
    pub decision_after: Option<f64>,
    /// Seconds from the step to the first new replica ready after that decision.
    pub ready_after: Option<f64>,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// The run's label.
    pub label: String,
    /// One entry per load step of the schedule.
    pub reactions: Vec<Reaction>,
    /// Median seconds from a step to the first scale-up decision.
    pub median_decision_s: Option<f64>,
    /// Median seconds from a step to a new replica ready.
    pub median_ready_s: Option<f64>,
    /// Σ running replicas × seconds.
    pub replica_seconds: f64,
    /// Share of seconds (with responses) whose p95 met the objective.
    pub slo_share: f64,
    /// The objective, milliseconds.
    pub slo_ms: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed: transport errors, timeouts and 5xx (404s of unknown keys are answers).
    pub failed: u64,
    /// The most replicas asked for.
    pub peak_replicas: i32,
    /// Rescales done.
    pub scale_events: usize,
    /// Replicas that died and were replaced.
    pub replaced: usize,
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// A file could not be written.
    #[error("cannot write {path}: {why}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Times where the offered rate jumps by half or more within a second.
pub fn step_times(schedule: &Schedule) -> Vec<f64> {
    let end = schedule.duration_secs();
    let mut steps: Vec<f64> = Vec::new();
    let mut t = 1.0;
    while t <= end {
        let (before, now) = (schedule.rate_at(t - 1.0), schedule.rate_at(t));
        if now >= before * 1.5
            && now - before >= 10.0
            && steps.last().is_none_or(|last| t - last > 5.0)
        {
            steps.push(t - 1.0 + first_rise(schedule, t - 1.0, before));
        }
        t += 0.5;
    }
    steps
}

/// Where inside `[from, from+1]` the rate first leaves `before` (to 0.05 s).
fn first_rise(schedule: &Schedule, from: f64, before: f64) -> f64 {
    (0..=20)
        .map(|i| f64::from(i) * 0.05)
        .find(|dt| schedule.rate_at(from + dt) > before * 1.05)
        .unwrap_or(0.0)
}

/// The median of `v`, or `None` when it is empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Computes a run's figures.
pub fn summarize(run: &RunResult) -> RunSummary {
    let steps = step_times(&run.schedule);
    let reactions: Vec<Reaction> = steps
        .iter()
        .enumerate()
        .map(|(i, &step)| {
            let until = steps.get(i + 1).copied().unwrap_or(f64::INFINITY);
            let decision = run
                .records
                .iter()
                .find(|r| r.t >= step && r.t < until && r.applied && r.desired > r.current)
                .map(|r| r.t);
            let ready = decision.and_then(|d| {
                run.events
                    .iter()
                    .find(|e| e.t >= d && e.t < until && e.kind == "Ready")
                    .map(|e| e.t - step)
            });
            Reaction {
                step_at: step,
                decision_after: decision.map(|d| d - step),
                ready_after: ready,
            }
        })
        .collect();
    let replica_seconds = run
        .samples
        .windows(2)
        .map(|w| f64::from(w[0].running) * (w[1].t - w[0].t))
        .sum();
    let seconds: Vec<_> = run
        .load
        .timeline
        .iter()
        .filter(|s| s.achieved > 0)
        .collect();
    let met = seconds.iter().filter(|s| s.p95_ms <= run.slo_ms).count();
    let e = &run.load.summary.errors;
    RunSummary {
        label: run.label.clone(),
        median_decision_s: median(reactions.iter().filter_map(|r| r.decision_after).collect()),
        median_ready_s: median(reactions.iter().filter_map(|r| r.ready_after).collect()),
        reactions,
        replica_seconds,
        slo_share: if seconds.is_empty() {
            0.0
        } else {
            met as f64 / seconds.len() as f64
        },
        slo_ms: run.slo_ms,
        requests: run.load.summary.requests,
        failed: e.timeout + e.refused + e.io + e.http_5xx + e.other,
        peak_replicas: run.samples.iter().map(|s| s.desired).max().unwrap_or(0),
        scale_events: run.records.iter().filter(|r| r.applied).count(),
        replaced: run.events.iter().filter(|e| e.kind == "Died").count(),
    }
}

fn series(name: &str, color: [u8; 3], points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        color,
        points,
        style: Style::Line,
    }
}

/// The timeline chart of one run: replicas, traffic, p95 against the objective.
pub fn timeline_chart(run: &RunResult) -> Chart {
    let desired = run
        .samples
        .iter()
        .map(|s| (s.t, f64::from(s.desired)))
        .collect();
    let ready = run
        .samples
        .iter()
        .map(|s| (s.t, f64::from(s.ready)))
        .collect();
    let decisions = run
        .records
        .iter()
        .filter(|r| r.applied)
        .map(|r| (r.t, f64::from(r.desired)))
        .collect();
    let offered = run
        .load
        .timeline
        .iter()
        .map(|s| (f64::from(s.second), s.offered as f64))
        .collect();
    let achieved = run
        .load
        .timeline
        .iter()
        .map(|s| (f64::from(s.second), s.achieved as f64))
        .collect();
    let p95 = run
        .load
        .timeline
        .iter()
        .filter(|s| s.achieved > 0)
        .map(|s| (f64::from(s.second), s.p95_ms))
        .collect();
    let end = run.schedule.duration_secs();
    Chart {
        title: format!("tidescale demo — {}", run.label),
        x_label: "seconds".into(),
        panels: vec![
            Panel {
                y_label: "replicas".into(),
                series: vec![
                    series("desired", [31, 119, 180], desired),
                    series("ready", [44, 160, 44], ready),
                    Series {
                        style: Style::Markers,
                        ..series("scale decisions", [214, 39, 40], decisions)
                    },
                ],
            },
            Panel {
                y_label: "requests/s".into(),
                series: vec![
                    series("offered", [127, 127, 127], offered),
                    series("achieved", [255, 127, 14], achieved),
                ],
            },
            Panel {
                y_label: "p95 latency (ms)".into(),
                series: vec![
                    series("p95", [148, 103, 189], p95),
                    series(
                        "SLO",
                        [214, 39, 40],
                        vec![(0.0, run.slo_ms), (end, run.slo_ms)],
                    ),
                ],
            },
        ],
    }
}

/// Both runs on one chart: ready replicas and p95 side by side.
pub fn compare_chart(a: &RunResult, b: &RunResult) -> Chart {
    let ready = |r: &RunResult| {
        r.samples
            .iter()
            .map(|s| (s.t, f64::from(s.ready)))
            .collect()
    };
    let p95 = |r: &RunResult| {
        r.load
            .timeline
            .iter()
            .filter(|s| s.achieved > 0)
            .map(|s| (f64::from(s.second), s.p95_ms))
            .collect()
    };
    let offered = a
        .load
        .timeline
        .iter()
        .map(|s| (f64::from(s.second), s.offered as f64))
        .collect();
    let end = a.schedule.duration_secs();
    Chart {
        title: format!("{} vs {}: same traffic, same metrics", a.label, b.label),
        x_label: "seconds".into(),
        panels: vec![
            Panel {
                y_label: "requests/s offered".into(),
                series: vec![series("offered", [127, 127, 127], offered)],
            },
            Panel {
                y_label: "ready replicas".into(),
                series: vec![
                    series(&a.label, [31, 119, 180], ready(a)),
                    series(&b.label, [255, 127, 14], ready(b)),
                ],
            },
            Panel {
                y_label: "p95 latency (ms)".into(),
                series: vec![
                    series(&a.label, [31, 119, 180], p95(a)),
                    series(&b.label, [255, 127, 14], p95(b)),
                    series("SLO", [214, 39, 40], vec![(0.0, a.slo_ms), (end, a.slo_ms)]),
                ],
            },
        ],
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.1} s"))
}

/// The summary table in Markdown.
pub fn markdown(summaries: &[RunSummary]) -> String {
    let mut md = String::from("# tidescale demo\n\n| | ");
    md.push_str(
        &summaries
            .iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    md.push_str(" |\n|---|");
    md.push_str(&"---|".repeat(summaries.len()));
    md.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&RunSummary) -> String| {
        let _ = writeln!(
            md,
            "| {name} | {} |",
            summaries.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    };
    row("load step → first scale-up decision (median)", &|s| {
        fmt_opt(s.median_decision_s)
    });
    row("load step → new replica ready (median)", &|s| {
        fmt_opt(s.median_ready_s)
    });
    row("load steps", &|s| s.reactions.len().to_string());
    row("replica-seconds", &|s| format!("{:.0}", s.replica_seconds));
    row("seconds meeting p95 SLO", &|s| {
        format!("{:.1} % (SLO {:.0} ms)", s.slo_share * 100.0, s.slo_ms)
    });
    row("requests sent", &|s| s.requests.to_string());
    row("failed requests (5xx, timeouts, connection errors)", &|s| {
        s.failed.to_string()
    });
    row("peak replicas", &|s| s.peak_replicas.to_string());
    row("rescales", &|s| s.scale_events.to_string());
    row("replicas replaced after dying", &|s| s.replaced.to_string());
    if let [a, b] = summaries {
        let _ = write!(
            md,
            "\n{} used {:.2}× the replica-seconds of {}",
            a.label,
            a.replica_seconds / b.replica_seconds.max(1e-9),
            b.label
        );
        if let (Some(x), Some(y)) = (a.median_decision_s, b.median_decision_s) {
            let _ = write!(
                md,
                " and decided {:.1} s after a load step instead of {:.1} s",
                x, y
            );
        }
        md.push_str(".\n");
    }
    md
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), SummaryError> {
    std::fs::write(path, contents).map_err(|e| SummaryError::Write {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn write_run(dir: &Path, run: &RunResult) -> Result<(), SummaryError> {
    std::fs::create_dir_all(dir).map_err(|e| SummaryError::Write {
        path: dir.to_path_buf(),
        why: e.to_string(),
    })?;
    let jsonl = |items: Vec<serde_json::Value>| {
        items
            .into_iter()
            .map(|v| v.to_string() + "\n")
            .collect::<String>()
    };
    let decisions = run
        .records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    write_file(&dir.join("decisions.jsonl"), jsonl(decisions).as_bytes())?;
    let events = run
        .events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    write_file(&dir.join("pool-events.jsonl"), jsonl(events).as_bytes())?;
    write_file(
        &dir.join("load-timeline.csv"),
        run.load.timeline_csv().as_bytes(),
    )?;
    let chart = timeline_chart(run);
    for (name, render) in [
        (
            "timeline.png",
            chart::render_png as fn(&Chart, &Path, (u32, u32)) -> Result<(), chart::ChartError>,
        ),
        ("timeline.svg", chart::render_svg),
    ] {
        let path = dir.join(name);
        render(&chart, &path, CHART_SIZE).map_err(|e| SummaryError::Write {
            path,
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// Writes the whole report into `dir` and returns the Markdown summary.
pub fn write(dir: &Path, runs: &[RunResult]) -> Result<String, SummaryError> {
    let summaries: Vec<RunSummary> = runs.iter().map(summarize).collect();
    for (i, run) in runs.iter().enumerate() {
        let sub = if i == 0 {
            dir.to_path_buf()
        } else {
            dir.join(&run.label)
        };
        write_run(&sub, run)?;
    }
    if let [a, b] = runs {
        let chart = compare_chart(a, b);
        for (name, png) in [("compare.png", true), ("compare.svg", false)] {
            let path = dir.join(name);
            let result = if png {
                chart::render_png(&chart, &path, CHART_SIZE)
            } else {
                chart::render_svg(&chart, &path, CHART_SIZE)
            };
            result.map_err(|e| SummaryError::Write {
                path,
                why: e.to_string(),
            })?;
        }
    }
    let md = markdown(&summaries);
    write_file(&dir.join("summary.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(&summaries).unwrap_or_default();
    write_file(&dir.join("summary.json"), json.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests;
