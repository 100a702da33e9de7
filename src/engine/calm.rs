//! Calm scale-down: the confidence stage (a metric lets the count fall only while its recent demand is lower with confidence) and the flap budget stage.
//!
//! A metric's demand is the unrounded count its proposal implies ([`Proposal::demand`]). The
//! engine keeps each metric's demands of the last `sampleWindowSeconds`, and at least its last
//! [`HISTORY`]; on a tick whose
//! recommendation is lower than the current count, each metric's one-sided upper confidence
//! bound of its mean demand (Student's t) must still imply fewer replicas, or that metric holds
//! the count. Consecutive rate readings are computed over overlapping windows and so are
//! positively autocorrelated; the bound uses the effective sample size
//! `n (1 − ρ) / (1 + ρ)` with the lag-1 autocorrelation ρ, else it would be overconfident.
//!
//! The spread of single readings is also estimated robustly over a longer history than the
//! sample, the last [`HISTORY`] readings, and the bound never takes a smaller one: five
//! readings at 15 s ticks agree by luck often enough to lower a right-sized count every few
//! minutes. A lower count must also *settle*: a share `level` of single readings must stay
//! within the tolerance at that count (with confidence `level`), else the next noisy readings
//! would scale up again and the scale-down would only have started a flap.

use std::collections::VecDeque;
use std::sync::Arc;

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::Replicas;
use super::decision::{Direction, Proposal, Reason};
use super::policy::{Confidence, FlapBudget, Target, Tolerance};
use super::time::{Seconds, Time};

/// Never fewer readings than this: two give one degree of freedom and a bound too wide to mean
/// anything, and a standard deviation of two readings is mostly luck.
const MIN_READINGS: usize = 3;

/// The largest lag-1 autocorrelation the correction trusts: beyond it the readings are a
/// trend, not noise around a level, and `n_eff` would collapse to nothing.
const MAX_RHO: f64 = 0.9;

