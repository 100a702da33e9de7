//! A decision and its reasons; `Display` is the one-line explanation with its numbers.

use std::fmt;
use std::sync::Arc;

use super::Replicas;
use super::calm::{Bound, Settle};
use super::policy::{RatePolicyKind, Target};
use super::quantity::fmt_milli;
use super::time::Seconds;

/// What the engine decided this tick, and why, step by step.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The count the decision started from (`spec.replicas`).
    pub current: Replicas,
    /// The count the target should have.
    pub desired: Replicas,
    /// Each metric's proposal, for the metrics that produced one, in policy order.
    pub proposals: Vec<Proposal>,
    /// The steps that produced or held the number, in the order they applied.
    pub reasons: Vec<Reason>,
    /// True when the target should be rescaled: `desired != current` and not a dry run.
    /// The caller reports a successful rescale with `Evaluator::record_scale`.
    pub apply: bool,
}

impl Decision {
    /// The direction of the change, if any.
    pub fn direction(&self) -> Option<Direction> {
        Direction::of(self.current, self.desired)
    }

    /// The kind of the last step that changed or held the number (the status' `reason`):
    /// the bounds step counts only when it moved the count.
    pub fn settled_by(&self) -> &'static str {
        self.reasons
            .iter()
            .rev()
            .find(|r| match r {
                Reason::Bounds {
                    before, replicas, ..
                } => before != replicas,
                Reason::DryRun => false,
                _ => true,
            })
            .map_or("Unchanged", Reason::kind)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Up or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// More replicas.
    Up,
    /// Fewer replicas.
    Down,
}

impl Direction {
    /// The direction from `from` to `to`, or `None` when equal.
    pub fn of(from: Replicas, to: Replicas) -> Option<Self> {
        match to.cmp(&from) {
            std::cmp::Ordering::Greater => Some(Direction::Up),
            std::cmp::Ordering::Less => Some(Direction::Down),
            std::cmp::Ordering::Equal => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        }
    }
}

/// One metric's proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The metric's name.
    pub metric: Arc<str>,
    /// The replicas this metric asks for.
    pub replicas: Replicas,
    /// usage / target (the HPA's ratio, before any refill of missing or unready pods).
    pub ratio: f64,
    /// What was measured.
    pub usage: Usage,
    /// What it was compared with.
    pub target: Target,
    /// True when the ratio fell inside the tolerance and the count was kept.
    pub within_tolerance: bool,
    /// The unrounded count the reading implies (the ratio times the pods it multiplies), also
    /// when the tolerance kept the count: the sample the confidence bound is computed over.
    pub demand: f64,
}

/// What a metric measured, in the form its target compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Usage {
    /// Average utilization of requests, whole percent (truncated).
    Utilization(i32),
    /// Average per pod, milli-units (truncated integer division).
    PerPod(i64),
    /// One value for the target, milli-units.
    Total(i64),
    /// One total compared per replica (§4.4.4): the total and `ceil(total / status.replicas)`,
    /// the HPA's status `averageValue` (`None` when `status.replicas` is 0).
    TotalPerReplica {
        /// The total, milli-units.
        total: i64,
        /// The total per replica, rounded up, milli-units.
        per_replica: Option<i64>,
    },
}

/// How a rate limit was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    /// The policy that gave the limit.
    Policy {
        /// Pods or Percent.
        kind: RatePolicyKind,
        /// The policy's value.
        value: i32,
        /// The policy's period.
        period: Seconds,
    },
    /// `selectPolicy: Disabled`.
    Disabled,
    /// No `behavior`: at most `max(2 × current, 4)` (R4.17).
    Legacy,
}

