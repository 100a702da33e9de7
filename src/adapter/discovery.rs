//! Discovery documents (§2), `/version`, and how configured metrics are named in them.
//!
//! Built once from the config: `/apis/<group>/<version>` must answer fast and never depend on
//! the metrics backend (R2.13), so the bodies are serialized at start-up.

use bytes::Bytes;
use serde_json::json;

use super::config::AdapterConfig;
use super::wire::{
    ApiGroup, ApiGroupList, ApiResource, ApiResourceList, CUSTOM_GROUP, CustomVersion,
    EXTERNAL_GROUP, GroupVersionForDiscovery,
};

/// Serialized discovery bodies.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// `/apis`.
    pub apis: Bytes,
    /// `/apis/custom.metrics.k8s.io`.
    pub custom_group: Bytes,
    /// `/apis/external.metrics.k8s.io`.
    pub external_group: Bytes,
    /// `/apis/custom.metrics.k8s.io/v1beta1`.
    pub custom_v1beta1: Bytes,
    /// `/apis/custom.metrics.k8s.io/v1beta2`.
    pub custom_v1beta2: Bytes,
    /// `/apis/external.metrics.k8s.io/v1beta1`.
    pub external_v1beta1: Bytes,
    /// `/version`.
    pub version: Bytes,
}

fn gv(group: &str, version: &str) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    }
}

/// The APIGroup of `group` (both custom versions listed, v1beta2 preferred; R2.8).
pub fn api_group(group: &str, top_level: bool) -> ApiGroup {
    let versions = if group == CUSTOM_GROUP {
        vec![gv(group, "v1beta2"), gv(group, "v1beta1")]
    } else {
        vec![gv(group, "v1beta1")]
    };
    ApiGroup {
        kind: top_level.then_some("APIGroup"),
        api_version: top_level.then_some("v1"),
        name: group.to_string(),
        preferred_version: versions[0].clone(),
        versions,
    }
}

/// The APIResourceList of the custom metrics API: one `<resource>/<metric>` entry per
/// configured (resource, metric) pair, or the `custommetrics` placeholder (R2.3, R2.5, R2.6).
pub fn custom_resources(cfg: &AdapterConfig, version: CustomVersion) -> ApiResourceList {
    let mut names: Vec<(String, bool)> = cfg
        .custom
        .iter()
        .map(|m| (format!("{}/{}", m.resource, m.name), m.namespaced))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push(("custommetrics".into(), false));
    }
    ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{CUSTOM_GROUP}/{}", version.as_str()),
        resources: names
            .into_iter()
            .map(|(name, namespaced)| ApiResource {
                name,
                singular_name: String::new(),
                namespaced,
                kind: "MetricValueList",
                verbs: vec!["get"],
            })
            .collect(),
    }
}

/// The APIResourceList of the external metrics API (R2.4, R2.5).
pub fn external_resources(cfg: &AdapterConfig) -> ApiResourceList {
    let mut names: Vec<String> = cfg.external.iter().map(|m| m.name.clone()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push("externalmetrics".into());
    }
    ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{EXTERNAL_GROUP}/v1beta1"),
        resources: names
            .into_iter()
            .map(|name| ApiResource {
                name,
                singular_name: String::new(),
                namespaced: true,
                kind: "ExternalMetricValueList",
                verbs: vec!["get"],
            })
            .collect(),
    }
}

fn bytes<T: serde::Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs cannot fail (string keys, no maps with non-string keys).
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl Discovery {
    /// Serializes every discovery document for `cfg`.
    pub fn new(cfg: &AdapterConfig) -> Self {
        let list = ApiGroupList {
            kind: "APIGroupList",
            api_version: "v1",
            groups: vec![
                api_group(CUSTOM_GROUP, false),
                api_group(EXTERNAL_GROUP, false),
            ],
        };
        let version = env!("CARGO_PKG_VERSION");
        let mut parts = version.split('.');
        let major = parts.next().unwrap_or("0");
        let minor = parts.next().unwrap_or("0");
        Self {
            apis: bytes(&list),
            custom_group: bytes(&api_group(CUSTOM_GROUP, true)),
            external_group: bytes(&api_group(EXTERNAL_GROUP, true)),
            custom_v1beta1: bytes(&custom_resources(cfg, CustomVersion::V1beta1)),
            custom_v1beta2: bytes(&custom_resources(cfg, CustomVersion::V1beta2)),
            external_v1beta1: bytes(&external_resources(cfg)),
            // Every field of version.Info is filled: typed clients reject missing ones.
            version: bytes(&json!({
                "major": major,
                "minor": minor,
                "gitVersion": format!("v{version}"),
                "gitCommit": "",
                "gitTreeState": "",
                "buildDate": "",
                "goVersion": "",
                "compiler": "rustc",
                "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
            })),
        }
    }
}
