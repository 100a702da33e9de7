//! The adapter's config file: which custom and external metrics it serves, each backed by a
//! tidescale source block (`scrape` or `prometheus`, the same blocks a ScalingPolicy uses).
//!
//! Parsed once into typed values; every problem in the file is reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::metric::DurationSpec;
use crate::source::{PrometheusConfig, ScrapeConfig, SourceConfig};

/// Default interval between two reads of a source.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Core and well-known resources that are not namespaced; anything else is, unless the entry
/// says `namespaced: false` (a cluster-scoped custom resource).
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "storageclasses.storage.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "ingressclasses.networking.k8s.io",
    "priorityclasses.scheduling.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
];

/// Why the config file was rejected: every problem, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        why: String,
    },
    /// The file is readable but wrong; each entry names where.
    #[error("invalid adapter config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// One external metric series.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalMetric {
    /// The metric's name (the URL's last segment).
    pub name: String,
    /// The series' labels (what `labelSelector` matches).
    pub labels: BTreeMap<String, String>,
    /// Serve it only in this namespace; `None`: in every namespace.
    pub namespace: Option<String>,
    /// Where its value comes from.
    pub source: SourceConfig,
}

/// One custom metric of one object, or of every pod a per-pod source reads.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomMetric {
    /// The metric's name.
    pub name: String,
    /// The R1.1 group-resource: `pods`, `deployments.apps`, `namespaces`, …
    pub resource: String,
    /// Whether that resource is namespaced (R2.6: the same for every entry of the resource).
    pub namespaced: bool,
    /// The objects' namespace (namespaced resources only; default `default`).
    pub namespace: Option<String>,
    /// The described object's name; for `pods` with a per-pod source, absent (each pod is one).
    pub object: Option<String>,
    /// Labels of the described object(s), matched by `labelSelector` on wildcard requests.
    pub object_labels: BTreeMap<String, String>,
    /// Labels of the metric's own series, matched by `metricLabelSelector`.
    pub metric_labels: BTreeMap<String, String>,
    /// Where its value comes from.
    pub source: SourceConfig,
}

/// The parsed config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterConfig {
    /// How often each source is read.
    pub interval: Duration,
    /// Default Prometheus server for `prometheus` blocks that name no `url`.
    pub prometheus_url: Option<String>,
    /// External metric series.
    pub external: Vec<ExternalMetric>,
    /// Custom metric objects.
    pub custom: Vec<CustomMetric>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    prometheus_url: Option<String>,
    #[serde(default)]
    external_metrics: Vec<Value>,
    #[serde(default)]
    custom_metrics: Vec<Value>,
    #[serde(default)]
    policies: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExternal {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    scrape: Option<ScrapeConfig>,
    #[serde(default)]
    prometheus: Option<PrometheusConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCustom {
    name: String,
    resource: String,
    #[serde(default)]
    namespaced: Option<bool>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    object_labels: BTreeMap<String, String>,
    #[serde(default)]
    metric_labels: BTreeMap<String, String>,
    #[serde(default)]
    scrape: Option<ScrapeConfig>,
    #[serde(default)]
    prometheus: Option<PrometheusConfig>,
}

/// The external metric name of a ScalingPolicy's metric: `<namespace>.<policy>.<metric>`.
pub fn policy_metric_name(namespace: &str, policy: &str, metric: &str) -> String {
    format!("{namespace}.{policy}.{metric}")
}

/// Every metric of the ScalingPolicy in `path`, as external metrics served in its namespace.
fn policy_metrics(
    at: &str,
    path: &std::path::Path,
    problems: &mut Vec<String>,
) -> Vec<ExternalMetric> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{at}: cannot read {}: {e}", path.display()));
            return Vec::new();
        }
    };
    let (spec, _) = match crate::spec::load_policy_yaml(&text) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{at}: {}: {e}", path.display()));
            return Vec::new();
        }
    };
    let doc = crate::spec::yaml_value(&text).unwrap_or(Value::Null);
    let meta = |key: &str| {
        doc.pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let namespace = meta("namespace").unwrap_or_else(|| "default".into());
    let policy = meta("name")
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "policy".into());
    let mut out = Vec::new();
    for (j, m) in spec.metrics.iter().enumerate() {
        let where_ = format!("{at} ({}).metrics[{j}]", path.display());
        if m.resource.is_some() {
            problems.push(format!(
                "{where_}: `resource` metrics are served by metrics.k8s.io, not by this adapter"
            ));
            continue;
        }
        if let Some(source) = source(&where_, m.scrape.clone(), m.prometheus.clone(), problems) {
            out.push(ExternalMetric {
                name: policy_metric_name(&namespace, &policy, &m.name),
                labels: BTreeMap::new(),
                namespace: Some(namespace.clone()),
                source,
            });
        }
    }
    out
}

