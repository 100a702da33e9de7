//! The `resource` source in a cluster: CPU and memory per pod from `metrics.k8s.io/v1beta1`.
//!
//! Containers are summed per pod as the HPA does; a pod with no containers, or with a container
//! lacking the resource, is missing (listed in `failed`, never averaged in). Pod requests (regular
//! containers plus restartable init containers) come with the reading for `Utilization` targets.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde::Deserialize;

use crate::clock::Clock;
use crate::metric::{MetricId, Quantity, Reading};
use crate::source::{BuildContext, MetricSource, ResourceConfig, SourceError};

/// Reads one resource of the target's pods through the resource metrics API.
#[derive(Clone)]
pub struct ResourceSource {
    id: MetricId,
    cfg: ResourceConfig,
    client: kube::Client,
    namespace: String,
    selector: Option<String>,
    clock: Clock,
}

impl std::fmt::Debug for ResourceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceSource")
            .field("id", &self.id)
            .field("cfg", &self.cfg)
            .finish()
    }
}

#[derive(Deserialize)]
struct PodMetricsBody {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    name: String,
    #[serde(default)]
    usage: BTreeMap<String, String>,
}

impl ResourceSource {
    /// Needs the context's kube client; reads pods matching the context's selector.
    pub fn new(cfg: ResourceConfig, ctx: &BuildContext) -> Result<Self, SourceError> {
        let client = ctx.kube.clone().ok_or_else(|| SourceError::NotConfigured {
            metric: ctx.metric.clone(),
            why: "the resource metrics API needs a Kubernetes client".into(),
        })?;
        Ok(Self {
            id: ctx.metric.clone(),
            cfg,
            client,
            namespace: ctx.namespace.clone(),
            selector: ctx.selector.clone(),
            clock: ctx.clock,
        })
    }

    fn list_params(&self) -> ListParams {
        match &self.selector {
            Some(s) => ListParams::default().labels(s),
            None => ListParams::default(),
        }
    }

    fn path(&self, group_path: &str) -> String {
        let q = self
            .selector
            .as_deref()
            .map(|s| format!("?labelSelector={s}"))
            .unwrap_or_default();
        format!("{group_path}/namespaces/{}/pods{q}", self.namespace)
    }

    /// Per-pod requests of the resource (in cores or bytes); pods lacking a request on any
    /// counted container are left out.
    pub async fn pod_requests(&self) -> Result<BTreeMap<String, f64>, SourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods = api
            .list(&self.list_params())
            .await
            .map_err(|e| SourceError::Kube {
                metric: self.id.clone(),
                path: self.path("/api/v1"),
                why: e.to_string(),
            })?;
        let res = self.cfg.name.as_str();
        let mut out = BTreeMap::new();
        for pod in pods.items {
            let (Some(name), Some(spec)) = (pod.metadata.name.clone(), pod.spec.as_ref()) else {
                continue;
            };
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            let counted: Vec<&Container> = spec
                .containers
                .iter()
                .chain(sidecars)
                .filter(|c| self.cfg.container.as_ref().is_none_or(|n| *n == c.name))
                .collect();
            let requests: Option<Vec<f64>> = counted
                .iter()
                .map(|c| {
                    let q = c.resources.as_ref()?.requests.as_ref()?.get(res)?;
                    parse_quantity(&q.0)
                })
                .collect();
            if let Some(r) = requests.filter(|r| !r.is_empty()) {
                out.insert(name, r.iter().sum());
            }
        }
        Ok(out)
    }

    async fn read_now(&self) -> Result<Reading, SourceError> {
        let ar = ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let path = self.path("/apis/metrics.k8s.io/v1beta1");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        let list = api
            .list(&self.list_params())
            .await
            .map_err(|e| SourceError::Kube {
                metric: self.id.clone(),
                path: path.clone(),
                why: e.to_string(),
            })?;
        let res = self.cfg.name.as_str();
        let mut pods = BTreeMap::new();
        let mut failed = BTreeMap::new();
        let mut first_ts: Option<SystemTime> = None;
        for item in list.items {
            let name = item.metadata.name.clone().unwrap_or_default();
            let body: PodMetricsBody =
                serde_json::from_value(item.data).map_err(|e| SourceError::BadPayload {
                    metric: self.id.clone(),
                    endpoint: path.clone(),
                    why: format!("pod {name}: {e}"),
                })?;
            if first_ts.is_none() {
                first_ts = body
                    .timestamp
                    .as_deref()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .map(SystemTime::from);
            }
            match pod_usage(&body, res, self.cfg.container.as_deref()) {
                Ok(v) => {
                    pods.insert(name, v);
                }
                Err(why) => {
                    failed.insert(name, why);
                }
            }
        }
        if pods.is_empty() {
            return Err(SourceError::NoData {
                metric: self.id.clone(),
                endpoint: path,
                why: if failed.is_empty() {
                    "no pod metrics returned for the selector".into()
                } else {
                    format!("no pod reported {res}: {failed:?}")
                },
            });
        }
        let requests = self.pod_requests().await?;
        let at = first_ts.unwrap_or_else(|| self.clock.now().1);
        let total = pods.values().sum();
        let mut reading = Reading::per_pod(pods, total, at, path);
        reading.failed = failed;
        reading.requests = Some(requests);
        Ok(reading)
    }
}

/// One pod's usage: the sum over its containers (or the named one); an error if missing.
fn pod_usage(body: &PodMetricsBody, res: &str, container: Option<&str>) -> Result<f64, String> {
    if body.containers.is_empty() {
        return Err("no containers in pod metrics".into());
    }
    let mut sum = 0.0;
    let mut found = false;
    for c in &body.containers {
        if container.is_some_and(|n| n != c.name) {
            continue;
        }
        let q = c
            .usage
            .get(res)
            .ok_or_else(|| format!("container {} has no {res} usage", c.name))?;
        sum +=
            parse_quantity(q).ok_or_else(|| format!("container {}: bad quantity {q:?}", c.name))?;
        found = true;
    }
    if !found {
        return Err(format!(
            "container {} not present in metrics",
            container.unwrap_or("")
        ));
    }
    Ok(sum)
}

/// A Kubernetes quantity (`251738129n`, `3m`, `187212Ki`, `1.5Gi`, `2e3`) as a plain number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    s.parse::<Quantity>().ok().map(|q| q.as_f64())
}

impl MetricSource for ResourceSource {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "resource"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        Box::pin(self.read_now())
    }
}

#[cfg(test)]
mod tests;
