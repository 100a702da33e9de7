//! The evaluator: per-policy memory and the pipeline from observation to decision.

use super::Replicas;
use super::calm;
use super::decision::{Decision, Proposal, Reason};
use super::normalize::History;
use super::observation::Observation;
use super::policy::{Behavior, Normalization, Policy};
use super::stages::{self, Bounds, Combined};
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
    ///
    /// The pipeline, one stage each (see `engine/stages.rs` and `engine/calm.rs`): shortcut →
    /// proposals → combine → confidence → stabilize → cooldown → rate-limit → flap budget →
    /// bounds. Every stage that changes the count says why.
    pub fn evaluate(&mut self, obs: &Observation, now: Time) -> Decision {
        let policy = &self.policy;
        let current = obs.current;
        let dry_run = policy.dry_run;
        let mut reasons = Vec::with_capacity(policy.metrics.len() + 5);
        self.history.seed(current, now);

        if let Some((desired, reason)) = stages::shortcut(policy, current) {
            reasons.push(reason);
            return finish(current, desired, Vec::new(), reasons, dry_run);
        }
        let outcomes = stages::proposals(policy, obs, now);
        let combined = stages::combine(policy, current, &outcomes, &mut reasons);
        let proposals: Vec<Proposal> = outcomes.into_iter().filter_map(Result::ok).collect();
        let confidence = match &policy.normalization {
            Normalization::Behavior(b) => b.confidence,
            Normalization::Legacy { .. } => None,
        };
        if let Some(rule) = confidence {
            // Every tick's demands count, held ones included: the sample is of the readings.
            let memory = &mut self.history.calm;
            let keep = calm::readings_needed(rule.level).max(calm::HISTORY);
            memory.record_demands(&proposals, rule.sample_window, keep, now);
        }
        let raw = match combined {
            Combined::Raw(raw) => raw,
            // Like the HPA, a held tick records nothing and is not normalized.
            Combined::Held => return finish(current, current, proposals, reasons, dry_run),
        };
        let bounds = Bounds {
            min: policy.min_replicas,
            max: policy.max_replicas,
        };
        let limited = match &policy.normalization {
            Normalization::Legacy { downscale_window } => {
                let stable = step(
                    &mut reasons,
                    stages::stabilize_legacy(&mut self.history, raw, *downscale_window, now),
                );
                step(
                    &mut reasons,
                    stages::rate_limit_legacy(stable, current, bounds.max),
                )
            }
            Normalization::Behavior(b) => {
                let raw = match b.confidence {
                    Some(rule) => {
                        let (gated, why) = calm::confidence(
                            &self.history.calm,
                            (raw, current),
                            &proposals,
                            &rule,
                            policy.tolerance,
                            now,
                        );
                        reasons.extend(why);
                        gated
                    }
                    None => raw,
                };
                normalize(
                    &mut self.history,
                    &mut reasons,
                    raw,
                    current,
                    b,
                    bounds,
                    now,
                )
            }
        };
        let (desired, reason) = stages::bounds(limited, bounds);
        reasons.push(reason);
        finish(current, desired, proposals, reasons, dry_run)
    }
}

/// With `behavior`: stabilize → cooldown → rate-limit → flap budget.
fn normalize(
    h: &mut History,
    reasons: &mut Vec<Reason>,
    raw: Replicas,
    current: Replicas,
    b: &Behavior,
    bounds: Bounds,
    now: Time,
) -> Replicas {
    let stable = step(reasons, stages::stabilize(h, raw, current, b, now));
    let cooled = step(
        reasons,
        stages::cooldown(stable, current, h.last_scale, b, now),
    );
    let limited = step(
        reasons,
        stages::rate_limit(h, cooled, current, b, bounds, now),
    );
    match &b.max_reversals {
        Some(budget) => step(
            reasons,
            calm::flap_budget(&h.calm, limited, current, budget, now),
        ),
        None => limited,
    }
}

/// Keeps a stage's count and its reason, if it gave one.
fn step(reasons: &mut Vec<Reason>, (replicas, reason): (Replicas, Option<Reason>)) -> Replicas {
    reasons.extend(reason);
    replicas
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
