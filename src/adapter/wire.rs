//! The JSON wire types of the metrics APIs, discovery and `metav1.Status` (spec §1.3–§1.8, §2).
//!
//! Written by hand because no published crate can build server-side values of these kinds; field
//! order and `omitempty` behaviour follow the Go types so golden files compare byte for byte.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The custom metrics API group.
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
/// The external metrics API group.
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";

/// Which custom metrics API version a request used (R1.16, R1.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CustomVersion {
    /// `v1beta1`: `metricName`, `selector`, `window`.
    V1beta1,
    /// `v1beta2`: `metric{name,selector}`, `windowSeconds`.
    V1beta2,
}

impl CustomVersion {
    /// The version as it appears in paths.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomVersion::V1beta1 => "v1beta1",
            CustomVersion::V1beta2 => "v1beta2",
        }
    }
}

/// `metadata` of a list: Go always emits `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ListMeta {}

/// A core/v1 `ObjectReference` (R1.23–R1.27), all fields omitempty in Go's order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// `Pod`, `Deployment`, `Namespace`, …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Empty for root-scoped objects.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `v1`, `apps/v1`, …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
}

/// One custom metric value, v1beta1 field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1beta1 {
    /// The object the value describes.
    pub described_object: ObjectReference,
    /// The metric's name.
    pub metric_name: String,
    /// RFC 3339, whole seconds, UTC.
    pub timestamp: String,
    /// Seconds the value was computed over; absent for instantaneous values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Canonical quantity string.
    pub value: String,
    /// The parsed `metricLabelSelector`, or `null`.
    pub selector: Option<Value>,
}

/// The `metric` object of a v1beta2 value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricIdentifier {
    /// The metric's name.
    pub name: String,
    /// The parsed `metricLabelSelector`, or `null` (no omitempty).
    pub selector: Option<Value>,
}

/// One custom metric value, v1beta2 field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1beta2 {
    /// The object the value describes.
    pub described_object: ObjectReference,
    /// Name and selector.
    pub metric: MetricIdentifier,
    /// RFC 3339, whole seconds, UTC.
    pub timestamp: String,
    /// Seconds the value was computed over; absent for instantaneous values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    /// Canonical quantity string.
    pub value: String,
}

/// A `MetricValueList` of either version (`items` never omitted).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueList<T> {
    /// Always `MetricValueList`.
    pub kind: &'static str,
    /// `custom.metrics.k8s.io/<version>`.
    pub api_version: String,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// The values.
    pub items: Vec<T>,
}

/// One external metric series value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    /// The metric's name.
    pub metric_name: String,
    /// The series' labels (`{}` when none, never `null`).
    pub metric_labels: BTreeMap<String, String>,
    /// RFC 3339, whole seconds, UTC.
    pub timestamp: String,
    /// Seconds the value was computed over; absent for instantaneous values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Canonical quantity string.
    pub value: String,
}

/// An `ExternalMetricValueList`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    /// Always `ExternalMetricValueList`.
    pub kind: &'static str,
    /// Always `external.metrics.k8s.io/v1beta1`.
    pub api_version: &'static str,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// The series.
    pub items: Vec<ExternalMetricValue>,
}

impl<T> MetricValueList<T> {
    /// A list for `version`.
    pub fn new(version: CustomVersion, items: Vec<T>) -> Self {
        Self {
            kind: "MetricValueList",
            api_version: format!("{CUSTOM_GROUP}/{}", version.as_str()),
            metadata: ListMeta {},
            items,
        }
    }
}

/// Bytes a serialized custom metric item takes, roughly: sizes the output buffer up front so a
/// 10,000-item list is written without the buffer doubling (and copying) on the way.
const ITEM_BYTES_ESTIMATE: usize = 320;

