//! The demo's report: reaction times, replica-seconds, SLO share and failures, as Markdown,
//! JSON, per-tick decisions and timeline charts (and a side-by-side when comparing).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tidescale_loadgen::chart::{self, Chart};
use tidescale_loadgen::{Report as LoadReport, Schedule, SecondStats};

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
    /// Load steps in the schedule: every one counts.
    pub steps: usize,
    /// When the steps that got no scale-up decision before the next step (or the end) were.
    pub missed_steps: Vec<f64>,
    /// Median seconds from a step to the first scale-up decision, over the steps that got one.
    pub median_decision_s: Option<f64>,
    /// Median seconds from a step to a new replica ready, over the steps that got one.
    pub median_ready_s: Option<f64>,
    /// Σ running replicas × seconds.
    pub replica_seconds: f64,
    /// Share of the seconds with scheduled traffic that met the objective: p95 within it and at
    /// most 5 % of the second's scheduled requests failed (a failed or dropped request has no
    /// latency, so beyond 5 % the second's p95 cannot have been met).
    pub slo_share: f64,
    /// The objective, milliseconds.
    pub slo_ms: f64,
    /// Requests the schedule asked for.
    pub scheduled: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed: `errors + timeouts + dropped`.
    pub failed: u64,
    /// Requests answered with 5xx or lost to a connection error (404s of unknown keys are
    /// answers, not errors).
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Requests the load generator never sent (in-flight cap): the schedule asked for them and
    /// nobody served them.
    pub dropped: u64,
    /// Requests sent later than scheduled (reported beside the failures, not among them).
    pub late: u64,
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

/// The share of the seconds with scheduled traffic that met the objective (see
/// [`RunSummary::slo_share`]).
pub fn slo_share(timeline: &[SecondStats], slo_ms: f64) -> f64 {
    let seconds: Vec<&SecondStats> = timeline.iter().filter(|s| s.offered > 0).collect();
    if seconds.is_empty() {
        return 0.0;
    }
    let met = seconds
        .iter()
        .filter(|s| {
            let failed = s.dropped + s.errors.total() - s.errors.http_4xx;
            let answered = s.achieved > 0 && s.p95_ms <= slo_ms;
            answered && failed as f64 <= 0.05 * s.offered as f64
        })
        .count();
    met as f64 / seconds.len() as f64
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
    let e = &run.load.summary.errors;
    let errors = e.refused + e.io + e.http_5xx + e.other;
    let dropped = run.load.summary.dropped;
    RunSummary {
        label: run.label.clone(),
        steps: reactions.len(),
        missed_steps: reactions
            .iter()
            .filter(|r| r.decision_after.is_none())
            .map(|r| r.step_at)
            .collect(),
        median_decision_s: median(reactions.iter().filter_map(|r| r.decision_after).collect()),
        median_ready_s: median(reactions.iter().filter_map(|r| r.ready_after).collect()),
        reactions,
        replica_seconds,
        slo_share: slo_share(&run.load.timeline, run.slo_ms),
        slo_ms: run.slo_ms,
        scheduled: run.load.summary.offered,
        requests: run.load.summary.requests,
        failed: errors + e.timeout + dropped,
        errors,
        timeouts: e.timeout,
        dropped,
        late: run.load.summary.late,
        peak_replicas: run.samples.iter().map(|s| s.desired).max().unwrap_or(0),
        scale_events: run.records.iter().filter(|r| r.applied).count(),
        replaced: run.events.iter().filter(|e| e.kind == "Died").count(),
    }
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
    if runs.len() > 1 {
        let chart = compare_chart(runs);
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

mod charts;
mod table;

pub use charts::{compare_chart, timeline_chart};
pub use table::markdown;

#[cfg(test)]
mod tests;
