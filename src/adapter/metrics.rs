//! Answers metric GETs (U1–U6) from the sample store: never from a source on the request path.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use crate::metric::{MetricId, Quantity, Reading};
use crate::source::{Aggregate, SourceConfig};
use crate::store::SampleStore;

use super::config::{AdapterConfig, CustomMetric, ExternalMetric};
use super::path::CustomRequest;
use super::selector::Selector;
use super::wire::{
    CustomVersion, ExternalMetricValue, ExternalMetricValueList, MetricIdentifier, MetricValueList,
    MetricValueV1beta1, MetricValueV1beta2, ObjectReference, Status, rfc3339,
};

/// The store id of the `i`-th external metric entry.
pub fn external_id(i: usize, m: &ExternalMetric) -> MetricId {
    MetricId::new(format!("adapter/external/{i}"), m.name.clone())
}

/// The store id of the `i`-th custom metric entry.
pub fn custom_id(i: usize, m: &CustomMetric) -> MetricId {
    MetricId::new(format!("adapter/custom/{i}"), m.name.clone())
}

/// A value as a canonical quantity string (R1.30); `None` for NaN, infinities and values too
/// large to represent.
pub fn quantity_string(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    format!("{v}")
        .parse::<Quantity>()
        .ok()
        .map(|q| q.to_string())
}

/// Seconds a configured source's values are computed over (R1.37), if windowed.
pub fn window_seconds(source: &SourceConfig) -> Option<i64> {
    match source {
        SourceConfig::Scrape(s) => match &s.aggregate {
            Some(Aggregate::Rate { window }) | Some(Aggregate::Quantile { window, .. }) => {
                Some(window.get().as_secs() as i64)
            }
            _ => None,
        },
        SourceConfig::Prometheus(p) if p.query.contains("{{") && p.query.contains("window") => {
            Some(p.window.map(|w| w.get().as_secs()).unwrap_or(60) as i64)
        }
        _ => None,
    }
}

fn unix(at: SystemTime) -> i64 {
    crate::metric::unix_seconds(at).floor() as i64
}

/// `describedObject` kind and apiVersion for a group-resource (R1.26).
pub fn kind_of(resource: &str) -> (String, String) {
    let known = [
        ("pods", "Pod", "v1"),
        ("namespaces", "Namespace", "v1"),
        ("nodes", "Node", "v1"),
        ("services", "Service", "v1"),
        ("persistentvolumeclaims", "PersistentVolumeClaim", "v1"),
        ("deployments.apps", "Deployment", "apps/v1"),
        ("statefulsets.apps", "StatefulSet", "apps/v1"),
        ("replicasets.apps", "ReplicaSet", "apps/v1"),
        ("daemonsets.apps", "DaemonSet", "apps/v1"),
        ("jobs.batch", "Job", "batch/v1"),
        (
            "ingresses.networking.k8s.io",
            "Ingress",
            "networking.k8s.io/v1",
        ),
    ];
    if let Some((_, k, v)) = known.iter().find(|(r, _, _)| *r == resource) {
        return (k.to_string(), v.to_string());
    }
    // Unknown kinds: a best guess of the kind, and no apiVersion (the HPA does not read either).
    let plural = resource.split('.').next().unwrap_or(resource);
    let singular = plural.strip_suffix('s').unwrap_or(plural);
    let mut c = singular.chars();
    let kind = c
        .next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default();
    (kind, String::new())
}

/// Lookup tables over the config, built once.
#[derive(Debug, Default)]
pub struct Index {
    external: HashMap<String, Vec<usize>>,
    custom: HashMap<(String, String), Vec<usize>>,
    external_ids: Vec<MetricId>,
    custom_ids: Vec<MetricId>,
}

impl Index {
    /// Indexes `cfg`.
    pub fn new(cfg: &AdapterConfig) -> Self {
        let mut ix = Index::default();
        for (i, m) in cfg.external.iter().enumerate() {
            ix.external.entry(m.name.clone()).or_default().push(i);
            ix.external_ids.push(external_id(i, m));
        }
        for (i, m) in cfg.custom.iter().enumerate() {
            ix.custom
                .entry((m.resource.clone(), m.name.clone()))
                .or_default()
                .push(i);
            ix.custom_ids.push(custom_id(i, m));
        }
        ix
    }
}

