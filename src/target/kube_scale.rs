//! `KubeScale`: any Kubernetes object with a scale subresource (Deployment, StatefulSet,
//! ReplicaSet, a custom resource with `subresources.scale`), resolved by discovery.
//!
//! Reads go to `…/scale` (spec.replicas, status.replicas, status.selector) and to a shared pod
//! watch for the selector; writes replace `…/scale` with the `resourceVersion` the decision was
//! made on, so a change by someone else in between is a 409, not a silent overwrite.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::kube_pods::{PodCache, PodWatch, pod_status, wall};
use super::{ScaleTarget, TargetError, TargetStatus};
use crate::clock::Clock;
use crate::engine::Replicas;

/// How many times a write is retried after a 409 whose re-read shows only status changes.
const CONFLICT_RETRIES: usize = 3;
/// How long a status read waits for a new pod watch's first list.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// A scale subresource of one object.
pub struct KubeScale {
    name: String,
    object: String,
    api: Api<DynamicObject>,
    namespace: String,
    pods: PodCache,
    clock: Clock,
    /// The pod watch for the selector last read, and that selector.
    watch: Mutex<Option<(String, Arc<PodWatch>)>>,
    /// `spec.replicas` and `resourceVersion` of the last read.
    seen: Mutex<Option<(i32, String)>>,
    /// `status.selector` of the last read.
    selector: Mutex<Option<String>>,
}

impl std::fmt::Debug for KubeScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeScale")
            .field("name", &self.name)
            .finish()
    }
}

/// The group and version of a `targetRef.apiVersion`, with `apps/v1` for the built-in
/// workload kinds when it is absent.
pub fn group_version(api_version: Option<&str>, kind: &str) -> Option<(String, String)> {
    match api_version {
        Some(av) => Some(match av.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), av.to_string()),
        }),
        None => matches!(kind, "Deployment" | "StatefulSet" | "ReplicaSet")
            .then(|| ("apps".to_string(), "v1".to_string())),
    }
}

