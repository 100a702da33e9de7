//! The baselines a demo run is compared with, and the cadences they run at: what each one
//! changes against the policy, and what real pipeline it stands for.

use std::time::Duration;

use super::demo::DemoError;
use crate::control::LoopOptions;
use crate::engine::Policy;
use crate::metric::DurationSpec;
use crate::spec::{BehaviorSpec, ScalingPolicySpec, ScalingRulesSpec};

/// What to compare the run with: each baseline changes one thing or names what it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// What a user gets from the native HPA out of the box: its cadence and metrics pipeline
    /// and its default behaviour (loop and behaviour both differ from the policy's).
    HpaDefaults,
    /// The native HPA's cadence and metrics pipeline with the policy's own `behavior`: isolates
    /// what tidescale's loop adds.
    HpaSameBehavior,
    /// tidescale's loop with the HPA's default behaviour: isolates what the behaviour adds.
    TidescaleDefaults,
    /// The policy with its calm scale-down (confidence, sample window, flap budget) replaced by
    /// a 5 s stabilization window: isolates what the calm scale-down costs or saves.
    ShortWindow,
}

impl Compare {
    /// The run's label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Compare::HpaDefaults => "hpa-defaults",
            Compare::HpaSameBehavior => "hpa-same-behavior",
            Compare::TidescaleDefaults => "tidescale-defaults",
            Compare::ShortWindow => "short-window",
        }
    }

    /// The spec, policy and cadence of this baseline for the policy `spec`.
    pub fn setup(
        self,
        spec: &ScalingPolicySpec,
    ) -> Result<(ScalingPolicySpec, Policy, Cadence), DemoError> {
        let (spec, policy) = match self {
            Compare::HpaDefaults => hpa_defaults(spec)?,
            Compare::HpaSameBehavior => {
                let mut spec = spec.clone();
                spec.interval = Some(DurationSpec(HPA_SYNC_PERIOD));
                let policy = spec.validate()?;
                (spec, policy)
            }
            Compare::TidescaleDefaults => {
                let mut spec = spec.clone();
                spec.behavior = Some(hpa_default_behavior());
                let policy = spec.validate()?;
                (spec, policy)
            }
            Compare::ShortWindow => {
                let mut spec = spec.clone();
                spec.behavior = Some(short_window(spec.behavior.take().unwrap_or_default()));
                let policy = spec.validate()?;
                (spec, policy)
            }
        };
        let cadence = match self {
            Compare::TidescaleDefaults | Compare::ShortWindow => Cadence::Policy,
            Compare::HpaDefaults | Compare::HpaSameBehavior => Cadence::MetricsPipeline,
        };
        Ok((spec, policy, cadence))
    }
}

/// The native HPA's sync period (`--horizontal-pod-autoscaler-sync-period`, default 15 s).
pub const HPA_SYNC_PERIOD: Duration = Duration::from_secs(15);

/// The same policy under the native HPA's defaults: 15 s interval, default behaviour, tolerance 0.1.
pub fn hpa_defaults(spec: &ScalingPolicySpec) -> Result<(ScalingPolicySpec, Policy), DemoError> {
    let mut spec = spec.clone();
    spec.interval = Some(DurationSpec(HPA_SYNC_PERIOD));
    spec.behavior = Some(hpa_default_behavior());
    let policy = spec.validate()?;
    Ok((spec, policy))
}

/// The HPA's `behavior` defaults written out (§4.8): scale up by 4 pods or 100 % per 15 s,
/// scale down after a 300 s window by up to 100 % per 15 s, tolerance 0.1 each way, no cooldown.
pub fn hpa_default_behavior() -> BehaviorSpec {
    BehaviorSpec {
        scale_up: Some(ScalingRulesSpec {
            stabilization_window_seconds: Some(0),
            tolerance: Some(0.1),
            ..ScalingRulesSpec::default()
        }),
        scale_down: Some(ScalingRulesSpec {
            stabilization_window_seconds: Some(300),
            tolerance: Some(0.1),
            ..ScalingRulesSpec::default()
        }),
        max_reversals: None,
    }
}

/// `behavior` with the calm scale-down taken out and a 5 s scale-down window instead (what
/// the demo's policy used before it had one); everything else as it was.
pub fn short_window(mut behavior: BehaviorSpec) -> BehaviorSpec {
    let down = behavior
        .scale_down
        .get_or_insert_with(ScalingRulesSpec::default);
    down.stabilization_window_seconds = Some(SHORT_WINDOW_S);
    down.confidence = None;
    down.sample_window_seconds = None;
    behavior.max_reversals = None;
    behavior
}

/// The scale-down window of the `short-window` baseline, seconds.
const SHORT_WINDOW_S: i32 = 5;