fn reading_of(store: &SampleStore, id: &MetricId) -> Result<std::sync::Arc<Reading>, String> {
    match store.latest(id) {
        Some(l) => match l.reading {
            Some(r) => Ok(r),
            None => Err(match l.error {
                Some(e) => format!("metric {} has no reading yet: {e}", id.name),
                None => format!("metric {} has no reading yet", id.name),
            }),
        },
        None => Err(format!("metric {} is not being read", id.name)),
    }
}

/// An external metric (U6): every configured series of `metric` in `namespace` whose labels
/// match `selector`.
pub fn external(
    cfg: &AdapterConfig,
    ix: &Index,
    store: &SampleStore,
    namespace: &str,
    metric: &str,
    selector: &Selector,
) -> Result<ExternalMetricValueList, Status> {
    let not_found = || {
        Status::not_found(format!(
            "the server could not find the metric {metric} for namespace {namespace}"
        ))
    };
    let entries = ix.external.get(metric).ok_or_else(not_found)?;
    let mut any = false;
    let mut items = Vec::new();
    for &i in entries {
        let m = &cfg.external[i];
        if m.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            continue;
        }
        any = true;
        if !selector.matches(&m.labels) {
            continue;
        }
        let r = reading_of(store, &ix.external_ids[i]).map_err(Status::internal)?;
        let value = quantity_string(r.total()).ok_or_else(|| {
            Status::internal(format!(
                "metric {metric} has a value that is not a quantity: {}",
                r.total()
            ))
        })?;
        items.push(ExternalMetricValue {
            metric_name: m.name.clone(),
            metric_labels: m.labels.clone(),
            timestamp: rfc3339(unix(r.at)),
            window: window_seconds(&m.source),
            value,
        });
    }
    if !any {
        return Err(not_found());
    }
    Ok(ExternalMetricValueList::new(items))
}

/// One (object name, value, when) a custom entry yields.
struct Found {
    object: String,
    /// The value as a canonical quantity.
    value: String,
    at: SystemTime,
    window: Option<i64>,
    namespace: Option<String>,
}

/// True when answering `req` takes the live pods its `labelSelector` selects: a wildcard on
/// `pods` that some per-pod entry (one without `object`) of the request's namespace serves.
pub fn wants_live_pods(cfg: &AdapterConfig, ix: &Index, req: &CustomRequest) -> bool {
    req.is_wildcard()
        && req.resource == "pods"
        && ix
            .custom
            .get(&(req.resource.clone(), req.metric.clone()))
            .is_some_and(|entries| {
                entries.iter().any(|&i| {
                    let m = &cfg.custom[i];
                    m.object.is_none() && m.namespace == req.namespace
                })
            })
}

/// A custom metric (U1–U5), serialized for the request's version.
///
/// `live_pods` is the set of pods the cluster says `selector` selects (see
/// [`wants_live_pods`]). When given, per-pod entries keep only those pods and their
/// `objectLabels` are not consulted; without it, `objectLabels` decide (no cluster).
pub fn custom(
    cfg: &AdapterConfig,
    ix: &Index,
    store: &SampleStore,
    req: &CustomRequest,
    selector: &Selector,
    metric_selector: &Selector,
    live_pods: Option<&BTreeSet<String>>,
) -> Result<Vec<u8>, Status> {
    let not_found = || custom_not_found(req, metric_selector);
    let entries = ix
        .custom
        .get(&(req.resource.clone(), req.metric.clone()))
        .ok_or_else(not_found)?;
    let mut found = Vec::new();
    for &i in entries {
        let m = &cfg.custom[i];
        if !entry_selected(m, req, selector, metric_selector, live_pods) {
            continue;
        }
        let r = reading_of(store, &ix.custom_ids[i]).map_err(Status::internal)?;
        found_in(m, &r, req, live_pods, &mut found)?;
    }
    if found.is_empty() && !req.is_wildcard() {
        return Err(not_found());
    }
    write_custom(req, &found, metric_selector)
}