impl KubeScale {
    /// Resolves `kind` in `api_version` by discovery and checks that it has a scale
    /// subresource. A kind the server does not know is [`TargetError::NotFound`].
    pub async fn resolve(
        client: Client,
        pods: PodCache,
        namespace: &str,
        api_version: Option<&str>,
        kind: &str,
        object: &str,
    ) -> Result<Self, TargetError> {
        let name = format!("{kind}/{namespace}/{object}");
        let (group, version) =
            group_version(api_version, kind).ok_or_else(|| TargetError::NotFound {
                target: name.clone(),
                why: "targetRef.apiVersion is required for this kind".into(),
            })?;
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk)
            .await
            .map_err(|e| TargetError::NotFound {
                target: name.clone(),
                why: format!("the API server does not serve {kind} in {group}/{version}: {e}"),
            })?;
        if !caps.subresources.iter().any(|(sr, _)| sr.plural == "scale") {
            return Err(TargetError::Rejected {
                target: name,
                requested: Replicas(0),
                why: format!("{kind} has no scale subresource"),
            });
        }
        Ok(Self::with_resource(client, pods, namespace, &ar, object))
    }

    /// A target over an already-resolved resource (tests, and callers that cache discovery).
    pub fn with_resource(
        client: Client,
        pods: PodCache,
        namespace: &str,
        ar: &ApiResource,
        object: &str,
    ) -> Self {
        Self {
            name: format!("{}/{namespace}/{object}", ar.kind),
            object: object.to_string(),
            api: Api::namespaced_with(client, namespace, ar),
            namespace: namespace.to_string(),
            pods,
            clock: Clock::start(),
            watch: Mutex::new(None),
            seen: Mutex::new(None),
            selector: Mutex::new(None),
        }
    }

    /// The pod selector (`status.selector`) of the last read.
    pub fn selector(&self) -> Option<String> {
        self.selector.lock().expect("selector lock").clone()
    }

    fn error(&self, e: kube::Error) -> TargetError {
        match &e {
            kube::Error::Api(s) if s.code == 404 => TargetError::NotFound {
                target: self.name.clone(),
                why: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 409 => TargetError::Conflict {
                target: self.name.clone(),
                why: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 422 || s.code == 403 => TargetError::Rejected {
                target: self.name.clone(),
                requested: Replicas(0),
                why: s.message.clone(),
            },
            _ => TargetError::Unavailable {
                target: self.name.clone(),
                why: e.to_string(),
            },
        }
    }

    fn pod_watch(&self, selector: &str) -> Arc<PodWatch> {
        let mut cur = self.watch.lock().expect("watch lock");
        match &*cur {
            Some((s, w)) if s == selector => w.clone(),
            _ => {
                let w = self.pods.watch(&self.namespace, selector);
                *cur = Some((selector.to_string(), w.clone()));
                w
            }
        }
    }

    /// `spec.replicas`, `status.replicas` and `status.selector`; remembers what the next
    /// write is conditioned on.
    async fn read_scale(&self) -> Result<(i32, i32, Option<String>), TargetError> {
        let scale = self
            .api
            .get_scale(&self.object)
            .await
            .map_err(|e| self.error(e))?;
        let desired = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let (running, selector) = scale
            .status
            .as_ref()
            .map_or((0, None), |s| (s.replicas, s.selector.clone()));
        let rv = scale.metadata.resource_version.clone().unwrap_or_default();
        *self.seen.lock().expect("seen lock") = Some((desired, rv));
        self.selector
            .lock()
            .expect("selector lock")
            .clone_from(&selector);
        Ok((desired, running, selector))
    }

    async fn read(&self) -> Result<TargetStatus, TargetError> {
        let (desired, running, selector) = self.read_scale().await?;
        let selector =
            selector
                .filter(|s| !s.is_empty())
                .ok_or_else(|| TargetError::InvalidSelector {
                    target: self.name.clone(),
                    why: "the scale subresource reports no selector".into(),
                })?;
        let watch = self.pod_watch(&selector);
        if !watch.ready(FIRST_LIST).await {
            return Err(TargetError::Unavailable {
                target: self.name.clone(),
                why: format!("no pod list for selector {selector} yet"),
            });
        }
        let now = wall(&self.clock);
        let mut pods: Vec<_> = watch.pods().iter().map(|p| pod_status(p, now)).collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let ready = pods.iter().filter(|p| p.ready && !p.deleting).count() as i32;
        Ok(TargetStatus {
            desired: Replicas(desired),
            running: Replicas(running),
            ready: Replicas(ready),
            pods,
        })
    }

    async fn write(&self, replicas: Replicas) -> Result<(), TargetError> {
        let seen = self.seen.lock().expect("seen lock").clone();
        let (decided_on, mut rv) = match seen {
            Some(s) => s,
            None => {
                self.read_scale().await?;
                self.seen
                    .lock()
                    .expect("seen lock")
                    .clone()
                    .unwrap_or_default()
            }
        };
        for attempt in 0..=CONFLICT_RETRIES {
            let body = Scale {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.object.clone()),
                    namespace: Some(self.namespace.clone()),
                    resource_version: Some(rv.clone()),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::autoscaling::v1::ScaleSpec {
                    replicas: Some(replicas.get()),
                }),
                status: None,
            };
            match self
                .api
                .replace_scale(&self.object, &PostParams::default(), &body)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_RETRIES => {
                    // Retry only if nobody else changed the count we decided from.
                    let now = self
                        .api
                        .get_scale(&self.object)
                        .await
                        .map_err(|e| self.error(e))?;
                    let current = now.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    if current != decided_on {
                        return Err(TargetError::Conflict {
                            target: self.name.clone(),
                            why: format!(
                                "spec.replicas changed from {decided_on} to {current} since it was read"
                            ),
                        });
                    }
                    rv = now.metadata.resource_version.unwrap_or_default();
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        unreachable!("the last attempt returns")
    }
}

impl ScaleTarget for KubeScale {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> BoxFuture<'_, Result<TargetStatus, TargetError>> {
        Box::pin(self.read())
    }

    fn scale_to(&self, replicas: Replicas) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(self.write(replicas))
    }
}

#[cfg(test)]
#[path = "kube_scale_tests.rs"]
mod tests;
