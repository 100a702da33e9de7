//! Reaction to a ×4 load step under each cadence, over ten phases of the step against the
//! decision clock: the real `PolicyLoop` and engine on the demo's policy, a paused tokio clock,
//! a synthetic request-rate metric and an in-memory target.
//!
//! The live steps run (`scripts/bench-demo.sh`) measures tidescale over ten steps, but the
//! hpa-defaults run reacts only once there: its 300 s scale-down window keeps it scaled up
//! between steps. Here every step starts from one replica, so both cadences get ten samples,
//! with the step landing at ten evenly spread points of the 15 s decision cycle.
//!
//! Goal (issue): first scale-up decision ≤ 2 s (median of 10 steps) against ≥ 15 s for the
//! native HPA's defaults.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tidescale::clock::{self, Instant};
use tidescale::control::CountingRecorder;
use tidescale::control::policy_loop::{LoopSource, PolicyLoop};
use tidescale::engine::Replicas;
use tidescale::local::demo::{Cadence, Compare, DEFAULT_POLICY, HPA_SYNC_PERIOD, loop_options};
use tidescale::local::report::median;
use tidescale::metric::{MetricId, Reading};
use tidescale::source::{MetricSource, SourceError};
use tidescale::spec::load_policy_yaml;
use tidescale::target::fake::FakeTarget;

/// Requests per second before the step; four times as many after it.
const BASE_RPS: f64 = 80.0;
/// The demo policy's rate window.
const WINDOW_S: f64 = 3.0;
/// When the first step happens, after the loop started; step k comes k × 1.5 s later.
const FIRST_STEP_S: f64 = 60.0;

/// The pool's request rate as a scrape source over a `WINDOW_S` window sees it: the average of
/// a ×4 step function over the window that ends now.
struct StepRate {
    id: MetricId,
    origin: Instant,
    step_at_s: f64,
}

impl MetricSource for StepRate {
    fn id(&self) -> &MetricId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "synthetic"
    }
    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        let elapsed = clock::now().duration_since(self.origin);
        let now = elapsed.as_secs_f64();
        let stepped = (now - self.step_at_s).clamp(0.0, WINDOW_S) / WINDOW_S;
        let rate = BASE_RPS * (1.0 + 3.0 * stepped);
        let at = SystemTime::UNIX_EPOCH + elapsed;
        Box::pin(async move { Ok(Reading::value(rate, at, "synthetic ×4 step")) })
    }
}

/// Seconds from the step to the first decision above the current replica count, for the
/// demo policy (`None`) or one of its baselines.
async fn reaction(baseline: Option<Compare>, step_at_s: f64) -> Option<f64> {
    let (mut spec, _) = load_policy_yaml(DEFAULT_POLICY).expect("the embedded policy is valid");
    spec.metrics.retain(|m| m.name == "rps");
    let (spec, policy, cadence) = match baseline {
        None => {
            let policy = spec.validate().expect("rps alone is a valid policy");
            (spec, policy, Cadence::Policy)
        }
        Some(b) => b.setup(&spec).expect("the baselines are valid"),
    };
    let origin = clock::now();
    let source = Arc::new(StepRate {
        id: MetricId::new("demo", "rps"),
        origin,
        step_at_s,
    });
    let target = Arc::new(FakeTarget::new("demo", Replicas(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let policy_loop = PolicyLoop::from_sources(
        policy,
        vec![LoopSource {
            name: "rps".into(),
            resource: None,
            source,
        }],
        target,
        None,
        Arc::new(CountingRecorder::default()),
        loop_options(&spec, cadence, HPA_SYNC_PERIOD),
    )
    .expect("the loop builds")
    .with_records(tx);
    let stop = tokio::time::sleep(Duration::from_secs_f64(step_at_s + 60.0));
    tokio::spawn(policy_loop.run(stop));
    while let Some((record, _)) = rx.recv().await {
        if record.t >= step_at_s && record.desired > record.current {
            return Some(record.t - step_at_s);
        }
    }
    None
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    println!(
        "reaction to a ×{} step ({BASE_RPS} → {} req/s, 1 replica, target 100 req/s per replica), 10 step phases 1.5 s apart",
        4,
        4.0 * BASE_RPS
    );
    for (label, baseline) in [
        ("tidescale (1 s interval)", None),
        (
            "hpa-defaults (15 s sync, 15 s metrics resolution)",
            Some(Compare::HpaDefaults),
        ),
        (
            "hpa-same-behavior (15 s sync, 15 s resolution)",
            Some(Compare::HpaSameBehavior),
        ),
        (
            "tidescale-defaults (1 s interval, HPA behavior)",
            Some(Compare::TidescaleDefaults),
        ),
    ] {
        let reactions: Vec<f64> = (0..10)
            .map(|k| {
                runtime
                    .block_on(reaction(baseline, FIRST_STEP_S + 1.5 * k as f64))
                    .expect("the step leads to a scale-up within 60 s")
            })
            .collect();
        let shown: Vec<String> = reactions.iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "  {label:<52} median {:>5.1} s   min {:>5.1} s   max {:>5.1} s   [{}]",
            median(reactions.clone()).expect("ten reactions"),
            reactions.iter().copied().fold(f64::INFINITY, f64::min),
            reactions.iter().copied().fold(0.0, f64::max),
            shown.join(" ")
        );
    }
}
