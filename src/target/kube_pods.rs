//! The pods behind Kubernetes scale targets: one watch-backed cache per namespace and selector,
//! shared by every policy on it, and the conversion of a `Pod` into what the engine needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use super::PodStatus;
use crate::clock::Clock;
use crate::engine::{PodPhase, Requests};
use crate::metric::Quantity;

/// Watches of pods, keyed by namespace and label selector. A watch lives while some target
/// holds it: the last [`PodWatch`] dropped stops its reflector.
#[derive(Clone)]
pub struct PodCache {
    client: Client,
    watches: Arc<Mutex<WatchMap>>,
}

/// Live watches by (namespace, selector); a dead entry is replaced on next use.
type WatchMap = HashMap<(String, String), Weak<PodWatch>>;

impl std::fmt::Debug for PodCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.watches.lock().map(|w| w.len()).unwrap_or(0);
        f.debug_struct("PodCache").field("watches", &n).finish()
    }
}

/// One reflector over the pods of a namespace that match a selector.
pub struct PodWatch {
    store: reflector::Store<Pod>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    /// The pods as last seen (empty until the first list has arrived: see [`Self::ready`]).
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.store.state()
    }

    /// Waits up to `limit` for the first list.
    pub async fn ready(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.store.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl PodCache {
    /// A cache that watches through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            watches: Arc::default(),
        }
    }

    /// The watch for `namespace` and `selector`, started on first use.
    pub fn watch(&self, namespace: &str, selector: &str) -> Arc<PodWatch> {
        let key = (namespace.to_string(), selector.to_string());
        let mut watches = self.watches.lock().expect("pod cache lock");
        if let Some(w) = watches.get(&key).and_then(Weak::upgrade) {
            return w;
        }
        watches.retain(|_, w| w.strong_count() > 0);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().labels(selector).any_semantic();
        let stream = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    tracing::warn!(namespace = %ns, "pod watch: {e}");
                }
            }
        });
        let w = Arc::new(PodWatch { store, task });
        watches.insert(key, Arc::downgrade(&w));
        w
    }

    /// How many watches are running (one per namespace and selector in use).
    pub fn len(&self) -> usize {
        let watches = self.watches.lock().expect("pod cache lock");
        watches.values().filter(|w| w.strong_count() > 0).count()
    }

    /// True when no watch runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pod as the engine and the scrape source see it, at wall time `now`.
pub fn pod_status(pod: &Pod, now: SystemTime) -> PodStatus {
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let ready_cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let ago = |t: Option<SystemTime>| {
        t.map_or(Duration::ZERO, |t| {
            now.duration_since(t).unwrap_or_default()
        })
    };
    let started = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| SystemTime::from(t.0));
    let ready_since = ready_cond
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| SystemTime::from(t.0));
    let port = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find_map(|c| c.ports.as_ref()?.first()))
        .map(|p| p.container_port);
    let endpoint = status.and_then(|s| s.pod_ip.as_deref()).map(|ip| {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        match port {
            Some(p) => format!("http://{host}:{p}"),
            None => format!("http://{host}"),
        }
    });
    PodStatus {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        ready: ready_cond.is_some_and(|c| c.status == "True"),
        age: ago(started),
        ready_changed: ago(ready_since),
        endpoint,
        pid: None,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        started: started.is_some(),
        requests: Some(pod_requests(pod)),
    }
}

/// The pod's requests summed over its containers; a resource is `None` when any container
/// lacks a request for it (the HPA then cannot compute utilization, R4.x).
pub fn pod_requests(pod: &Pod) -> Requests {
    let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
    let sum = |resource: &str| -> Option<i64> {
        if containers.is_empty() {
            return None;
        }
        let mut total: i64 = 0;
        for c in containers {
            let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
            let q: Quantity = q.0.parse().ok()?;
            total = total.saturating_add(q.milli_value());
        }
        Some(total)
    };
    Requests {
        cpu: sum("cpu"),
        memory: sum("memory"),
    }
}

/// The wall clock pods are aged against.
pub fn wall(clock: &Clock) -> SystemTime {
    clock.now().1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_ready_pod_carries_its_ip_port_age_and_requests() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [
                {"name": "app", "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "side", "resources": {"requests": {"cpu": "50m"}}}
            ]},
            "status": {"phase": "Running", "podIP": "10.1.2.3",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:30Z"}]}
        }));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_660); // 00:01:00
        let s = pod_status(&p, now);
        assert_eq!(s.phase, PodPhase::Running);
        assert!(s.ready && !s.deleting && s.started);
        assert_eq!(s.age, Duration::from_secs(60));
        assert_eq!(s.ready_changed, Duration::from_secs(30));
        assert_eq!(s.endpoint.as_deref(), Some("http://10.1.2.3:8080"));
        let r = s.requests.unwrap();
        assert_eq!(r.cpu, Some(300));
        assert_eq!(r.memory, None, "one container has no memory request");
    }

    #[test]
    fn a_pending_pod_without_ip_or_conditions_is_unready() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "w", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}}),
        );
        let s = pod_status(&p, SystemTime::UNIX_EPOCH);
        assert_eq!(s.phase, PodPhase::Pending);
        assert!(!s.ready && s.deleting && !s.started);
        assert_eq!(s.endpoint, None);
        assert_eq!(s.requests.unwrap().cpu, None);
    }
}
