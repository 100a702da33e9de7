//! The `prometheus` source: an instant PromQL query over the HTTP API.
//!
//! The query template is rendered once when the source is built (`{{ namespace }}`,
//! `{{ selector }}` as PromQL label matchers, `{{ window }}`). A vector answer becomes one value
//! (its series summed, as the HPA sums external metric items) or, with `podLabel`, one value per
//! pod; a scalar answer is one value. An empty answer is [`SourceError::NoData`]; a refused query
//! is [`SourceError::Query`] with Prometheus's `errorType` and message.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::clock::Clock;
use crate::metric::{MetricId, Reading};
use crate::source::exposition::parse_le as parse_float;
use crate::source::scrape::fetch::error_chain;
use crate::source::{BuildContext, MetricSource, PrometheusConfig, SourceError};

/// Default query timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default value of `{{ window }}`.
pub const DEFAULT_WINDOW: &str = "1m";

/// Reads one metric with one PromQL query.
#[derive(Debug)]
pub struct PrometheusSource {
    id: MetricId,
    endpoint: String,
    query: String,
    pod_label: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
    clock: Clock,
}

impl PrometheusSource {
    /// Builds the source, rendering the query template.
    pub fn new(cfg: PrometheusConfig, ctx: &BuildContext) -> Result<Self, SourceError> {
        let not_configured = |why: String| SourceError::NotConfigured {
            metric: ctx.metric.clone(),
            why,
        };
        let base = cfg
            .url
            .clone()
            .or_else(|| ctx.prometheus_url.clone())
            .ok_or_else(|| {
                not_configured("no Prometheus url in the metric or tidescale's config".into())
            })?;
        let window = cfg
            .window
            .map(|w| w.to_string())
            .unwrap_or_else(|| DEFAULT_WINDOW.into());
        let selector = match &ctx.selector {
            Some(s) => promql_matchers(s).map_err(not_configured)?,
            None => String::new(),
        };
        let query = render(&cfg.query, &ctx.namespace, &selector, &window);
        if let Some(left) = query.find("{{") {
            return Err(not_configured(format!(
                "unknown template variable in query at {:?} (known: namespace, selector, window)",
                &query[left..]
            )));
        }
        Ok(Self {
            id: ctx.metric.clone(),
            endpoint: format!("{}/api/v1/query", base.trim_end_matches('/')),
            query,
            pod_label: cfg.pod_label,
            timeout: cfg.timeout.map(|d| d.get()).unwrap_or(DEFAULT_TIMEOUT),
            http: ctx.http.clone(),
            clock: ctx.clock,
        })
    }

    /// The rendered query.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Sends the query and turns its answer into a reading: fetch, then decode.
    async fn read_now(&self) -> Result<Reading, SourceError> {
        let data = self.fetch().await?;
        let (_, wall) = self.clock.now();
        self.decode(&data, wall)
    }

    fn bad(&self, why: String) -> SourceError {
        SourceError::BadPayload {
            metric: self.id.clone(),
            endpoint: self.origin(),
            why,
        }
    }

    fn origin(&self) -> String {
        format!("{} {}", self.endpoint, self.query)
    }

