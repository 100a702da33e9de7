//! The scaling engine: pure arithmetic from an observation to a decision that explains itself.
//!
//! Nothing here performs I/O, reads a clock, logs or awaits: the caller passes the
//! [`Observation`] and `now`, and gets a [`Decision`]. The algorithm is the Kubernetes HPA's
//! (spec/k8s-contracts.md §4), plus cooldowns and an on-error policy (spec/scaling-policy.md):
//!
//! 1. shortcuts: a target at zero, above max or below min (R4.3–R4.5);
//! 2. one proposal per metric (§4.4, with the pod grouping of §4.5), combined by max with
//!    the failure rules of §4.6 or the policy's `OnError`;
//! 3. stabilization windows (R4.18, or R4.16 without `behavior`);
//! 4. cooldowns per direction;
//! 5. rate policies with the recorded scale events (R4.19–R4.21, or R4.17 without `behavior`);
//! 6. min/max bounds.

use std::fmt;

mod calm;
mod decision;
mod evaluator;
mod normalize;
pub mod observation;
pub mod policy;
mod proposal;
pub mod quantity;
mod stages;
pub mod time;

pub use calm::{Bound, Settle};
pub use decision::{Decision, Direction, Proposal, RateLimit, Reason, Usage, units};
pub use evaluator::Evaluator;
pub use observation::{
    MetricFailure, Observation, PodFacts, PodPhase, PodValues, Reading, ReadyCondition, Requests,
};
pub use policy::{
    Behavior, Confidence, FlapBudget, MetricPolicy, Normalization, OnError, Policy, RatePolicy,
    RatePolicyKind, ReadinessTiming, Resource, ScalingRules, SelectPolicy, Target, Tolerance,
};
pub use quantity::fmt_milli;
pub use time::{Seconds, Time};

/// A replica count. Never negative; `int32` like the Kubernetes API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replicas(pub i32);

impl Replicas {
    /// The count as a plain integer.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
