//! The report's charts: one run's timeline, and every run of a comparison side by side.

use tidescale_loadgen::chart::{Chart, Panel, Series, Style};

use super::RunResult;

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

/// Colours of the runs in a comparison, in order.
const PALETTE: [[u8; 3]; 4] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [148, 103, 189],
];

/// Every run on one chart: the offered traffic, ready replicas and p95 side by side.
pub fn compare_chart(runs: &[RunResult]) -> Chart {
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
    let first = &runs[0];
    let offered = first
        .load
        .timeline
        .iter()
        .map(|s| (f64::from(s.second), s.offered as f64))
        .collect();
    let end = first.schedule.duration_secs();
    let colour = |i: usize| PALETTE[i % PALETTE.len()];
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let mut latency: Vec<Series> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| series(&r.label, colour(i), p95(r)))
        .collect();
    latency.push(series(
        "SLO",
        [214, 39, 40],
        vec![(0.0, first.slo_ms), (end, first.slo_ms)],
    ));
    Chart {
        title: format!("{}: same traffic, same metrics", labels.join(" vs ")),
        x_label: "seconds".into(),
        panels: vec![
            Panel {
                y_label: "requests/s offered".into(),
                series: vec![series("offered", [127, 127, 127], offered)],
            },
            Panel {
                y_label: "ready replicas".into(),
                series: runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| series(&r.label, colour(i), ready(r)))
                    .collect(),
            },
            Panel {
                y_label: "p95 latency (ms)".into(),
                series: latency,
            },
        ],
    }
}