/// How a run reads and decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Read and decide every policy interval, on fresh readings (tidescale).
    Policy,
    /// Decide every policy interval on readings a metrics pipeline published at that
    /// resolution (the native HPA on metrics-server or an adapter).
    MetricsPipeline,
}

/// How often a run of `spec` reads and decides under `cadence`; `resolution` is how often the
/// metrics pipeline publishes readings (only the pipeline cadence uses it).
pub fn loop_options(
    spec: &ScalingPolicySpec,
    cadence: Cadence,
    resolution: Duration,
) -> LoopOptions {
    let interval = spec.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5));
    match cadence {
        Cadence::Policy => LoopOptions::every(&spec.target_ref.name, interval),
        // The HPA decides every `interval` on what a metrics pipeline published at its
        // resolution, while the metrics themselves are collected continuously.
        Cadence::MetricsPipeline => LoopOptions {
            interval: Duration::from_secs(1),
            evaluate_every: interval.as_secs().max(1) as u32,
            resolution,
            ..LoopOptions::every(&spec.target_ref.name, interval)
        },
    }
}

/// What a baseline run stands for, in one line.
pub fn describe(baseline: Compare, resolution: Duration) -> String {
    let pipeline = format!(
        "decisions every {}s on readings a metrics pipeline publishes every {} (metrics-server's \
         default is 15s; Prometheus with an adapter: its scrape interval plus the adapter's refresh)",
        HPA_SYNC_PERIOD.as_secs(),
        DurationSpec(resolution)
    );
    match baseline {
        Compare::HpaDefaults => format!("hpa-defaults: the native HPA out of the box: {pipeline}, default behavior"),
        Compare::HpaSameBehavior => format!("hpa-same-behavior: the native HPA's loop with the policy's behavior: {pipeline}"),
        Compare::TidescaleDefaults => "tidescale-defaults: tidescale's loop at the policy's interval with the HPA's default behavior".into(),
        Compare::ShortWindow => format!("short-window: the policy with a {SHORT_WINDOW_S} s scale-down window instead of its calm scale-down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Behavior, Normalization};
    use crate::local::demo::DEFAULT_POLICY;
    use crate::spec::load_policy_yaml;

    #[test]
    fn each_baseline_changes_what_it_says() {
        let (spec, policy) = load_policy_yaml(DEFAULT_POLICY).unwrap();
        let hpa = Behavior::hpa_default();
        let behavior_of = |p: &Policy| match &p.normalization {
            Normalization::Behavior(b) => b.clone(),
            Normalization::Legacy { .. } => panic!("a behavior is always written out"),
        };
        let (s, p, c) = Compare::HpaDefaults.setup(&spec).unwrap();
        assert_eq!(
            (s.interval(), c),
            (HPA_SYNC_PERIOD, Cadence::MetricsPipeline)
        );
        assert_eq!(
            behavior_of(&p).scale_down.stabilization_window,
            hpa.scale_down.stabilization_window
        );

        let (s, p, c) = Compare::HpaSameBehavior.setup(&spec).unwrap();
        assert_eq!(
            (s.interval(), c),
            (HPA_SYNC_PERIOD, Cadence::MetricsPipeline)
        );
        assert_eq!(
            p.normalization, policy.normalization,
            "the policy's own behavior"
        );

        let (s, p, c) = Compare::TidescaleDefaults.setup(&spec).unwrap();
        assert_eq!((s.interval(), c), (spec.interval(), Cadence::Policy));
        assert_eq!(
            behavior_of(&p).scale_down.stabilization_window,
            hpa.scale_down.stabilization_window
        );
        assert_eq!(behavior_of(&p).scale_up.policies, hpa.scale_up.policies);

        let (s, p, c) = Compare::ShortWindow.setup(&spec).unwrap();
        assert_eq!((s.interval(), c), (spec.interval(), Cadence::Policy));
        let (b, own) = (behavior_of(&p), behavior_of(&policy));
        assert_eq!(b.scale_down.stabilization_window.0, 5);
        assert_eq!((b.confidence, b.max_reversals), (None, None));
        assert_eq!(b.scale_up, own.scale_up, "only the scale-down changes");
        assert_eq!(b.scale_down.policies, own.scale_down.policies);
        assert_eq!(b.scale_down.cooldown, own.scale_down.cooldown);
    }

    #[test]
    fn the_pipeline_cadence_decides_every_sync_period_on_readings_at_the_resolution() {
        let (spec, _) = load_policy_yaml(DEFAULT_POLICY).unwrap();
        let (s, _, c) = Compare::HpaDefaults.setup(&spec).unwrap();
        let o = loop_options(&s, c, Duration::from_secs(30));
        assert_eq!(o.interval, Duration::from_secs(1));
        assert_eq!(o.evaluate_every, 15);
        assert_eq!(o.resolution, Duration::from_secs(30));
        assert!(describe(Compare::HpaDefaults, Duration::from_secs(30)).contains("every 30s"));
    }
}