/// The 404 of a custom request, naming the object and the metric selector when there is one.
fn custom_not_found(req: &CustomRequest, metric_selector: &Selector) -> Status {
    let gr = &req.resource;
    Status::not_found(if req.is_wildcard() {
        format!(
            "the server could not find the metric {} for {gr}",
            req.metric
        )
    } else if metric_selector.is_empty() {
        format!(
            "the server could not find the metric {} for {gr} {}",
            req.metric, req.name
        )
    } else {
        format!(
            "the server could not find the metric {} for {gr} {} with selector {metric_selector}",
            req.metric, req.name
        )
    })
}

/// Whether config entry `m` can answer `req`: same namespace, matching metric labels, and
/// (for named objects) the same object; a wildcard without live pods goes by `objectLabels`.
fn entry_selected(
    m: &CustomMetric,
    req: &CustomRequest,
    selector: &Selector,
    metric_selector: &Selector,
    live_pods: Option<&BTreeSet<String>>,
) -> bool {
    if m.namespace != req.namespace {
        return false;
    }
    // R1.12: an absent metricLabelSelector is empty and matches every series.
    if !metric_selector.matches(&m.metric_labels) {
        return false;
    }
    let per_pod_live = m.object.is_none() && live_pods.is_some();
    if req.is_wildcard() && !per_pod_live && !selector.matches(&m.object_labels) {
        return false;
    }
    match &m.object {
        Some(obj) => req.is_wildcard() || obj == &req.name,
        None => true,
    }
}

/// The values entry `m`'s reading `r` contributes: its object's one value, or the selected
/// pods' values.
fn found_in(
    m: &CustomMetric,
    r: &Reading,
    req: &CustomRequest,
    live_pods: Option<&BTreeSet<String>>,
    found: &mut Vec<Found>,
) -> Result<(), Status> {
    let window = window_seconds(&m.source);
    let quantity = |v: f64| {
        quantity_string(v).ok_or_else(|| {
            Status::internal(format!(
                "metric {} has a value that is not a quantity: {v}",
                req.metric
            ))
        })
    };
    let mut push = |object: &String, v: f64| -> Result<(), Status> {
        found.push(Found {
            object: object.clone(),
            value: quantity(v)?,
            at: r.at,
            window,
            namespace: m.namespace.clone(),
        });
        Ok(())
    };
    match (&m.object, r.pods()) {
        (Some(obj), _) => push(obj, r.total()),
        (None, Some(pods)) => {
            for (pod, v) in pods {
                let selected = if req.is_wildcard() {
                    live_pods.is_none_or(|live| live.contains(pod))
                } else {
                    pod == &req.name
                };
                if selected {
                    push(pod, *v)?;
                }
            }
            Ok(())
        }
        (None, None) => Err(Status::internal(format!(
            "metric {} of {} has one value, not one per pod: give the entry an `object`",
            req.metric, req.resource
        ))),
    }
}

/// The `MetricValueList` of `found`, in the request's version.
fn write_custom(
    req: &CustomRequest,
    found: &[Found],
    metric_selector: &Selector,
) -> Result<Vec<u8>, Status> {
    let (kind, api_version) = kind_of(&req.resource);
    let echo = metric_selector.to_label_selector();
    let obj = |f: &Found| ObjectReference {
        kind: kind.clone(),
        namespace: f.namespace.clone().unwrap_or_default(),
        name: f.object.clone(),
        api_version: api_version.clone(),
    };
    let body = match req.version {
        CustomVersion::V1beta1 => MetricValueList::write_streamed(
            req.version,
            found.len(),
            found.iter().map(|f| MetricValueV1beta1 {
                described_object: obj(f),
                metric_name: req.metric.clone(),
                timestamp: rfc3339(unix(f.at)),
                window: f.window,
                value: f.value.clone(),
                selector: echo.clone(),
            }),
        ),
        CustomVersion::V1beta2 => MetricValueList::write_streamed(
            req.version,
            found.len(),
            found.iter().map(|f| MetricValueV1beta2 {
                described_object: obj(f),
                metric: MetricIdentifier {
                    name: req.metric.clone(),
                    selector: echo.clone(),
                },
                timestamp: rfc3339(unix(f.at)),
                window_seconds: f.window,
                value: f.value.clone(),
            }),
        ),
    };
    body.map_err(|e| Status::internal(e.to_string()))
}
