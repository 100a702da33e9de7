//! A scale target in memory: records every scale call and can be told to fail.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{PodStatus, ScaleTarget, TargetError, TargetStatus};
use crate::engine::{PodPhase, Replicas};

/// An in-memory target whose members become ready at once; members of `Kind/name` are
/// called `name-0`, `name-1`, ….
#[derive(Debug)]
pub struct FakeTarget {
    name: String,
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    replicas: Replicas,
    calls: Vec<Replicas>,
    failing: Option<String>,
    /// Names for the first members, e.g. the endpoints a scrape source reads them by.
    names: Vec<String>,
}

impl FakeTarget {
    /// A target named `name` with `replicas` ready members.
    pub fn new(name: &str, replicas: Replicas) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(FakeState {
                replicas,
                ..FakeState::default()
            }),
        }
    }

    /// The same target with its first members named `names` (the rest keep `name-i`), so a
    /// source that keys its per-pod values by endpoint lines up with the pod list.
    pub fn with_pod_names(self, names: Vec<String>) -> Self {
        self.state.lock().expect("fake target poisoned").names = names;
        self
    }

    /// Every count `scale_to` was called with, in order.
    pub fn calls(&self) -> Vec<Replicas> {
        self.state
            .lock()
            .expect("fake target poisoned")
            .calls
            .clone()
    }

    /// Makes every call fail with `why` (or succeed again with `None`).
    pub fn set_failing(&self, why: Option<&str>) {
        self.state.lock().expect("fake target poisoned").failing = why.map(str::to_string);
    }

    /// Changes the count behind the caller's back (someone else scaled it).
    pub fn set_replicas(&self, replicas: Replicas) {
        self.state.lock().expect("fake target poisoned").replicas = replicas;
    }

    fn check(&self, state: &FakeState) -> Result<(), TargetError> {
        match &state.failing {
            Some(why) => Err(TargetError::Unavailable {
                target: self.name.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl ScaleTarget for FakeTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> BoxFuture<'_, Result<TargetStatus, TargetError>> {
        Box::pin(async move {
            let state = self.state.lock().expect("fake target poisoned");
            self.check(&state)?;
            let pods = (0..state.replicas.get())
                .map(|i| PodStatus {
                    name: state.names.get(i as usize).cloned().unwrap_or_else(|| {
                        format!("{}-{i}", self.name.rsplit('/').next().unwrap_or(&self.name))
                    }),
                    phase: PodPhase::Running,
                    ready: true,
                    age: Duration::from_secs(3600),
                    ready_changed: Duration::from_secs(3600),
                    endpoint: None,
                    pid: None,
                    deleting: false,
                    started: true,
                    requests: None,
                })
                .collect();
            Ok(TargetStatus {
                desired: state.replicas,
                running: state.replicas,
                ready: state.replicas,
                pods,
            })
        })
    }

    fn scale_to(&self, replicas: Replicas) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let mut state = self.state.lock().expect("fake target poisoned");
            self.check(&state)?;
            state.calls.push(replicas);
            state.replicas = replicas;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_calls_and_fails_on_demand() {
        let t = FakeTarget::new("web", Replicas(2));
        assert_eq!(t.status().await.unwrap().ready, Replicas(2));
        t.scale_to(Replicas(5)).await.unwrap();
        assert_eq!(t.status().await.unwrap().pods.len(), 5);
        let named = FakeTarget::new("web", Replicas(3)).with_pod_names(vec!["a:1".into()]);
        let names: Vec<String> = named
            .status()
            .await
            .unwrap()
            .pods
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a:1", "web-1", "web-2"]);
        t.set_failing(Some("api down"));
        assert!(t.scale_to(Replicas(1)).await.is_err());
        assert!(t.status().await.is_err());
        assert_eq!(t.calls(), vec![Replicas(5)]);
    }
}
