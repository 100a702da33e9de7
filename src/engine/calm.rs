//! Calm scale-down: the confidence stage (a metric lets the count fall only while its recent demand is lower with confidence) and the flap budget stage.
//!
//! A metric's demand is the unrounded count its proposal implies ([`Proposal::demand`]). The
//! engine keeps each metric's demands of the last `sampleWindowSeconds`; on a tick whose
//! recommendation is lower than the current count, each metric's one-sided upper confidence
//! bound of its mean demand (Student's t) must still imply fewer replicas, or that metric holds
//! the count. Consecutive rate readings are computed over overlapping windows and so are
//! positively autocorrelated; the bound uses the effective sample size
//! `n (1 − ρ) / (1 + ρ)` with the lag-1 autocorrelation ρ, else it would be overconfident.

use std::collections::VecDeque;
use std::sync::Arc;

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::Replicas;
use super::decision::{Direction, Proposal, Reason};
use super::policy::{Confidence, FlapBudget, Tolerance};
use super::time::{Seconds, Time};

/// Fewer readings than this and a metric holds the count: two give one degree of freedom and
/// a bound too wide to mean anything, and a standard deviation of two readings is mostly luck.
pub(super) const MIN_READINGS: usize = 3;

/// The largest lag-1 autocorrelation the correction trusts: beyond it the readings are a
/// trend, not noise around a level, and `n_eff` would collapse to nothing.
const MAX_RHO: f64 = 0.9;

/// One metric's recent demands, oldest first, with when each was read.
type Demands = VecDeque<(Time, f64)>;

/// What the calm stages remember between ticks.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct CalmMemory {
    /// Each metric's recent demands, oldest first.
    demands: Vec<(Arc<str>, Demands)>,
    /// The directions of the recent scale events, oldest first.
    scales: VecDeque<(Time, Direction)>,
}

impl CalmMemory {
    /// Keeps this tick's demands and forgets those older than `window` (and metrics that no
    /// longer proposed anything within it).
    pub fn record_demands(&mut self, proposals: &[Proposal], window: Seconds, now: Time) {
        let cutoff = now - window;
        for p in proposals.iter().filter(|p| p.demand.is_finite()) {
            match self.demands.iter_mut().find(|(m, _)| *m == p.metric) {
                Some((_, q)) => q.push_back((now, p.demand)),
                None => self
                    .demands
                    .push((p.metric.clone(), VecDeque::from([(now, p.demand)]))),
            }
        }
        for (_, q) in &mut self.demands {
            while q.front().is_some_and(|(at, _)| *at <= cutoff) {
                q.pop_front();
            }
        }
        self.demands.retain(|(_, q)| !q.is_empty());
    }

    /// The remembered demands of `metric`, oldest first.
    pub fn demands(&self, metric: &str) -> Vec<f64> {
        self.demands
            .iter()
            .find(|(m, _)| &**m == metric)
            .map(|(_, q)| q.iter().map(|(_, d)| *d).collect())
            .unwrap_or_default()
    }

    /// Remembers the direction of a scale event; events older than `keep` are forgotten.
    pub fn record_scale(&mut self, direction: Direction, keep: Seconds, now: Time) {
        self.scales.push_back((now, direction));
        let cutoff = now - keep;
        while self.scales.front().is_some_and(|(at, _)| *at <= cutoff) {
            self.scales.pop_front();
        }
    }

    /// The direction changes among the scale events of the last `window`, and the direction
    /// of the latest of them.
    fn reversals(&self, window: Seconds, now: Time) -> (u32, Option<Direction>) {
        let cutoff = now - window;
        let recent: Vec<Direction> = self
            .scales
            .iter()
            .filter(|(at, _)| *at > cutoff)
            .map(|(_, d)| *d)
            .collect();
        let changes = recent.windows(2).filter(|w| w[0] != w[1]).count() as u32;
        (changes, recent.last().copied())
    }
}

/// The upper confidence bound of a metric's mean demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The mean demand over the window, in replicas.
    pub mean: f64,
    /// `t × s / √n_eff`: how far above the mean the bound lies.
    pub margin: f64,
    /// The effective number of independent readings.
    pub n_eff: f64,
}