impl<T: Serialize> MetricValueList<T> {
    /// Serializes a list for `version` whose items are made one at a time by `items`, so that
    /// only the output (never a `Vec` of every item as well) is in memory at once.
    pub fn write_streamed(
        version: CustomVersion,
        count: usize,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        // The envelope comes from the type itself (field order and all), with the items spliced
        // into its empty `items` array.
        let empty = serde_json::to_vec(&MetricValueList::<T>::new(version, Vec::new()))?;
        let head = empty
            .strip_suffix(b"[]}")
            .expect("a serialized MetricValueList ends with its empty items array");
        let mut out = Vec::with_capacity(empty.len() + count.saturating_mul(ITEM_BYTES_ESTIMATE));
        out.extend_from_slice(head);
        out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &item)?;
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

impl ExternalMetricValueList {
    /// A list of `items`.
    pub fn new(items: Vec<ExternalMetricValue>) -> Self {
        Self {
            kind: "ExternalMetricValueList",
            api_version: "external.metrics.k8s.io/v1beta1",
            metadata: ListMeta {},
            items,
        }
    }
}

/// One entry of an `APIResourceList` (R2.3, R2.4).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    /// `pods/<metric>` or `<metric>`.
    pub name: String,
    /// Always `""`, always emitted.
    pub singular_name: String,
    /// Scope of the described resource.
    pub namespaced: bool,
    /// `MetricValueList` or `ExternalMetricValueList`.
    pub kind: &'static str,
    /// Always `["get"]`.
    pub verbs: Vec<&'static str>,
}

/// `APIResourceList`, served at `/apis/<group>/<version>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    /// Always `APIResourceList`.
    pub kind: &'static str,
    /// Always `v1`.
    pub api_version: &'static str,
    /// `<group>/<version>`.
    pub group_version: String,
    /// Never empty (R2.5).
    pub resources: Vec<ApiResource>,
}

/// A version of a group in discovery.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersionForDiscovery {
    /// `<group>/<version>`.
    pub group_version: String,
    /// `<version>`.
    pub version: String,
}

/// `APIGroup` (R2.9); also the element type of `APIGroupList.groups` (without kind/apiVersion).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    /// `APIGroup` at top level, absent inside a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// `v1` at top level, absent inside a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<&'static str>,
    /// The group's name.
    pub name: String,
    /// Served versions, preferred first.
    pub versions: Vec<GroupVersionForDiscovery>,
    /// The preferred version.
    pub preferred_version: GroupVersionForDiscovery,
}

/// `APIGroupList` served at `/apis` (R2.8).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    /// Always `APIGroupList`.
    pub kind: &'static str,
    /// Always `v1`.
    pub api_version: &'static str,
    /// The served groups.
    pub groups: Vec<ApiGroup>,
}

/// `details` of a `Status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusDetails {
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The API group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource (R1.45 puts the resource here).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// `metav1.Status`, the body of every error (§1.8).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `Status`.
    pub kind: &'static str,
    /// Always `v1`.
    pub api_version: &'static str,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// Always `Failure`.
    pub status: &'static str,
    /// For people.
    pub message: String,
    /// `NotFound`, `BadRequest`, …; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<StatusDetails>>,
    /// The HTTP status.
    pub code: u16,
}

impl Status {
    /// A failure with `code`, `reason` (may be empty) and `message`.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Failure",
            message: message.into(),
            reason: reason.to_string(),
            details: None,
            code,
        }
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::failure(404, "NotFound", message)
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, "BadRequest", message)
    }

    /// 401 `Unauthorized`.
    pub fn unauthorized() -> Self {
        Self::failure(401, "Unauthorized", "Unauthorized")
    }

    /// 500 with no reason (the default branch of `ErrorToAPIStatus`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::failure(500, "", message)
    }
}

/// `Some(seconds)` as RFC 3339 in UTC with whole seconds (R1.36), e.g. `2025-03-01T10:15:30Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), valid for the whole i64 day range we care about.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_740_824_130), "2025-03-01T10:15:30Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn status_omits_empty_reason_and_details() {
        let s = serde_json::to_string(&Status::internal("boom")).unwrap();
        assert_eq!(
            s,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"boom","code":500}"#
        );
    }
}
