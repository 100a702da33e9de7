//! The report's summary table in Markdown.

use std::fmt::Write as _;

use super::RunSummary;

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.1} s"))
}

/// A median over the steps that reacted, with how many did and when the others were.
fn reaction(median: Option<f64>, s: &RunSummary) -> String {
    let reacted = s.steps - s.missed_steps.len();
    let mut text = format!("{} (n={reacted} of {})", fmt_opt(median), s.steps);
    if !s.missed_steps.is_empty() {
        let at: Vec<String> = s.missed_steps.iter().map(|t| format!("{t:.0} s")).collect();
        let _ = write!(text, "; missed: {}", at.join(", "));
    }
    text
}

/// The summary table in Markdown: one column per run, then one line per baseline comparing the
/// first run with it.
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
        reaction(s.median_decision_s, s)
    });
    row("load step → new replica ready (median)", &|s| {
        reaction(s.median_ready_s, s)
    });
    row("replica-seconds", &|s| format!("{:.0}", s.replica_seconds));
    row("seconds meeting p95 SLO (≤ 5 % failed)", &|s| {
        format!("{:.1} % (SLO {:.0} ms)", s.slo_share * 100.0, s.slo_ms)
    });
    row("requests scheduled / sent", &|s| {
        format!("{} / {}", s.scheduled, s.requests)
    });
    row("failed requests (errors + timeouts + dropped)", &|s| {
        format!(
            "{} ({} + {} + {})",
            s.failed, s.errors, s.timeouts, s.dropped
        )
    });
    row("late requests (sent behind schedule)", &|s| {
        s.late.to_string()
    });
    row("peak replicas", &|s| s.peak_replicas.to_string());
    row("rescales", &|s| s.scale_events.to_string());
    row("replicas replaced after dying", &|s| s.replaced.to_string());
    if let [first, baselines @ ..] = summaries {
        md.push('\n');
        for b in baselines {
            comparison(&mut md, first, b);
        }
    }
    md
}

/// One line: the first run against a baseline.
fn comparison(md: &mut String, a: &RunSummary, b: &RunSummary) {
    let _ = write!(
        md,
        "- {} used {:.2}× the replica-seconds of {} with {:.1} % vs {:.1} % of seconds meeting the SLO",
        a.label,
        a.replica_seconds / b.replica_seconds.max(1e-9),
        b.label,
        a.slo_share * 100.0,
        b.slo_share * 100.0
    );
    if let (Some(x), Some(y)) = (a.median_decision_s, b.median_decision_s) {
        let _ = write!(
            md,
            ", and decided {x:.1} s after a load step instead of {y:.1} s ({} vs {} steps missed)",
            a.missed_steps.len(),
            b.missed_steps.len()
        );
    }
    md.push_str(".\n");
}
