//! The path router: turns a raw request path into what is asked for (§1.1 U1–U7, §2, §3.8).
//!
//! Works on the still-encoded path so that `%2F` inside a segment never creates a new segment;
//! each segment is then percent-decoded, which makes `%2A` exactly `*` (R1.3).

use super::wire::{CUSTOM_GROUP, CustomVersion, EXTERNAL_GROUP};

/// One custom metric request (U1–U5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomRequest {
    /// The API version.
    pub version: CustomVersion,
    /// The objects' namespace; `None` for root-scoped objects (U3, U4, U5).
    pub namespace: Option<String>,
    /// The R1.1 group-resource (`pods`, `deployments.apps`, `namespaces`).
    pub resource: String,
    /// The object's name, or `*` for all objects matching `labelSelector`.
    pub name: String,
    /// The metric.
    pub metric: String,
}

impl CustomRequest {
    /// True for the wildcard forms (U2, U4).
    pub fn is_wildcard(&self) -> bool {
        self.name == "*"
    }
}

/// Health endpoints (R3.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`.
    Healthz,
    /// `/livez`.
    Livez,
    /// `/readyz`.
    Readyz,
}

impl Probe {
    /// The endpoint's name as printed in verbose output.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Healthz => "healthz",
            Probe::Livez => "livez",
            Probe::Readyz => "readyz",
        }
    }
}

/// What a path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/apis`: the APIGroupList.
    Apis,
    /// `/apis/<group>`: one APIGroup.
    Group(&'static str),
    /// `/apis/custom.metrics.k8s.io/<v>`: its APIResourceList (U7).
    CustomDiscovery(CustomVersion),
    /// `/apis/external.metrics.k8s.io/v1beta1`: its APIResourceList (U7).
    ExternalDiscovery,
    /// A custom metric (U1–U5; U5 already rewritten to resource `namespaces`).
    Custom(CustomRequest),
    /// An external metric (U6).
    External {
        /// The namespace.
        namespace: String,
        /// The metric.
        metric: String,
    },
    /// `/version`.
    Version,
    /// `/openapi/v2` or `/openapi/v3[/…]`.
    OpenApi,
    /// A health endpoint, optionally one check (`/healthz/ping`).
    Health(Probe, Option<String>),
    /// A malformed path (bad percent-encoding): 400 `invalid request path`.
    Invalid,
    /// Anything else: 404.
    NotFound,
}

/// Percent-decodes one segment; `None` on bad escapes or non-UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path segment with a bad percent-escape or bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid request path")]
pub struct BadPath;

/// Splits and decodes a raw path; one trailing slash is ignored (clients ask for `/apis/`).
/// `Err(BadPath)` for a bad escape, `Ok(None)` for an empty inner segment (`//`).
pub fn segments(raw_path: &str) -> Result<Option<Vec<String>>, BadPath> {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Some(vec![]));
    }
    let mut out = Vec::new();
    for s in trimmed.split('/') {
        let d = percent_decode(s).ok_or(BadPath)?;
        if d.is_empty() {
            return Ok(None);
        }
        out.push(d);
    }
    Ok(Some(out))
}

/// Routes a raw (still percent-encoded) request path.
pub fn route(raw_path: &str) -> Route {
    let segs = match segments(raw_path) {
        Err(BadPath) => return Route::Invalid,
        Ok(None) => return Route::NotFound,
        Ok(Some(s)) => s,
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["apis"] => Route::Apis,
        ["apis", CUSTOM_GROUP] => Route::Group(CUSTOM_GROUP),
        ["apis", EXTERNAL_GROUP] => Route::Group(EXTERNAL_GROUP),
        ["apis", CUSTOM_GROUP, v, rest @ ..] => match version(v) {
            Some(v) => custom(v, rest),
            None => Route::NotFound,
        },
        ["apis", EXTERNAL_GROUP, "v1beta1", rest @ ..] => match rest {
            [] => Route::ExternalDiscovery,
            ["namespaces", ns, metric] => Route::External {
                namespace: ns.to_string(),
                metric: metric.to_string(),
            },
            _ => Route::NotFound,
        },
        ["version"] => Route::Version,
        ["openapi", "v2"] | ["openapi", "v3", ..] => Route::OpenApi,
        ["healthz", rest @ ..] => health(Probe::Healthz, rest),
        ["livez", rest @ ..] => health(Probe::Livez, rest),
        ["readyz", rest @ ..] => health(Probe::Readyz, rest),
        _ => Route::NotFound,
    }
}