/// One step of a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The target has 0 replicas and `minReplicas > 0`: scaling is disabled (R4.3).
    ScalingDisabled,
    /// The target has more than `maxReplicas` (R4.4); no metric was considered.
    AboveMax {
        /// The bound.
        max: Replicas,
    },
    /// The target has fewer than `minReplicas` (R4.5); no metric was considered.
    BelowMin {
        /// The bound.
        min: Replicas,
    },
    /// A metric's proposal.
    Proposed(Proposal),
    /// A metric failed to read or compute.
    MetricFailed {
        /// The metric's name.
        metric: Arc<str>,
        /// What went wrong.
        error: String,
    },
    /// A failed metric proposes the fallback count (`onMetricError: Fallback`).
    Fallback {
        /// The metric's name.
        metric: Arc<str>,
        /// The fallback count.
        replicas: Replicas,
    },
    /// Several proposals combined by max (R4.13).
    Combined {
        /// The largest proposal.
        replicas: Replicas,
    },
    /// Metric failures hold the count (R4.14 under `Hold`, or nothing answered).
    HeldOnError {
        /// True when every metric failed.
        all_failed: bool,
        /// The count held.
        replicas: Replicas,
    },
    /// The stabilization window changed the number (R4.18, R4.16).
    Stabilized {
        /// The direction that was stabilized.
        direction: Direction,
        /// The window.
        window: Seconds,
        /// The stabilized number.
        replicas: Replicas,
    },
    /// A cooldown after the last scale event held the count.
    CoolingDown {
        /// The direction held.
        direction: Direction,
        /// Milliseconds left of the cooldown.
        remaining_ms: i64,
        /// The count held.
        replicas: Replicas,
    },
    /// A rate limit cut the change (R4.19, R4.20, R4.17).
    RateLimited {
        /// The direction limited.
        direction: Direction,
        /// Where the limit came from.
        limit: RateLimit,
        /// The limited number.
        replicas: Replicas,
    },
    /// The min/max bounds; always the last numeric step.
    Bounds {
        /// `minReplicas`.
        min: Replicas,
        /// `maxReplicas`.
        max: Replicas,
        /// The number before the bounds.
        before: Replicas,
        /// The number after.
        replicas: Replicas,
    },
    /// The confidence stage weighed a metric's recent demand on a scale-down.
    Confident {
        /// The metric's name.
        metric: Arc<str>,
        /// What it is compared with (for the explanation's units).
        target: Target,
        /// The bound of its mean demand.
        bound: Bound,
        /// Where the metric's noise settles, when that is above the rounded bound.
        settle: Option<Settle>,
        /// The confidence level.
        level: f64,
        /// True when the bound still implies fewer replicas.
        lower: bool,
        /// The lowest count the metric allows.
        replicas: Replicas,
    },
    /// Too few recent readings of a metric for a confidence bound: it holds the count.
    TooFewReadings {
        /// The metric's name.
        metric: Arc<str>,
        /// Readings within the sample window.
        readings: usize,
        /// Readings needed.
        needed: usize,
        /// The count held.
        replicas: Replicas,
    },
    /// The flap budget held a change of direction.
    FlapBudget {
        /// The direction held.
        direction: Direction,
        /// Direction changes allowed within the window.
        count: u32,
        /// The window.
        window: Seconds,
        /// The count held.
        replicas: Replicas,
    },
    /// `dryRun`: the decision is reported, not applied.
    DryRun,
}

impl Reason {
    /// A stable CamelCase name of the step, for JSON output, status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::ScalingDisabled => "ScalingDisabled",
            Reason::AboveMax { .. } => "AboveMax",
            Reason::BelowMin { .. } => "BelowMin",
            Reason::Proposed(p) if p.within_tolerance => "WithinTolerance",
            Reason::Proposed(_) => "Proposed",
            Reason::MetricFailed { .. } => "SourceUnavailable",
            Reason::Fallback { .. } => "Fallback",
            Reason::Combined { .. } => "Combined",
            Reason::HeldOnError { .. } => "HeldOnError",
            Reason::Stabilized { .. } => "Stabilized",
            Reason::CoolingDown { .. } => "CoolingDown",
            Reason::RateLimited { .. } => "RateLimited",
            Reason::Bounds { .. } => "Clamped",
            Reason::Confident { lower: true, .. } => "ConfidentScaleDown",
            Reason::Confident { lower: false, .. } => "HeldByConfidence",
            Reason::TooFewReadings { .. } => "TooFewReadings",
            Reason::FlapBudget { .. } => "FlapBudget",
            Reason::DryRun => "DryRun",
        }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.metric;
        match (self.usage, self.target) {
            (Usage::Utilization(u), Target::Utilization(t)) => write!(f, "{name} {u}% vs {t}%")?,
            (Usage::PerPod(v), Target::AverageValue(t)) => {
                write!(f, "{name} {}/pod vs {}", fmt_milli(v), fmt_milli(t))?
            }
            (Usage::TotalPerReplica { total: v, .. }, Target::AverageValue(t)) => {
                write!(f, "{name} {} vs {}/pod", fmt_milli(v), fmt_milli(t))?
            }
            (Usage::Total(v), Target::Value(t)) => {
                write!(f, "{name} {} vs {}", fmt_milli(v), fmt_milli(t))?
            }
            (usage, target) => write!(f, "{name} {usage:?} vs {target:?}")?,
        }
        write!(f, " → {}", self.replicas)?;
        if self.within_tolerance {
            f.write_str(" (within tolerance)")?;
        }
        Ok(())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ScalingDisabled => f.write_str("target at 0 replicas: scaling disabled → 0"),
            Reason::AboveMax { max } => write!(f, "current above max {max} → {max}"),
            Reason::BelowMin { min } => write!(f, "current below min {min} → {min}"),
            Reason::Proposed(p) => write!(f, "{p}"),
            Reason::MetricFailed { metric, error } => write!(f, "{metric} failed: {error}"),
            Reason::Fallback { metric, replicas } => {
                write!(f, "{metric} fallback → {replicas}")
            }
            Reason::Combined { replicas } => write!(f, "max → {replicas}"),
            Reason::HeldOnError {
                all_failed: true,
                replicas,
            } => write!(f, "hold: no metric answered → {replicas}"),
            Reason::HeldOnError {
                all_failed: false,
                replicas,
            } => write!(
                f,
                "hold: a metric failed and the rest would scale down → {replicas}"
            ),
            Reason::Stabilized {
                direction,
                window,
                replicas,
            } => write!(
                f,
                "{} stabilized over {window} → {replicas}",
                direction.word()
            ),
            Reason::CoolingDown {
                direction,
                remaining_ms,
                replicas,
            } => {
                let secs = (*remaining_ms as f64 / 1000.0).ceil() as i64;
                write!(f, "{} cooldown {secs}s left → {replicas}", direction.word())
            }
            Reason::RateLimited {
                limit, replicas, ..
            } => match limit {
                RateLimit::Policy {
                    kind,
                    value,
                    period,
                } => {
                    let kind = match kind {
                        RatePolicyKind::Pods => "Pods",
                        RatePolicyKind::Percent => "Percent",
                    };
                    write!(f, "rate limit {kind} {value}/{period} → {replicas}")
                }
                RateLimit::Disabled => write!(f, "scaling disabled in this direction → {replicas}"),
                RateLimit::Legacy => write!(f, "rate limit max(2×current, 4) → {replicas}"),
            },
            Reason::Bounds {
                min, max, replicas, ..
            } => write!(f, "bounds [{min},{max}] → {replicas}"),
            Reason::Confident { .. }
            | Reason::TooFewReadings { .. }
            | Reason::FlapBudget { .. } => fmt_calm(f, self),
            Reason::DryRun => f.write_str("dry run: not applied"),
        }
    }
}