impl Bound {
    /// `mean + margin`.
    pub fn upper(&self) -> f64 {
        self.mean + self.margin
    }
}

/// The one-sided upper bound at `level` of the mean of `xs`, or `None` with fewer than
/// [`MIN_READINGS`] readings.
pub(super) fn upper_bound(xs: &[f64], level: f64) -> Option<Bound> {
    let n = xs.len();
    if n < MIN_READINGS {
        return None;
    }
    let nf = n as f64;
    let mean = xs.iter().sum::<f64>() / nf;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    if ss <= f64::EPSILON * mean.abs().max(1.0) {
        // Identical readings: no spread to be unsure about.
        return Some(Bound {
            mean,
            margin: 0.0,
            n_eff: nf,
        });
    }
    let lag1: f64 = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    // Negative estimates (common in short samples of independent readings) do not earn a
    // larger sample than was taken.
    let rho = (lag1 / ss).clamp(0.0, MAX_RHO);
    // At least two effective readings, so the t distribution has a degree of freedom.
    let n_eff = (nf * (1.0 - rho) / (1.0 + rho)).max(2.0);
    let sd = (ss / (nf - 1.0)).sqrt();
    let t = StudentsT::new(0.0, 1.0, n_eff - 1.0)
        .map(|d| d.inverse_cdf(level))
        .unwrap_or(f64::INFINITY);
    Some(Bound {
        mean,
        margin: t * sd / n_eff.sqrt(),
        n_eff,
    })
}

/// `ceil(x)` as a count, at least 0 (the bound of a demand, like a proposal, is rounded up).
fn ceil_count(x: f64) -> Replicas {
    let c = x.ceil();
    if c.is_nan() || c <= 0.0 {
        Replicas(0)
    } else {
        Replicas(c.min(f64::from(i32::MAX)) as i32)
    }
}

/// The confidence stage: on a scale-down, the lowest count each metric allows is the rounded
/// bound of its demand, if that is below `current` and outside the tolerance, else `current`.
/// The result is the highest of `raw` and those counts; each metric says why.
pub(super) fn confidence(
    memory: &CalmMemory,
    raw: Replicas,
    current: Replicas,
    proposals: &[Proposal],
    rule: &Confidence,
    tolerance: Tolerance,
) -> (Replicas, Vec<Reason>) {
    if raw >= current {
        return (raw, Vec::new());
    }
    let mut allowed = raw;
    let mut reasons = Vec::with_capacity(proposals.len());
    for p in proposals {
        let demands = memory.demands(&p.metric);
        let Some(bound) = upper_bound(&demands, rule.level) else {
            allowed = allowed.max(current);
            reasons.push(Reason::TooFewReadings {
                metric: p.metric.clone(),
                readings: demands.len(),
                needed: MIN_READINGS,
                replicas: current,
            });
            continue;
        };
        let k = ceil_count(bound.upper());
        let lower = k < current && !tolerance.within(f64::from(k.0) / f64::from(current.0));
        let count = if lower { k.max(p.replicas) } else { current };
        allowed = allowed.max(count);
        reasons.push(Reason::Confident {
            metric: p.metric.clone(),
            target: p.target,
            bound,
            level: rule.level,
            lower,
            replicas: count,
        });
    }
    (allowed, reasons)
}

/// The flap budget stage: a change in the direction opposite to the latest scale event of the
/// window holds once the window already saw `count` direction changes.
pub(super) fn flap_budget(
    memory: &CalmMemory,
    s: Replicas,
    current: Replicas,
    budget: &FlapBudget,
    now: Time,
) -> (Replicas, Option<Reason>) {
    let Some(direction) = Direction::of(current, s) else {
        return (s, None);
    };
    let (changes, last) = memory.reversals(budget.window, now);
    if last.is_none_or(|d| d == direction) || changes < budget.count {
        return (s, None);
    }
    let reason = Reason::FlapBudget {
        direction,
        count: budget.count,
        window: budget.window,
        replicas: current,
    };
    (current, Some(reason))
}

#[cfg(test)]
#[path = "calm_tests.rs"]
mod tests;
