//! The stages of the pipeline, one function each, in the order [`super::Evaluator::evaluate`]
//! runs them: shortcut → proposals → combine → stabilize → cooldown → rate-limit → bounds.
//!
//! Each stage takes the count the previous one produced and returns the count it allows, with
//! the [`Reason`] that explains a change; stages that need memory take the [`History`].

use super::Replicas;
use super::decision::{Direction, Proposal, RateLimit, Reason};
use super::normalize::History;
use super::observation::Observation;
use super::policy::{Behavior, OnError, Policy};
use super::proposal::{Context, propose};
use super::time::{Seconds, Time};

/// R4.3–R4.5: a target at zero (with `minReplicas > 0`), above max or below min is moved
/// without considering any metric.
pub(super) fn shortcut(policy: &Policy, current: Replicas) -> Option<(Replicas, Reason)> {
    let (min, max) = (policy.min_replicas, policy.max_replicas);
    if current.0 == 0 && min.0 != 0 {
        Some((current, Reason::ScalingDisabled))
    } else if current > max {
        Some((max, Reason::AboveMax { max }))
    } else if current < min {
        Some((min, Reason::BelowMin { min }))
    } else {
        None
    }
}

/// What one metric contributed: a proposal, or the error that stopped it.
pub(super) type Outcome = Result<Proposal, String>;

/// §4.4 per metric: one outcome per configured metric, in policy order.
pub(super) fn proposals(policy: &Policy, obs: &Observation, now: Time) -> Vec<Outcome> {
    let cx = Context {
        obs,
        tolerance: policy.tolerance,
        timing: policy.readiness,
        now,
    };
    policy
        .metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let computed = match obs.metrics.get(i) {
                Some(Ok(reading)) => propose(metric, reading, &cx)?,
                Some(Err(failure)) => return Err(failure.0.clone()),
                None => return Err("no reading".to_string()),
            };
            Ok(Proposal {
                metric: metric.name.clone(),
                replicas: computed.replicas,
                ratio: computed.ratio,
                usage: computed.usage,
                target: metric.target,
                within_tolerance: computed.within_tolerance,
                demand: computed.demand,
            })
        })
        .collect()
}

/// The result of combining the proposals.
#[derive(Debug, PartialEq)]
pub(super) enum Combined {
    /// The raw recommendation: the largest proposal (or fallback).
    Raw(Replicas),
    /// Failures hold the count; nothing is recorded or normalized this tick.
    Held,
}

/// R4.13–R4.14: the max of the proposals (ties: first), with failed metrics treated as the
/// policy's [`OnError`] says. Pushes a reason per outcome, then `Combined` or `HeldOnError`.
pub(super) fn combine(
    policy: &Policy,
    current: Replicas,
    outcomes: &[Outcome],
    reasons: &mut Vec<Reason>,
) -> Combined {
    let mut best: Option<Replicas> = None;
    let mut candidates = 0;
    let mut failures = 0;
    for (metric, outcome) in policy.metrics.iter().zip(outcomes) {
        match outcome {
            Ok(p) => {
                best = Some(best.map_or(p.replicas, |b| b.max(p.replicas)));
                candidates += 1;
                reasons.push(Reason::Proposed(p.clone()));
            }
            Err(error) => {
                failures += 1;
                reasons.push(Reason::MetricFailed {
                    metric: metric.name.clone(),
                    error: error.clone(),
                });
                if let OnError::Fallback(n) = policy.on_error {
                    reasons.push(Reason::Fallback {
                        metric: metric.name.clone(),
                        replicas: n,
                    });
                    best = Some(best.map_or(n, |b| b.max(n)));
                    candidates += 1;
                }
            }
        }
    }
    let hold = match (policy.on_error, best) {
        (_, None) => true,
        (OnError::Hold, Some(b)) => failures > 0 && b < current,
        (OnError::Fallback(_) | OnError::Ignore, Some(_)) => false,
    };
    match best {
        Some(raw) if !hold => {
            if candidates > 1 {
                reasons.push(Reason::Combined { replicas: raw });
            }
            Combined::Raw(raw)
        }
        _ => {
            let all_failed = failures > 0 && failures == policy.metrics.len();
            reasons.push(Reason::HeldOnError {
                all_failed: all_failed || best.is_none(),
                replicas: current,
            });
            Combined::Held
        }
    }
}