/// The reasons of the confidence and flap budget stages.
fn fmt_calm(f: &mut fmt::Formatter<'_>, reason: &Reason) -> fmt::Result {
    match reason {
        Reason::Confident {
            metric,
            target,
            bound,
            settle,
            level,
            lower,
            replicas,
        } => {
            fmt_confident(f, metric, *target, bound, *level)?;
            write!(f, " → bound {:.1}", bound.upper())?;
            if let Some(s) = settle {
                write!(f, ", readings to {:.1} settle at {}", s.peak, s.replicas)?;
            }
            let tail = if *lower {
                ""
            } else {
                " (not lower with confidence)"
            };
            write!(f, " → {replicas}{tail}")
        }
        Reason::TooFewReadings {
            metric,
            readings,
            needed,
            replicas,
        } => write!(
            f,
            "{metric}: {readings} of {needed} readings for a confidence bound → {replicas}"
        ),
        Reason::FlapBudget {
            direction,
            count,
            window,
            replicas,
        } => write!(
            f,
            "{} would exceed {count} reversals per {window} → {replicas}",
            direction.word()
        ),
        _ => unreachable!("fmt_calm is called for the calm stages' reasons only"),
    }
}

/// `rps 380±45 (95 %) vs 100/pod`: an `AverageValue` demand in the metric's units (demand ×
/// target is the total); other targets in replicas.
fn fmt_confident(
    f: &mut fmt::Formatter<'_>,
    metric: &str,
    target: Target,
    bound: &Bound,
    level: f64,
) -> fmt::Result {
    let pct = level * 100.0;
    // A falling sample's level is its latest reading's on the fitted line.
    let falling = if bound.falling { ", falling" } else { "" };
    match target {
        Target::AverageValue(t) => {
            let units = t as f64 / 1000.0;
            let (mean, margin) = (bound.mean * units, bound.margin * units);
            // Three significant digits of the mean; the margin to the same decimals.
            let digits = 2 - mean.abs().max(1e-3).log10().floor() as i32;
            let d = digits.clamp(0, 3) as usize;
            write!(
                f,
                "{metric} {mean:.d$}±{margin:.d$} ({pct:.0} %{falling}) vs {}/pod",
                fmt_milli(t)
            )
        }
        _ => write!(
            f,
            "{metric} demand {:.2}±{:.2} replicas ({pct:.0} %{falling})",
            bound.mean, bound.margin
        ),
    }
}

/// A proposal's usage and target as plain numbers in the target's units: percent for
/// utilization, otherwise units (milli-units divided by 1000); a total compared per replica
/// shows its per-replica value.
pub fn units(usage: Usage, target: super::Target) -> (f64, f64) {
    use super::Target;
    let t = match target {
        Target::Utilization(p) => f64::from(p),
        Target::AverageValue(m) | Target::Value(m) => m as f64 / 1000.0,
    };
    let u = match usage {
        Usage::Utilization(p) => f64::from(p),
        Usage::PerPod(m) | Usage::Total(m) => m as f64 / 1000.0,
        Usage::TotalPerReplica {
            per_replica: Some(m),
            ..
        } if matches!(target, Target::AverageValue(_)) => m as f64 / 1000.0,
        Usage::TotalPerReplica { total, .. } => total as f64 / 1000.0,
    };
    (u, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_values_print_as_quantities() {
        let cases = [
            (0, "0"),
            (212_000, "212"),
            (1500, "1500m"),
            (250, "250m"),
            (100_000, "100"),
            (1_000_000, "1k"),
            (12_000_000, "12k"),
            (31_667, "31667m"),
            (-500, "-500m"),
        ];
        for (m, s) in cases {
            assert_eq!(fmt_milli(m).to_string(), s);
        }
    }
}