fn version(v: &str) -> Option<CustomVersion> {
    match v {
        "v1beta1" => Some(CustomVersion::V1beta1),
        "v1beta2" => Some(CustomVersion::V1beta2),
        _ => None,
    }
}

fn health(p: Probe, rest: &[&str]) -> Route {
    match rest {
        [] => Route::Health(p, None),
        [check] => Route::Health(p, Some(check.to_string())),
        _ => Route::NotFound,
    }
}

fn custom(version: CustomVersion, rest: &[&str]) -> Route {
    let req = |namespace: Option<&str>, resource: &str, name: &str, metric: &str| {
        Route::Custom(CustomRequest {
            version,
            namespace: namespace.map(str::to_string),
            resource: resource.to_string(),
            name: name.to_string(),
            metric: metric.to_string(),
        })
    };
    match rest {
        [] => Route::CustomDiscovery(version),
        // U5: the namespace object itself, rewritten to a root-scoped `namespaces` request (R1.4).
        ["namespaces", ns, "metrics", metric] => req(None, "namespaces", ns, metric),
        ["namespaces", ns, resource, name, metric] => req(Some(ns), resource, name, metric),
        // R1.4: `namespaces/{ns}/{x}` (and other short namespaced forms) are not metric paths.
        ["namespaces", ..] => Route::NotFound,
        [resource, name, metric] => req(None, resource, name, metric),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
    const E: &str = "/apis/external.metrics.k8s.io/v1beta1";

    fn custom_of(path: &str) -> CustomRequest {
        match route(path) {
            Route::Custom(c) => c,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn every_url_form_routes() {
        let c = custom_of(&format!("{P2}/namespaces/shop/deployments.apps/web/rps"));
        assert_eq!(
            (
                c.namespace.as_deref(),
                c.resource.as_str(),
                c.name.as_str(),
                c.metric.as_str()
            ),
            (Some("shop"), "deployments.apps", "web", "rps")
        );
        let c = custom_of(&format!("{P2}/namespaces/shop/pods/%2A/rps"));
        assert!(c.is_wildcard());
        assert_eq!(c, custom_of(&format!("{P2}/namespaces/shop/pods/*/rps")));
        let c = custom_of("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load");
        assert_eq!((c.namespace, c.version), (None, CustomVersion::V1beta1));
        assert!(custom_of(&format!("{P2}/nodes/%2a/load")).is_wildcard());
        let c = custom_of(&format!("{P2}/namespaces/shop/metrics/queue_depth"));
        assert_eq!(
            (c.namespace, c.resource.as_str(), c.name.as_str()),
            (None, "namespaces", "shop")
        );
        assert_eq!(
            route(&format!("{E}/namespaces/shop/queue_depth")),
            Route::External {
                namespace: "shop".into(),
                metric: "queue_depth".into()
            }
        );
        assert_eq!(route(P2), Route::CustomDiscovery(CustomVersion::V1beta2));
        assert_eq!(route(&format!("{E}/")), Route::ExternalDiscovery);
        assert_eq!(route("/apis/"), Route::Apis);
        assert_eq!(route("/version/"), Route::Version);
        assert_eq!(
            route("/readyz/metrics-loaded"),
            Route::Health(Probe::Readyz, Some("metrics-loaded".into()))
        );
    }

    #[test]
    fn reference_404s() {
        for p in [
            format!("{P2}/namespaces/ns/pods/bar"),
            format!("{P2}/nodes/foo"),
            format!("{P2}/blah"),
            format!("{E}/namespaces/foo/group/metric"),
            format!("{E}/nonexistent-metric"),
            format!("{E}/namespaces/foo"),
            "/apis/custom.metrics.k8s.io/v2".into(),
            format!("{P2}/namespaces/ns//x/m"),
            format!("{E}/namespaces/ns/a%2Fb/c"),
        ] {
            assert_eq!(route(&p), Route::NotFound, "{p}");
        }
        assert_eq!(route(&format!("{P2}/nodes/%zz/m")), Route::Invalid);
        assert_eq!(route(&format!("{P2}/nodes/%ff/m")), Route::Invalid);
    }
}