    /// One instant query: the `data` of a successful answer, or the error that names what failed.
    async fn fetch(&self) -> Result<ApiData, SourceError> {
        let timeout_param = format!("{}ms", self.timeout.as_millis());
        let url = reqwest::Url::parse_with_params(
            &self.endpoint,
            [
                ("query", self.query.as_str()),
                ("timeout", timeout_param.as_str()),
            ],
        )
        .map_err(|e| SourceError::NotConfigured {
            metric: self.id.clone(),
            why: format!("Prometheus url {}: {e}", self.endpoint),
        })?;
        let send = self.http.get(url).timeout(self.timeout).send();
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Timeout {
                    metric: self.id.clone(),
                    endpoint: self.origin(),
                    after: self.timeout,
                }
            } else {
                SourceError::Unreachable {
                    metric: self.id.clone(),
                    endpoint: self.endpoint.clone(),
                    why: error_chain(&e),
                }
            }
        };
        let resp = send.await.map_err(map_err)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(map_err)?;
        let parsed: ApiResponse = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) if status.is_success() => {
                return Err(self.bad(format!("not a query response: {e}")));
            }
            Err(_) => {
                return Err(SourceError::HttpStatus {
                    metric: self.id.clone(),
                    endpoint: self.endpoint.clone(),
                    status: status.as_u16(),
                });
            }
        };
        if parsed.status != "success" {
            return Err(SourceError::Query {
                metric: self.id.clone(),
                query: self.query.clone(),
                error_type: parsed.error_type.unwrap_or_else(|| "unknown".into()),
                message: parsed.error.unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        parsed
            .data
            .ok_or_else(|| self.bad("success without data".into()))
    }

    /// A scalar is one value; a vector is summed, or split by the pod label when one is set.
    fn decode(&self, data: &ApiData, wall: SystemTime) -> Result<Reading, SourceError> {
        let origin = self.origin();
        let no_data = || SourceError::NoData {
            metric: self.id.clone(),
            endpoint: origin.clone(),
            why: "the query returned an empty result".into(),
        };
        let value_of =
            |text: &str| parse_float(text).ok_or_else(|| self.bad(format!("bad value {text:?}")));
        let bad_vector = |e: serde_json::Error| self.bad(format!("bad vector: {e}"));
        match data.result_type.as_str() {
            "scalar" => {
                let pair: (f64, String) = serde_json::from_str(data.result.get())
                    .map_err(|e| self.bad(format!("bad scalar: {e}")))?;
                Ok(Reading::value(value_of(&pair.1)?, wall, origin))
            }
            "vector" => {
                let Some(label) = &self.pod_label else {
                    let series: Vec<VectorValue> =
                        serde_json::from_str(data.result.get()).map_err(bad_vector)?;
                    if series.is_empty() {
                        return Err(no_data());
                    }
                    let mut total = 0.0;
                    for s in &series {
                        total += value_of(&s.value.1)?;
                    }
                    return Ok(Reading::value(total, wall, origin));
                };
                let series: Vec<VectorSample> =
                    serde_json::from_str(data.result.get()).map_err(bad_vector)?;
                if series.is_empty() {
                    return Err(no_data());
                }
                // Every value is checked before any label, so a bad value is reported first.
                let mut values = Vec::with_capacity(series.len());
                for s in series {
                    values.push((value_of(&s.value.1)?, s.metric));
                }
                let total: f64 = values.iter().map(|(v, _)| v).sum();
                let mut pods = BTreeMap::new();
                for (v, metric) in values {
                    let pod = metric.get(label).ok_or_else(|| {
                        self.bad(format!("a series has no {label:?} label: {metric:?}"))
                    })?;
                    *pods.entry(pod.clone()).or_insert(0.0) += v;
                }
                Ok(Reading::per_pod(pods, total, wall, origin))
            }
            other => Err(self.bad(format!(
                "result type {other:?}; an instant query must return a vector or scalar"
            ))),
        }
    }
}

impl MetricSource for PrometheusSource {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        Box::pin(self.read_now())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    // Kept as raw text and decoded once into the typed shape the result type calls for: a
    // generic value tree of a 10,000-series answer costs several times the answer's size.
    result: Box<serde_json::value::RawValue>,
}

/// A vector sample when only its value is needed (no pod label): labels are skipped unread.
#[derive(Deserialize)]
struct VectorValue {
    value: (f64, String),
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Substitutes `{{ name }}` (any inner spacing) for the three known variables.
pub fn render(template: &str, namespace: &str, selector: &str, window: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let var = rest[open + 2..open + close].trim();
        let value = match var {
            "namespace" => Some(namespace),
            "selector" => Some(selector),
            "window" => Some(window),
            _ => None,
        };
        match value {
            Some(v) => {
                out.push_str(&rest[..open]);
                out.push_str(v);
            }
            None => out.push_str(&rest[..open + close + 2]),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// A Kubernetes equality selector (`a=b,c!=d`, `a==b`) as PromQL matchers (`a="b",c!="d"`).
pub fn promql_matchers(selector: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, op, value) = if let Some((k, v)) = term.split_once("!=") {
            (k, "!=", v)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, "=", v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, "=", v)
        } else {
            return Err(format!(
                "selector term {term:?} is not an equality (set-based selectors have no PromQL form here)"
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "selector key {key:?} is not a Prometheus label name"
            ));
        }
        let value = value.trim().replace('\\', "\\\\").replace('"', "\\\"");
        parts.push(format!("{key}{op}\"{value}\""));
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests;