/// Whether `resource` is namespaced unless told otherwise.
pub fn default_namespaced(resource: &str) -> bool {
    !CLUSTER_SCOPED.contains(&resource)
}

fn valid_metric_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && !n.contains('/')
        && !n.contains('%')
        && n != "*"
        && n.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

fn valid_resource(r: &str) -> bool {
    !r.is_empty()
        && r.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn source(
    at: &str,
    scrape: Option<ScrapeConfig>,
    prometheus: Option<PrometheusConfig>,
    problems: &mut Vec<String>,
) -> Option<SourceConfig> {
    match (scrape, prometheus) {
        (Some(s), None) => {
            if s.endpoints.is_empty() {
                problems.push(format!(
                    "{at}.scrape: `endpoints` is required (the adapter scrapes static endpoints)"
                ));
            }
            Some(SourceConfig::Scrape(s))
        }
        (None, Some(p)) => Some(SourceConfig::Prometheus(p)),
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{at}: give exactly one of `scrape` or `prometheus`, not both"
            ));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{at}: a source block `scrape` or `prometheus` is required"
            ));
            None
        }
    }
}

fn entry<T: for<'de> Deserialize<'de>>(
    at: &str,
    v: &Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let where_ = if path == "." {
                at.to_string()
            } else {
                format!("{at}.{path}")
            };
            problems.push(format!("{where_}: {}", e.into_inner()));
            None
        }
    }
}

impl AdapterConfig {
    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Self::parse_in(&text, path.parent())
    }

    /// Parses config text (YAML or JSON), reporting every problem at once.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_in(text, None)
    }

    /// Parses a config whose relative `policies` paths are relative to `base`.
    pub fn parse_in(text: &str, base: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let doc = crate::spec::yaml_value(text).map_err(|e| ConfigError::Invalid(vec![e]))?;
        let doc = if doc.is_null() {
            Value::Object(Default::default())
        } else {
            doc
        };
        let mut g = Gather::default();
        let raw: RawFile = entry("config", &doc, &mut g.problems)
            .ok_or_else(|| ConfigError::Invalid(g.problems.clone()))?;
        g.out.prometheus_url = raw.prometheus_url;
        g.interval(raw.interval);
        for (i, v) in raw.external_metrics.iter().enumerate() {
            g.external(&format!("externalMetrics[{i}]"), v);
        }
        for (i, v) in raw.custom_metrics.iter().enumerate() {
            g.custom(&format!("customMetrics[{i}]"), v);
        }
        for (i, file) in raw.policies.iter().enumerate() {
            let path = match base {
                Some(dir) => dir.join(file),
                None => std::path::PathBuf::from(file),
            };
            g.policy(&format!("policies[{i}]"), &path);
        }
        if g.problems.is_empty() {
            Ok(g.out)
        } else {
            Err(ConfigError::Invalid(g.problems))
        }
    }
}

/// An external metric's identity: two entries with the same one would be ambiguous.
type ExternalKey = (String, BTreeMap<String, String>, Option<String>);
/// A custom metric's identity: resource, name, namespace, object and metric labels.
type CustomKey = (
    String,
    String,
    Option<String>,
    Option<String>,
    BTreeMap<String, String>,
);

/// A parse in progress: the config so far, every problem found, and what must stay unique.
struct Gather {
    out: AdapterConfig,
    problems: Vec<String>,
    seen_external: BTreeSet<ExternalKey>,
    seen_custom: BTreeSet<CustomKey>,
    /// Each resource's scope and the entry that first set it (discovery has one per resource).
    scopes: BTreeMap<String, (bool, String)>,
}

impl Default for Gather {
    fn default() -> Self {
        Self {
            out: AdapterConfig {
                interval: DEFAULT_INTERVAL,
                ..Default::default()
            },
            problems: Vec::new(),
            seen_external: BTreeSet::new(),
            seen_custom: BTreeSet::new(),
            scopes: BTreeMap::new(),
        }
    }
}

