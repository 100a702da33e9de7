//! Normalization state and arithmetic: recommendation history for stabilization (R4.16, R4.18)
//! and scale events for rate policies (R4.19–R4.21).

use super::Replicas;
use super::calm::CalmMemory;
use super::decision::{Direction, RateLimit};
use super::policy::{Behavior, RatePolicyKind, ScalingRules, SelectPolicy};
use super::time::{Seconds, Time};

/// A raw recommendation and when it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recommendation {
    replicas: Replicas,
    at: Time,
}

/// A successful rescale: the absolute change and when it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScaleEvent {
    change: i32,
    at: Time,
    outdated: bool,
}

/// What an evaluator remembers between ticks.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct History {
    recommendations: Vec<Recommendation>,
    up_events: Vec<ScaleEvent>,
    down_events: Vec<ScaleEvent>,
    /// The last scale event in either direction (for cooldowns).
    pub last_scale: Option<Time>,
    /// Recent demands and scale directions (confidence and flap budget).
    pub calm: CalmMemory,
}

impl History {
    /// The HPA seeds the history with the current count the first time it sees a target.
    pub fn seed(&mut self, current: Replicas, now: Time) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Number of remembered recommendations.
    pub fn recommendation_count(&self) -> usize {
        self.recommendations.len()
    }

    /// Stores `rec`, replacing the entry at `old` if one had expired.
    fn store(&mut self, old: Option<usize>, replicas: Replicas, now: Time) {
        let rec = Recommendation { replicas, at: now };
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    /// R4.18: bring `current` within [min of recent up-window recs, max of recent down-window
    /// recs], each including `desired`; record the raw `desired`.
    pub fn stabilize(
        &mut self,
        desired: Replicas,
        current: Replicas,
        behavior: &Behavior,
        now: Time,
    ) -> Replicas {
        let up_cutoff = now - behavior.scale_up.stabilization_window;
        let down_cutoff = now - behavior.scale_down.stabilization_window;
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, rec) in self.recommendations.iter().enumerate() {
            if rec.at > up_cutoff {
                up = up.min(rec.replicas);
            }
            if rec.at > down_cutoff {
                down = down.max(rec.replicas);
            }
            if rec.at < up_cutoff && rec.at < down_cutoff {
                old = Some(i);
            }
        }
        let mut s = current;
        if s < up {
            s = up;
        }
        if s > down {
            s = down;
        }
        self.store(old, desired, now);
        s
    }

    /// R4.16 (no `behavior`): the max of `desired` and the recommendations not older than the
    /// downscale window; record the raw `desired`.
    pub fn stabilize_legacy(&mut self, desired: Replicas, window: Seconds, now: Time) -> Replicas {
        let cutoff = now - window;
        let mut max = desired;
        let mut old = None;
        for (i, rec) in self.recommendations.iter().enumerate() {
            if rec.at < cutoff {
                old = Some(i);
            } else if rec.replicas > max {
                max = rec.replicas;
            }
        }
        self.store(old, desired, now);
        max
    }

    /// R4.21: remember a successful rescale (events only when `behavior` is set; outdated
    /// entries are recycled).
    pub fn record_scale(
        &mut self,
        from: Replicas,
        to: Replicas,
        behavior: Option<&Behavior>,
        now: Time,
    ) {
        if from == to {
            return;
        }
        self.last_scale = Some(now);
        let Some(b) = behavior else { return };
        if let Some(budget) = b.max_reversals {
            let direction = if to > from {
                Direction::Up
            } else {
                Direction::Down
            };
            self.calm.record_scale(direction, budget.window, now);
        }
        let (events, rules) = if to > from {
            (&mut self.up_events, &b.scale_up)
        } else {
            (&mut self.down_events, &b.scale_down)
        };
        let cutoff = now - rules.longest_period();
        for e in events.iter_mut() {
            if e.at < cutoff {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change: (to.0 - from.0).abs(),
            at: now,
            outdated: false,
        };
        match events.iter_mut().find(|e| e.outdated) {
            Some(slot) => *slot = event,
            None => events.push(event),
        }
    }

    fn change_in(events: &[ScaleEvent], period: Seconds, now: Time) -> i32 {
        let cutoff = now - period;
        events
            .iter()
            .filter(|e| e.at > cutoff)
            .map(|e| e.change)
            .sum()
    }

    /// R4.19: the highest count the scale-up policies allow now, and the policy that set it.
    pub fn scale_up_limit(
        &self,
        current: Replicas,
        rules: &ScalingRules,
        now: Time,
    ) -> (Replicas, RateLimit) {
        self.limit(current, rules, now, true)
    }

    /// R4.20: the lowest count the scale-down policies allow now, and the policy that set it.
    pub fn scale_down_limit(
        &self,
        current: Replicas,
        rules: &ScalingRules,
        now: Time,
    ) -> (Replicas, RateLimit) {
        self.limit(current, rules, now, false)
    }

    fn limit(
        &self,
        current: Replicas,
        rules: &ScalingRules,
        now: Time,
        up: bool,
    ) -> (Replicas, RateLimit) {
        if rules.select == SelectPolicy::Disabled {
            return (current, RateLimit::Disabled);
        }
        // Up: Max picks the largest proposal. Down: Max picks the smallest (the biggest change).
        let prefer_larger = (rules.select == SelectPolicy::Max) == up;
        let mut best: Option<(i32, RateLimit)> = None;
        for p in &rules.policies {
            let added = Self::change_in(&self.up_events, p.period, now);
            let removed = Self::change_in(&self.down_events, p.period, now);
            let start = current.0 - added + removed;
            // Float arithmetic as in Go, so that e.g. 10 × 1.1 rounds up to 12 exactly as the HPA does.
            let proposed = match (p.kind, up) {
                (RatePolicyKind::Pods, true) => start.saturating_add(p.value),
                (RatePolicyKind::Pods, false) => start - p.value,
                (RatePolicyKind::Percent, true) => {
                    let x = (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil();
                    x.min(f64::from(i32::MAX)) as i32
                }
                (RatePolicyKind::Percent, false) => {
                    (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                }
            };
            let which = RateLimit::Policy {
                kind: p.kind,
                value: p.value,
                period: p.period,
            };
            best = match best {
                None => Some((proposed, which)),
                Some((b, _))
                    if (prefer_larger && proposed > b) || (!prefer_larger && proposed < b) =>
                {
                    Some((proposed, which))
                }
                keep => keep,
            };
        }
        match best {
            // No policies: nothing limits this direction.
            None => (Replicas(if up { i32::MAX } else { 0 }), RateLimit::Disabled),
            Some((limit, which)) => {
                let limit = if up {
                    limit.max(current.0)
                } else {
                    limit.min(current.0)
                };
                (Replicas(limit.max(0)), which)
            }
        }
    }
}
