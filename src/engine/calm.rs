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

/// Never fewer readings than this: two give one degree of freedom and a bound too wide to mean
/// anything, and a standard deviation of two readings is mostly luck.
const MIN_READINGS: usize = 3;

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
    /// Keeps this tick's demands and forgets those older than `window`, but never the last
    /// `keep` of a metric: a loop that reads less often than the window needs still gets a
    /// bound (at 15 s ticks, five readings span a minute). A metric with no reading within the
    /// window is forgotten.
    pub fn record_demands(
        &mut self,
        proposals: &[Proposal],
        window: Seconds,
        keep: usize,
        now: Time,
    ) {
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
            while q.len() > keep && q.front().is_some_and(|(at, _)| *at <= cutoff) {
                q.pop_front();
            }
        }
        self.demands
            .retain(|(_, q)| q.back().is_some_and(|(at, _)| *at > cutoff));
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

/// The upper confidence bound of a metric's demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The mean demand over the window, in replicas.
    pub mean: f64,
    /// How far above the mean the bound lies: the larger of `t × s / √n_eff` and the
    /// order statistic's distance from the mean.
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

/// How many independent readings an order-statistic bound at `level` needs: the largest of
/// `m` readings lies below the median with probability `0.5^m`, which must not exceed `1 − level`.
pub(super) fn readings_needed(level: f64) -> usize {
    let needed = ((1.0 - level).ln() / 0.5f64.ln()).ceil();
    (needed as usize).max(MIN_READINGS)
}

/// The one-sided upper bound at `level` of the level of `xs`, or `Err(needed)` when there are
/// too few (effective) readings.
///
/// Two bounds, the larger wins: Student's t on the mean, and the distribution-free bound on the
/// median (the order statistic `x_(k)` with `P(Binomial(m, ½) ≥ k) ≤ 1 − level`). Student's t
/// alone is overconfident on small samples of non-normal noise (three readings of bimodal noise
/// lowered a right-sized count in 12 % of decisions at 95 %); the order statistic is exact for
/// any continuous noise, and the t bound keeps it honest when the noise is skewed.
pub(super) fn upper_bound(xs: &[f64], level: f64) -> Result<Bound, usize> {
    let n = xs.len();
    let needed = readings_needed(level);
    if n < needed {
        return Err(needed);
    }
    let nf = n as f64;
    let mean = xs.iter().sum::<f64>() / nf;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    if ss <= f64::EPSILON * mean.abs().max(1.0) {
        // Identical readings: no spread to be unsure about.
        return Ok(Bound {
            mean,
            margin: 0.0,
            n_eff: nf,
        });
    }
    let lag1: f64 = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    // Negative estimates (common in short samples of independent readings) do not earn a
    // larger sample than was taken.
    let rho = (lag1 / ss).clamp(0.0, MAX_RHO);
    let n_eff = nf * (1.0 - rho) / (1.0 + rho);
    if n_eff < needed as f64 {
        return Err(((needed as f64) * nf / n_eff).ceil() as usize);
    }
    let sd = (ss / (nf - 1.0)).sqrt();
    let t = StudentsT::new(0.0, 1.0, n_eff - 1.0)
        .map(|d| d.inverse_cdf(level))
        .unwrap_or(f64::INFINITY);
    let order = order_statistic(xs, n_eff, level) - mean;
    Ok(Bound {
        mean,
        margin: (t * sd / n_eff.sqrt()).max(order),
        n_eff,
    })
}

/// The distribution-free upper bound of the median: with `m = ⌊n_eff⌋` independent readings,
/// the smallest `k` with `P(Binomial(m, ½) ≥ k) ≤ 1 − level`, at the same rank share of the
/// `n` readings taken (autocorrelated readings are worth fewer independent ones).
fn order_statistic(xs: &[f64], n_eff: f64, level: f64) -> f64 {
    let m = n_eff.floor() as u32;
    // P(X ≥ k) for X ~ Binomial(m, ½), from k = m down while it stays within 1 − level.
    let mut k = m;
    let mut tail = 0.5f64.powi(m as i32);
    let mut term = tail;
    while k > 1 {
        term *= f64::from(k) / f64::from(m - k + 1);
        if tail + term > 1.0 - level {
            break;
        }
        tail += term;
        k -= 1;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let rank = ((f64::from(k) / f64::from(m)) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
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
        let bound = match upper_bound(&demands, rule.level) {
            Ok(bound) => bound,
            Err(needed) => {
                allowed = allowed.max(current);
                reasons.push(Reason::TooFewReadings {
                    metric: p.metric.clone(),
                    readings: demands.len(),
                    needed,
                    replicas: current,
                });
                continue;
            }
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
