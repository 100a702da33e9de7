//! Scale targets: what a policy scales (a Kubernetes scale subresource, a local process pool).

use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::{PodPhase, Replicas, Requests};

pub mod fake;
pub mod kube_pods;
pub mod kube_scale;
pub mod process_pool;

pub use fake::FakeTarget;
pub use kube_pods::PodCache;
pub use kube_scale::KubeScale;
pub use process_pool::{PoolConfig, ProcessPool};

/// A ready replica that serves on a local address: what a target that runs its replicas itself
/// (the process pool) publishes, and what a load balancer in front of it subscribes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable identity, e.g. the pool member's name (for metrics and hashing).
    pub id: String,
    /// Where it listens, on loopback.
    pub addr: std::net::SocketAddr,
}

/// Something with a replica count that can be read and set.
pub trait ScaleTarget: Send + Sync {
    /// A short name for logs and explanations (`ProcessPool/demo`, `Deployment/shop/web`).
    fn name(&self) -> &str;

    /// The target's replica counts and its pods, as they are now.
    fn status(&self) -> BoxFuture<'_, Result<TargetStatus, TargetError>>;

    /// Asks for `replicas`; returns once the request is accepted (not once pods are ready).
    fn scale_to(&self, replicas: Replicas) -> BoxFuture<'_, Result<(), TargetError>>;
}

/// What a target reports about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetStatus {
    /// The count asked for (`spec.replicas`).
    pub desired: Replicas,
    /// Members that exist and are not being removed (`status.replicas`).
    pub running: Replicas,
    /// Members that pass their readiness check.
    pub ready: Replicas,
    /// One entry per member.
    pub pods: Vec<PodStatus>,
}

/// One member of a target (a pod, or a process of a pool).
#[derive(Clone, Debug, PartialEq)]
pub struct PodStatus {
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: PodPhase,
    /// Whether it is ready now.
    pub ready: bool,
    /// How long ago it started.
    pub age: Duration,
    /// How long ago its readiness last changed.
    pub ready_changed: Duration,
    /// Where it serves (base URL), when known.
    pub endpoint: Option<String>,
    /// Its process id, for a local process.
    pub pid: Option<u32>,
    /// Being deleted (a pod with a deletion timestamp): ignored by the engine.
    pub deleting: bool,
    /// Whether its start time is known (`age` counts from it); a pod without one is unready
    /// for CPU.
    pub started: bool,
    /// Its requests, when the target knows them (pods); `None`: the loop's assumed requests.
    pub requests: Option<Requests>,
}

/// Why a target could not be read or scaled.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A member process could not be started.
    #[error("{target}: cannot start member {member}: {source}")]
    Spawn {
        /// The target's name.
        target: String,
        /// The member's name.
        member: String,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The requested count is outside what the target allows.
    #[error("{target}: cannot scale to {requested}: {why}")]
    Rejected {
        /// The target's name.
        target: String,
        /// The count asked for.
        requested: Replicas,
        /// Why it was refused.
        why: String,
    },
    /// The target (or its kind) does not exist.
    #[error("{target} not found: {why}")]
    NotFound {
        /// The target's name.
        target: String,
        /// What the server said.
        why: String,
    },
    /// Someone else changed the target between the read and the write.
    #[error("{target}: conflicting write: {why}")]
    Conflict {
        /// The target's name.
        target: String,
        /// What changed.
        why: String,
    },
    /// The target reports no usable pod selector.
    #[error("{target}: invalid selector: {why}")]
    InvalidSelector {
        /// The target's name.
        target: String,
        /// Why.
        why: String,
    },
    /// The target does not answer (API server down, pool shut down).
    #[error("{target} is unavailable: {why}")]
    Unavailable {
        /// The target's name.
        target: String,
        /// What failed.
        why: String,
    },
}
