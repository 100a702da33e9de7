//! The evaluator: per-policy memory and the pipeline from observation to decision.

use super::Replicas;
use super::decision::{Decision, Direction, Proposal, RateLimit, Reason};
use super::normalize::History;
use super::observation::Observation;
use super::policy::{Normalization, OnError, Policy};
use super::proposal::{Context, propose};
use super::time::Time;

/// Evaluates one policy tick after tick, remembering what the HPA remembers: recent
/// recommendations (stabilization) and scale events (rate policies, cooldowns).
#[derive(Clone, Debug)]
pub struct Evaluator {
    policy: Policy,
    history: History,
}

impl Evaluator {
    /// A fresh evaluator with no history.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            history: History::default(),
        }
    }

    /// The policy being evaluated.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (e.g. after an edit), keeping the history as the HPA does.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// How many recommendations are remembered (for tests and diagnostics).
    pub fn recommendation_count(&self) -> usize {
        self.history.recommendation_count()
    }

    /// Records a successful rescale from `from` to `to` at `now`. The caller calls this after
    /// the target accepted the new count, never for a dry run (R4.21).
    pub fn record_scale(&mut self, from: Replicas, to: Replicas, now: Time) {
        let behavior = match &self.policy.normalization {
            Normalization::Behavior(b) => Some(b),
            Normalization::Legacy { .. } => None,
        };
        self.history.record_scale(from, to, behavior, now);
    }

    /// Decides the desired count for `obs` at `now`. Pure apart from the evaluator's own
    /// memory: the recommendation is recorded for later stabilization.
    pub fn evaluate(&mut self, obs: &Observation, now: Time) -> Decision {
        let policy = &self.policy;
        let current = obs.current;
        let (min, max) = (policy.min_replicas, policy.max_replicas);
        let mut reasons = Vec::with_capacity(policy.metrics.len() + 5);
        let mut proposals = Vec::with_capacity(policy.metrics.len());
        self.history.seed(current, now);

        // R4.3–R4.5: no metric is considered, no normalization applies.
        let shortcut = if current.0 == 0 && min.0 != 0 {
            Some((current, Reason::ScalingDisabled))
        } else if current > max {
            Some((max, Reason::AboveMax { max }))
        } else if current < min {
            Some((min, Reason::BelowMin { min }))
        } else {
            None
        };
        if let Some((desired, reason)) = shortcut {
            reasons.push(reason);
            return finish(current, desired, proposals, reasons, policy.dry_run);
        }

        // §4.4 per metric, combined by max (ties: first) with the failure rules of §4.6.
        let cx = Context {
            obs,
            tolerance: policy.tolerance,
            timing: policy.readiness,
            now,
        };
        let mut best: Option<Replicas> = None;
        let mut candidates = 0;
        let mut failures = 0;
        for (i, metric) in policy.metrics.iter().enumerate() {
            let outcome = match obs.metrics.get(i) {
                Some(Ok(reading)) => propose(metric, reading, &cx),
                Some(Err(failure)) => Err(failure.0.clone()),
                None => Err("no reading".to_string()),
            };
            match outcome {
                Ok(c) => {
                    let p = Proposal {
                        metric: metric.name.clone(),
                        replicas: c.replicas,
                        ratio: c.ratio,
                        usage: c.usage,
                        target: metric.target,
                        within_tolerance: c.within_tolerance,
                    };
                    best = Some(best.map_or(c.replicas, |b| b.max(c.replicas)));
                    candidates += 1;
                    reasons.push(Reason::Proposed(p.clone()));
                    proposals.push(p);
                }
                Err(error) => {
                    failures += 1;
                    reasons.push(Reason::MetricFailed {
                        metric: metric.name.clone(),
                        error,
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
        let all_failed = failures > 0 && failures == policy.metrics.len();
        let hold = match (policy.on_error, best) {
            (_, None) => true,
            (OnError::Hold, Some(b)) => failures > 0 && b < current,
            (OnError::Fallback(_) | OnError::Ignore, Some(_)) => false,
        };
        let raw = match best {
            Some(b) if !hold => b,
            _ => {
                // Like the HPA, a held tick records nothing and is not normalized.
                reasons.push(Reason::HeldOnError {
                    all_failed: all_failed || best.is_none(),
                    replicas: current,
                });
                return finish(current, current, proposals, reasons, policy.dry_run);
            }
        };
        if candidates > 1 {
            reasons.push(Reason::Combined { replicas: raw });
        }

        let mut s;
        match &policy.normalization {
            Normalization::Legacy { downscale_window } => {
                s = self.history.stabilize_legacy(raw, *downscale_window, now);
                if s != raw {
                    reasons.push(Reason::Stabilized {
                        direction: Direction::Down,
                        window: *downscale_window,
                        replicas: s,
                    });
                }
                // R4.17: at most max(2 × current, 4) when that is below maxReplicas.
                let limit = Replicas((2 * current.0).max(4));
                if limit < max && s > limit {
                    s = limit;
                    reasons.push(Reason::RateLimited {
                        direction: Direction::Up,
                        limit: RateLimit::Legacy,
                        replicas: s,
                    });
                }
            }
            Normalization::Behavior(b) => {
                s = self.history.stabilize(raw, current, b, now);
                if s != raw {
                    let direction = if raw >= current {
                        Direction::Up
                    } else {
                        Direction::Down
                    };
                    let window = match direction {
                        Direction::Up => b.scale_up.stabilization_window,
                        Direction::Down => b.scale_down.stabilization_window,
                    };
                    reasons.push(Reason::Stabilized {
                        direction,
                        window,
                        replicas: s,
                    });
                }
                if let (Some(direction), Some(last)) =
                    (Direction::of(current, s), self.history.last_scale)
                {
                    let cooldown = match direction {
                        Direction::Up => b.scale_up.cooldown,
                        Direction::Down => b.scale_down.cooldown,
                    };
                    let until = last + cooldown;
                    if now < until {
                        s = current;
                        reasons.push(Reason::CoolingDown {
                            direction,
                            remaining_ms: until.0 - now.0,
                            replicas: s,
                        });
                    }
                }
                match Direction::of(current, s) {
                    Some(Direction::Up) => {
                        let (limit, which) = self.history.scale_up_limit(current, &b.scale_up, now);
                        if limit < max && s > limit {
                            s = limit;
                            reasons.push(Reason::RateLimited {
                                direction: Direction::Up,
                                limit: which,
                                replicas: s,
                            });
                        }
                    }
                    Some(Direction::Down) => {
                        let (limit, which) =
                            self.history.scale_down_limit(current, &b.scale_down, now);
                        if limit > min && s < limit {
                            s = limit;
                            reasons.push(Reason::RateLimited {
                                direction: Direction::Down,
                                limit: which,
                                replicas: s,
                            });
                        }
                    }
                    None => {}
                }
            }
        }
        let desired = s.clamp(min, max);
        reasons.push(Reason::Bounds {
            min,
            max,
            before: s,
            replicas: desired,
        });
        finish(current, desired, proposals, reasons, policy.dry_run)
    }
}

fn finish(
    current: Replicas,
    desired: Replicas,
    proposals: Vec<Proposal>,
    mut reasons: Vec<Reason>,
    dry_run: bool,
) -> Decision {
    if dry_run && desired != current {
        reasons.push(Reason::DryRun);
    }
    Decision {
        current,
        desired,
        proposals,
        reasons,
        apply: desired != current && !dry_run,
    }
}