impl Gather {
    fn interval(&mut self, raw: Option<Value>) {
        let Some(iv) = raw else { return };
        match serde_json::from_value::<DurationSpec>(iv) {
            Ok(d) if d.get() >= Duration::from_millis(100) => self.out.interval = d.get(),
            Ok(d) => self.problems.push(format!(
                "interval: {:?} is below the 100ms minimum",
                d.get()
            )),
            Err(e) => self.problems.push(format!("interval: {e}")),
        }
    }

    fn check_name(&mut self, at: &str, name: &str) {
        if !valid_metric_name(name) {
            self.problems.push(format!(
                "{at}.name: {name:?} is not a usable metric name (no '/', '%', spaces, or '*')"
            ));
        }
    }

    fn external(&mut self, at: &str, v: &Value) {
        let Some(r) = entry::<RawExternal>(at, v, &mut self.problems) else {
            return;
        };
        self.check_name(at, &r.name);
        let key = (r.name.clone(), r.labels.clone(), r.namespace.clone());
        if !self.seen_external.insert(key) {
            self.problems.push(format!(
                "{at}: metric {:?} with labels {:?} is declared twice",
                r.name, r.labels
            ));
        }
        if let Some(source) = source(at, r.scrape, r.prometheus, &mut self.problems) {
            self.out.external.push(ExternalMetric {
                name: r.name,
                labels: r.labels,
                namespace: r.namespace,
                source,
            });
        }
    }

    fn custom(&mut self, at: &str, v: &Value) {
        let Some(r) = entry::<RawCustom>(at, v, &mut self.problems) else {
            return;
        };
        self.check_name(at, &r.name);
        let namespaced = self.scope(at, &r);
        let namespace = namespaced.then(|| r.namespace.clone().unwrap_or_else(|| "default".into()));
        let key = (
            r.resource.clone(),
            r.name.clone(),
            namespace.clone(),
            r.object.clone(),
            r.metric_labels.clone(),
        );
        if !self.seen_custom.insert(key) {
            self.problems.push(format!(
                "{at}: metric {:?} of {} {:?} is declared twice with the same metricLabels",
                r.name,
                r.resource,
                r.object.as_deref().unwrap_or("(every pod)")
            ));
        }
        if let Some(source) = source(at, r.scrape, r.prometheus, &mut self.problems) {
            self.out.custom.push(CustomMetric {
                name: r.name,
                resource: r.resource,
                namespaced,
                namespace,
                object: r.object,
                object_labels: r.object_labels,
                metric_labels: r.metric_labels,
                source,
            });
        }
    }

    /// Checks a custom entry's resource, scope and object; returns whether it is namespaced.
    fn scope(&mut self, at: &str, r: &RawCustom) -> bool {
        let problems = &mut self.problems;
        if !valid_resource(&r.resource) {
            problems.push(format!(
                "{at}.resource: {:?} is not a group-resource such as `pods` or `deployments.apps`",
                r.resource
            ));
        }
        let namespaced = r
            .namespaced
            .unwrap_or_else(|| default_namespaced(&r.resource));
        match self.scopes.get(&r.resource) {
            Some((n, first)) if *n != namespaced => problems.push(format!(
                "{at}.namespaced: {} disagrees with {first} for resource {:?} (discovery needs one scope per resource)",
                namespaced, r.resource
            )),
            Some(_) => {}
            None => {
                self.scopes
                    .insert(r.resource.clone(), (namespaced, at.to_string()));
            }
        }
        if !namespaced && r.namespace.is_some() {
            problems.push(format!(
                "{at}.namespace: {:?} is not namespaced",
                r.resource
            ));
        }
        if r.resource == "namespaces" && r.object.is_none() {
            problems.push(format!(
                "{at}.object: a namespaces metric needs `object` (the namespace it describes)"
            ));
        }
        if r.resource != "pods" && r.object.is_none() && r.resource != "namespaces" {
            problems.push(format!(
                "{at}.object: the described object's name is required for resource {:?}",
                r.resource
            ));
        }
        namespaced
    }