/// R4.18: the stabilization windows of `behavior` applied to the raw recommendation (which
/// the history records).
pub(super) fn stabilize(
    history: &mut History,
    raw: Replicas,
    current: Replicas,
    behavior: &Behavior,
    now: Time,
) -> (Replicas, Option<Reason>) {
    let s = history.stabilize(raw, current, behavior, now);
    if s == raw {
        return (s, None);
    }
    let direction = if raw >= current {
        Direction::Up
    } else {
        Direction::Down
    };
    let window = match direction {
        Direction::Up => behavior.scale_up.stabilization_window,
        Direction::Down => behavior.scale_down.stabilization_window,
    };
    let reason = Reason::Stabilized {
        direction,
        window,
        replicas: s,
    };
    (s, Some(reason))
}

/// R4.16 (no `behavior`): the downscale window over the raw recommendation.
pub(super) fn stabilize_legacy(
    history: &mut History,
    raw: Replicas,
    window: Seconds,
    now: Time,
) -> (Replicas, Option<Reason>) {
    let s = history.stabilize_legacy(raw, window, now);
    let reason = (s != raw).then_some(Reason::Stabilized {
        direction: Direction::Down,
        window,
        replicas: s,
    });
    (s, reason)
}

/// A cooldown holds the count while the last scale event is more recent than the cooldown of
/// the direction `s` would move in.
pub(super) fn cooldown(
    s: Replicas,
    current: Replicas,
    last_scale: Option<Time>,
    behavior: &Behavior,
    now: Time,
) -> (Replicas, Option<Reason>) {
    let (Some(direction), Some(last)) = (Direction::of(current, s), last_scale) else {
        return (s, None);
    };
    let cooldown = match direction {
        Direction::Up => behavior.scale_up.cooldown,
        Direction::Down => behavior.scale_down.cooldown,
    };
    let until = last + cooldown;
    if now >= until {
        return (s, None);
    }
    let reason = Reason::CoolingDown {
        direction,
        remaining_ms: until.0 - now.0,
        replicas: current,
    };
    (current, Some(reason))
}

/// The bounds a rate stage must not push past: a limit beyond them is left to [`bounds`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    /// `minReplicas`.
    pub min: Replicas,
    /// `maxReplicas`.
    pub max: Replicas,
}

/// R4.19–R4.20: the rate policies of the direction `s` moves in, over the recorded events.
pub(super) fn rate_limit(
    history: &History,
    s: Replicas,
    current: Replicas,
    behavior: &Behavior,
    bounds: Bounds,
    now: Time,
) -> (Replicas, Option<Reason>) {
    let limited = |limit: Replicas, which: RateLimit, direction: Direction| {
        let reason = Reason::RateLimited {
            direction,
            limit: which,
            replicas: limit,
        };
        (limit, Some(reason))
    };
    match Direction::of(current, s) {
        Some(Direction::Up) => {
            let (limit, which) = history.scale_up_limit(current, &behavior.scale_up, now);
            if limit < bounds.max && s > limit {
                return limited(limit, which, Direction::Up);
            }
        }
        Some(Direction::Down) => {
            let (limit, which) = history.scale_down_limit(current, &behavior.scale_down, now);
            if limit > bounds.min && s < limit {
                return limited(limit, which, Direction::Down);
            }
        }
        None => {}
    }
    (s, None)
}

/// R4.17 (no `behavior`): at most `max(2 × current, 4)` when that is below `maxReplicas`.
pub(super) fn rate_limit_legacy(
    s: Replicas,
    current: Replicas,
    max: Replicas,
) -> (Replicas, Option<Reason>) {
    let limit = Replicas((2 * current.0).max(4));
    if limit < max && s > limit {
        let reason = Reason::RateLimited {
            direction: Direction::Up,
            limit: RateLimit::Legacy,
            replicas: limit,
        };
        return (limit, Some(reason));
    }
    (s, None)
}

/// The min/max bounds: always the last numeric step, always explained.
pub(super) fn bounds(s: Replicas, bounds: Bounds) -> (Replicas, Reason) {
    let desired = s.clamp(bounds.min, bounds.max);
    let reason = Reason::Bounds {
        min: bounds.min,
        max: bounds.max,
        before: s,
        replicas: desired,
    };
    (desired, reason)
}

#[cfg(test)]
#[path = "stages_tests.rs"]
mod tests;