/// Readings of a metric kept for its noise estimate, past the sample window: enough for a
/// steady spread of successive differences (at 15 s ticks, seven and a half minutes).
pub(super) const HISTORY: usize = 30;

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
    /// bound (at 15 s ticks, five readings span a minute), and the noise estimate a history.
    /// A metric with no reading within the window is forgotten.
    pub fn record_demands(
        &mut self,
        proposals: &[Proposal],
        window: Seconds,
        keep: usize,
        now: Time,
    ) {
        let cutoff = now - window;
        for p in proposals {
            let Some(kept) = kept_value(p) else { continue };
            match self.demands.iter_mut().find(|(m, _)| *m == p.metric) {
                Some((_, q)) => q.push_back((now, kept)),
                None => self
                    .demands
                    .push((p.metric.clone(), VecDeque::from([(now, kept)]))),
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

    /// How many of the remembered demands of `metric` were read within `window` of `now`.
    pub fn within(&self, metric: &str, window: Seconds, now: Time) -> usize {
        let cutoff = now - window;
        self.demands
            .iter()
            .find(|(m, _)| &**m == metric)
            .map(|(_, q)| q.iter().filter(|(at, _)| *at > cutoff).count())
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

/// What is remembered of a proposal: its demand, except for a `Value` target, whose demand is
/// its ratio times the ready pods: the ratio is kept, so that our own scale events do not look
/// like a change in the metric (a latency of 74 ms is 1.85 replicas of demand at five pods and
/// 0.74 at two).
fn kept_value(p: &Proposal) -> Option<f64> {
    let kept = match p.target {
        Target::Value(_) => p.ratio,
        _ => p.demand,
    };
    kept.is_finite().then_some(kept)
}

/// The factor that turns the kept values of `p`'s metric into demands at today's pods.
fn demand_per_kept(p: &Proposal) -> f64 {
    match p.target {
        Target::Value(_) if p.ratio > 0.0 => p.demand / p.ratio,
        Target::Value(_) => 0.0,
        _ => 1.0,
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
    /// The spread of single readings the margin used: the sample's, or the history's if larger.
    pub sd: f64,
    /// The readings fall with confidence, and `mean` is the level of the latest of them on
    /// the sample's straight-line fit, not their mean.
    pub falling: bool,
}

/// Where single readings around a bound reach, and the count that keeps them in tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settle {
    /// The `level` quantile of single readings at the bound, in replicas.
    pub peak: f64,
    /// The lowest count at which that reading is within the tolerance.
    pub replicas: Replicas,
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

/// The fewest readings a sample needs: with the history's spread, the fewest a standard
/// deviation means anything over; without it, as many as the order statistic needs.
fn sample_size(level: f64, pooled: Option<Spread>) -> usize {
    if pooled.is_some() {
        MIN_READINGS
    } else {
        readings_needed(level)
    }
}

/// The one-sided upper bound at `level` of the level of `xs`, or `Err(needed)` when there are
/// too few (effective) readings.
///
/// Two bounds, the larger wins: Student's t on the mean, and the distribution-free bound on the
/// median (the order statistic `x_(k)` with `P(Binomial(m, ½) ≥ k) ≤ 1 − level`). Student's t
/// alone is overconfident on small samples of non-normal noise (three readings of bimodal noise
/// lowered a right-sized count in 12 % of decisions at 95 %); the order statistic is exact for
/// any continuous noise, and the t bound keeps it honest when the noise is skewed.
///
/// With `pooled`, the relative spread of the metric's history, the spread is never taken below
/// it: that is what made small samples overconfident, so t then serves on as few as three
/// readings, and the order statistic joins once there are as many as it needs.
pub(super) fn upper_bound(xs: &[f64], level: f64, pooled: Option<Spread>) -> Result<Bound, usize> {
    let n = xs.len();
    let needed = readings_needed(level);
    let least = sample_size(level, pooled);
    if n < least {
        return Err(least);
    }
    let nf = n as f64;
    let mean = xs.iter().sum::<f64>() / nf;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    // A few readings can agree by luck: their spread is never taken as smaller than the
    // history's.
    let own = (ss / (nf - 1.0)).sqrt();
    let history = pooled.map_or(0.0, |p| p.relative * mean.abs());
    let sd = own.max(history);
    if sd <= f64::EPSILON * mean.abs().max(1.0) {
        // Identical readings and no noise before them: nothing to be unsure about.
        return Ok(Bound {
            mean,
            margin: 0.0,
            n_eff: nf,
            sd: 0.0,
            falling: false,
        });
    }
    let lag1: f64 = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    // Negative estimates (common in short samples of independent readings) do not earn a
    // larger sample than was taken. Three to nine readings say nothing reliable about their
    // autocorrelation (a level and a drop look like a trend); with the history's spread to
    // lean on, they count as independent.
    let rho = if ss > 0.0 && (pooled.is_none() || n >= HISTORY_MIN) {
        (lag1 / ss).clamp(0.0, MAX_RHO)
    } else {
        0.0
    };
    let mut n_eff = nf * (1.0 - rho) / (1.0 + rho);
    if pooled.is_some() {
        // With the history's spread, t on a few effective readings is honest (its spread is
        // not the sample's luck), down to two: t(1) is wide enough that a trend through the
        // sample (a drop under way) holds, while steady readings with a tiny smooth wobble (a
        // bucketed quantile) still give a bound.
        n_eff = n_eff.max(2.0);
    } else if n_eff < needed as f64 {
        // Without it, only as many as the order statistic needs.
        return Err(((needed as f64) * nf / n_eff).ceil() as usize);
    }
    // The sample's degrees of freedom even when the history's spread won: an estimate from
    // thirty readings is itself noisy, and a few readings must not earn the history's.
    let t = StudentsT::new(0.0, 1.0, n_eff - 1.0)
        .map(|d| d.inverse_cdf(level))
        .unwrap_or(f64::INFINITY);
    let order = if n_eff >= needed as f64 {
        order_statistic(xs, n_eff, level) - mean
    } else {
        0.0
    };
    Ok(Bound {
        mean,
        margin: (t * sd / n_eff.sqrt()).max(order),
        n_eff,
        sd,
        falling: false,
    })
}

/// The one-sided upper bound at `level` of the latest level of a sample that falls with
/// confidence, or `None`.
///
/// A load that falls steadily (a slow evening decline) spreads a sample's readings along a
/// line: around their mean they look like large, strongly autocorrelated noise, and the
/// mean's bound is wide and lags the fall by half a sample. Fitted to a straight line, the
/// same readings leave small residuals, and the line's value at the latest reading is the
/// level now. Its standard error, `s √(f (1/n + (n − 1 − ī)² / Sxx))` with the residuals'
/// autocorrelation inflating the variance by `f = (1 + ρ)/(1 − ρ)`, is larger than the mean's,
/// so the line serves only when its slope is below zero with confidence `level` (a noisy
/// level rarely passes that test) and the lower of the two bounds wins. The spread is never
/// below the history's, as for the mean.
pub(super) fn falling_bound(xs: &[f64], level: f64, pooled: Spread) -> Option<Bound> {
    let n = xs.len();
    if n < HISTORY_MIN {
        return None;
    }
    let nf = n as f64;
    let centre = (nf - 1.0) / 2.0;
    let mean = xs.iter().sum::<f64>() / nf;
    let sxx: f64 = (0..n).map(|i| (i as f64 - centre).powi(2)).sum();
    let sxy: f64 = xs
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64 - centre) * (x - mean))
        .sum();
    let slope = sxy / sxx;
    let residuals: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| x - mean - slope * (i as f64 - centre))
        .collect();
    let ss: f64 = residuals.iter().map(|r| r * r).sum();
    let lag1: f64 = residuals.windows(2).map(|w| w[0] * w[1]).sum();
    let rho = if ss > 0.0 {
        (lag1 / ss).clamp(0.0, MAX_RHO)
    } else {
        0.0
    };
    let inflation = (1.0 + rho) / (1.0 - rho);
    // Two parameters fitted: at least one degree of freedom left.
    let n_eff = (nf / inflation).max(3.0);
    let sd = (ss / (nf - 2.0)).sqrt().max(pooled.relative * mean.abs());
    let t_at = |p: f64| {
        StudentsT::new(0.0, 1.0, n_eff - 2.0)
            .map(|d| d.inverse_cdf(p))
            .ok()
    };
    let t = t_at(level)?;
    let slope_se = sd * (inflation / sxx).sqrt();
    // Beyond doubt: a tenth of the error. A noisy level is tested on every tick, and a chance
    // slope that passed would lower a right-sized count.
    let sure = t_at(1.0 - (1.0 - level) / FALL_DOUBT)?;
    if sd <= 0.0 || slope >= -sure * slope_se {
        return None;
    }
    let last = nf - 1.0 - centre;
    let latest = mean + slope * last;
    let se = sd * (inflation * (1.0 / nf + last * last / sxx)).sqrt();
    Some(Bound {
        mean: latest,
        margin: t * se,
        n_eff,
        sd,
        falling: true,
    })
}

/// How much less error than the bound's the slope test of [`falling_bound`] allows.
const FALL_DOUBT: f64 = 10.0;

/// The lower of the mean's bound and, when the sample falls with confidence and `lines` allows
/// it, its line's.
fn sample_bound(xs: &[f64], level: f64, pooled: Spread, lines: bool) -> Result<Bound, usize> {
    let flat = upper_bound(xs, level, Some(pooled))?;
    Ok(
        match lines.then(|| falling_bound(xs, level, pooled)).flatten() {
            Some(line) if line.upper() < flat.upper() => line,
            _ => flat,
        },
    )
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

/// The relative noise of a metric's single readings (their standard deviation over their
/// level), from its whole history, which holds more readings than one sample.
///
/// From successive differences of the logs, so that a level shift (a real drop) is one large
/// difference among many and moves the estimate little; differences beyond four times their
/// upper quartile are such shifts and are left out, the rest give a root mean square. Overlapping rate windows smooth successive readings
/// and make this an underestimate; the sample's own spread, which the bound also weighs,
/// covers them. `None` with fewer than [`HISTORY_MIN`] readings.
pub(super) fn history_noise(history: &[f64]) -> Option<Spread> {
    if history.len() < HISTORY_MIN {
        return None;
    }
    // Idle readings (zero demand) have no relative noise; the sample's own spread serves.
    let steps: Vec<f64> = history
        .windows(2)
        .filter(|w| w[0] > 0.0 && w[1] > 0.0)
        .map(|w| (w[1].ln() - w[0].ln()).abs())
        .collect();
    if steps.is_empty() {
        return Some(Spread { relative: 0.0 });
    }
    // The upper quartile, not the median: noise that jumps between two levels (bimodal) has
    // many small and many large differences, and its large ones are noise, not shifts.
    let cutoff = 4.0 * upper_quartile(steps.clone());
    let kept: Vec<f64> = steps.into_iter().filter(|d| *d <= cutoff).collect();
    let mean_square = kept.iter().map(|d| d * d).sum::<f64>() / kept.len().max(1) as f64;
    // Var(x_{i+1} − x_i) = 2σ² for independent readings.
    Some(Spread {
        relative: (mean_square / 2.0).sqrt(),
    })
}

/// The relative spread of a metric's single readings, from its history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Spread {
    /// Standard deviation over level.
    pub relative: f64,
}

/// Fewer readings than this give no history noise, and no scale-down.
const HISTORY_MIN: usize = 10;

/// The upper quartile of `xs` (not empty), the nearest rank.
fn upper_quartile(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let rank = (0.75 * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// Where a count settles: with confidence `level`, a share `level` of single readings stay
/// below `peak`, the bound of the mean plus the `level` quantile of the readings' spread (a
/// one-sided tolerance bound, the spread taken as known from the history); `peak` must be
/// within the tolerance at the count.
pub(super) fn settle(bound: &Bound, level: f64, tolerance: Tolerance) -> Settle {
    let z = Normal::new(0.0, 1.0)
        .map(|d| d.inverse_cdf(level))
        .unwrap_or(f64::INFINITY);
    let peak = bound.upper() + z * bound.sd;
    Settle {
        peak,
        replicas: ceil_count(peak / (1.0 + tolerance.up)),
    }
}

/// The confidence stage: on a scale-down, the lowest count each metric allows is the rounded
/// bound of its demand, raised to where its noise settles, if that is below `current` and
/// outside the tolerance, else `current`. The result is the highest of `raw` and those counts;
/// each metric says why.
pub(super) fn confidence(
    memory: &CalmMemory,
    (raw, current): (Replicas, Replicas),
    proposals: &[Proposal],
    rule: &Confidence,
    tolerance: Tolerance,
    now: Time,
) -> (Replicas, Vec<Reason>) {
    if raw >= current {
        return (raw, Vec::new());
    }
    let mut allowed = raw;
    let mut reasons = Vec::with_capacity(proposals.len());
    for p in proposals {
        let per_kept = demand_per_kept(p);
        let history: Vec<f64> = memory
            .demands(&p.metric)
            .into_iter()
            .map(|kept| kept * per_kept)
            .collect();
        let in_window = memory.within(&p.metric, rule.sample_window, now);
        let weighed = match weigh(&history, in_window, rule.level, tolerance) {
            Ok(weighed) => weighed,
            Err((readings, needed)) => {
                allowed = allowed.max(current);
                reasons.push(Reason::TooFewReadings {
                    metric: p.metric.clone(),
                    readings,
                    needed,
                    replicas: current,
                });
                continue;
            }
        };
        let (bound, settle, k) = weighed;
        let lower = k < current && !tolerance.within(f64::from(k.0) / f64::from(current.0));
        let count = if lower { k.max(p.replicas) } else { current };
        allowed = allowed.max(count);
        reasons.push(Reason::Confident {
            metric: p.metric.clone(),
            target: p.target,
            bound,
            settle: (settle.replicas > ceil_count(bound.upper())).then_some(settle),
            level: rule.level,
            lower,
            replicas: count,
        });
    }
    (allowed, reasons)
}

/// The lowest count a metric's readings allow, with the bound and settle behind it.
///
/// Two samples are weighed: the sample window's readings (a real drop shows there first) and,
/// when it holds more, the whole history (once a drop is minutes old, its many readings pin
/// the new level closer than a short sample can). Each is tested at half the error
/// `1 − level`, so that looking twice is no more likely to lower a right-sized count.
fn weigh(
    history: &[f64],
    in_window: usize,
    level: f64,
    tolerance: Tolerance,
) -> Result<(Bound, Settle, Replicas), (usize, usize)> {
    let noise = history_noise(history).ok_or((history.len(), HISTORY_MIN))?;
    // The window's readings, never fewer than a sample needs (`within` counts the history's).
    let sample = in_window
        .max(sample_size(level, Some(noise)))
        .min(history.len());
    let split = if history.len() > sample {
        1.0 - (1.0 - level) / 2.0
    } else {
        level
    };
    // A line leans on the history's spread more than a mean does (its residuals say little
    // about a handful of readings): only once the history is whole, else a spread that was
    // low by chance over its first readings lets a chance slope lower a right-sized count.
    let lines = history.len() >= HISTORY;
    let judge = |bound: Bound| {
        let settle = settle(&bound, split, tolerance);
        let k = ceil_count(bound.upper()).max(settle.replicas);
        (bound, settle, k)
    };
    let short = sample_bound(&history[history.len() - sample..], split, noise, lines)
        .map(judge)
        .map_err(|needed| (sample, needed));
    if history.len() <= sample {
        return short;
    }
    let long = sample_bound(history, split, noise, lines).map(judge).ok();
    match (short, long) {
        (Ok(s), Some(l)) if l.2 < s.2 => Ok(l),
        (Ok(s), _) => Ok(s),
        (Err(_), Some(l)) => Ok(l),
        (Err(e), None) => Err(e),
    }
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