    fn policy(&mut self, at: &str, path: &std::path::Path) {
        for metric in policy_metrics(at, path, &mut self.problems) {
            let key = (
                metric.name.clone(),
                metric.labels.clone(),
                metric.namespace.clone(),
            );
            if !self.seen_external.insert(key) {
                self.problems
                    .push(format!("{at}: metric {:?} is declared twice", metric.name));
            }
            self.out.external.push(metric);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = AdapterConfig::parse(
            "interval: 2s\nexternalMetrics:\n- name: queue_depth\n  labels: {queue: orders}\n  scrape: {endpoints: ['http://127.0.0.1:9/metrics'], metric: q}\n\
             customMetrics:\n- name: rps\n  resource: pods\n  namespace: shop\n  prometheus: {query: 'sum(rate(x[1m])) by (pod)', podLabel: pod}\n\
             - name: load\n  resource: nodes\n  object: n1\n  prometheus: {query: 'x'}\n",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.external[0].labels["queue"], "orders");
        assert_eq!(c.custom[0].namespace.as_deref(), Some("shop"));
        assert!(c.custom[0].namespaced);
        assert!(!c.custom[1].namespaced);
        assert_eq!(c.custom[1].namespace, None);
    }

    #[test]
    fn policy_metrics_become_external_metrics_in_the_policy_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yaml"),
            "metadata: {name: web, namespace: shop}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  maxReplicas: 5\n  metrics:\n  \
             - name: rps\n    prometheus: {query: 'sum(rate(x[1m]))'}\n    target: {type: AverageValue, averageValue: '100'}\n  \
             - name: cpu\n    resource: {name: cpu}\n    target: {type: Utilization, averageUtilization: 50}\n",
        )
        .unwrap();
        let e = AdapterConfig::parse_in("policies: [web.yaml, missing.yaml]\n", Some(dir.path()))
            .unwrap_err();
        let ConfigError::Invalid(p) = e else { panic!() };
        let all = p.join("\n");
        assert!(
            all.contains("metrics[1]: `resource` metrics are served by metrics.k8s.io"),
            "{all}"
        );
        assert!(all.contains("policies[1]: cannot read"), "{all}");
        std::fs::write(
            dir.path().join("only-rps.yaml"),
            "metadata: {name: web, namespace: shop}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  maxReplicas: 5\n  metrics:\n  \
             - name: rps\n    prometheus: {query: 'sum(rate(x[1m]))'}\n    target: {type: AverageValue, averageValue: '100'}\n",
        )
        .unwrap();
        let c = AdapterConfig::parse_in("policies: [only-rps.yaml]\n", Some(dir.path())).unwrap();
        assert_eq!(c.external.len(), 1);
        assert_eq!(c.external[0].name, "shop.web.rps");
        assert_eq!(c.external[0].namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn series_of_one_object_differ_by_metric_labels() {
        let two = "customMetrics:\n\
             - {name: rps, resource: services, object: web, metricLabels: {verb: GET}, prometheus: {query: a}}\n\
             - {name: rps, resource: services, object: web, metricLabels: {verb: PUT}, prometheus: {query: b}}\n";
        let c = AdapterConfig::parse(two).unwrap();
        assert_eq!(c.custom[1].metric_labels["verb"], "PUT");
        let e = AdapterConfig::parse(&two.replace("PUT", "GET")).unwrap_err();
        let ConfigError::Invalid(p) = e else { panic!() };
        assert!(
            p.join("\n").contains("customMetrics[1]: metric \"rps\" of services \"web\" is declared twice with the same metricLabels"),
            "{p:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = AdapterConfig::parse(
            "interval: soon\nexternalMetrics:\n- name: a/b\n  scrape: {metric: q}\n- name: x\n- name: y\n  bogus: 1\n  prometheus: {query: q}\n\
             customMetrics:\n- name: m\n  resource: Deployments\n  prometheus: {query: q}\n- name: m2\n  resource: widgets.example.com\n  object: w\n  namespaced: false\n  prometheus: {query: q}\n\
             - name: m3\n  resource: widgets.example.com\n  object: w\n  prometheus: {query: q}\n",
        )
        .unwrap_err();
        let ConfigError::Invalid(p) = e else { panic!() };
        let all = p.join("\n");
        for want in [
            "interval:",
            "externalMetrics[0].name",
            "externalMetrics[0].scrape: `endpoints` is required",
            "externalMetrics[1]: a source block",
            "externalMetrics[2]",
            "customMetrics[0].resource",
            "customMetrics[0].object",
            "customMetrics[2].namespaced: true disagrees with customMetrics[1]",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
