//! Validation of one metric of a spec: exactly one source, sensible source settings, and a
//! target whose type, fields and values fit the metric.

use crate::engine::{MetricPolicy, Resource, Target};
use crate::metric::Quantity;
use crate::source::{Aggregate, ResourceName};

use super::super::{MetricSpec, MetricTarget, TargetKind};

/// Checks one metric at `path`; returns the engine's view of it when its target is usable.
pub(super) fn check_metric(
    m: &MetricSpec,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> Option<MetricPolicy> {
    check_source(m, path, report);
    let target = check_target(
        &m.target,
        m.resource.is_some(),
        &format!("{path}.target"),
        report,
    );
    let resource = m.resource.as_ref().map(|r| match r.name {
        ResourceName::Cpu => Resource::Cpu,
        ResourceName::Memory => Resource::Memory,
    });
    target.map(|target| MetricPolicy {
        name: m.name.as_str().into(),
        target,
        resource,
    })
}

/// Exactly one source block, and its settings.
fn check_source(m: &MetricSpec, path: &str, report: &mut impl FnMut(String, String)) {
    let sources = [
        m.scrape.is_some(),
        m.prometheus.is_some(),
        m.resource.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => report(
            path.to_string(),
            "needs a source: one of scrape, prometheus, resource".into(),
        ),
        1 => {}
        _ => report(
            path.to_string(),
            "has more than one source: give exactly one of scrape, prometheus, resource".into(),
        ),
    }
    if let Some(s) = &m.scrape {
        if s.metric.trim().is_empty() {
            report(format!("{path}.scrape.metric"), "must not be empty".into());
        }
        if let Some(Aggregate::Quantile { q, .. }) = &s.aggregate
            && !(*q > 0.0 && *q < 1.0)
        {
            report(
                format!("{path}.scrape.aggregate.quantile.q"),
                format!("must be between 0 and 1 (exclusive), got {q}"),
            );
        }
        let window = match &s.aggregate {
            Some(Aggregate::Rate { window }) => Some(("rate", window)),
            Some(Aggregate::Quantile { window, .. }) => Some(("quantile", window)),
            _ => None,
        };
        if let Some((kind, w)) = window
            && w.get().is_zero()
        {
            report(
                format!("{path}.scrape.aggregate.{kind}.window"),
                "must be longer than 0s".into(),
            );
        }
    }
    if let Some(p) = &m.prometheus
        && p.query.trim().is_empty()
    {
        report(
            format!("{path}.prometheus.query"),
            "must not be empty".into(),
        );
    }
}

/// The target: the field its type uses, and only that one, with a positive value.
fn check_target(
    t: &MetricTarget,
    is_resource: bool,
    tpath: &str,
    report: &mut impl FnMut(String, String),
) -> Option<Target> {
    let set = [
        ("averageUtilization", t.average_utilization.is_some()),
        ("averageValue", t.average_value.is_some()),
        ("value", t.value.is_some()),
    ];
    let wanted = match t.kind {
        TargetKind::Utilization => "averageUtilization",
        TargetKind::AverageValue => "averageValue",
        TargetKind::Value => "value",
    };
    for (field, present) in set {
        if present && field != wanted {
            report(
                format!("{tpath}.{field}"),
                format!("not used by type {:?} (set {wanted} instead)", t.kind),
            );
        }
    }
    match t.kind {
        TargetKind::Utilization => {
            if !is_resource {
                report(
                    format!("{tpath}.type"),
                    "Utilization needs a resource metric (the pods' requests are the 100%)".into(),
                );
            }
            let value = t.average_utilization.map(|u| (u.to_string(), i64::from(u)));
            positive(value, t, tpath, "averageUtilization", report)
                .map(|u| Target::Utilization(u as i32))
        }
        TargetKind::AverageValue => {
            let value = t.average_value.as_ref().map(written);
            positive(value, t, tpath, "averageValue", report).map(Target::AverageValue)
        }
        TargetKind::Value => {
            if is_resource {
                report(
                    format!("{tpath}.type"),
                    "a resource metric takes Utilization or AverageValue, not Value".into(),
                );
            }
            let value = t.value.as_ref().map(written);
            positive(value, t, tpath, "value", report).map(Target::Value)
        }
    }
}

/// A quantity as the user wrote it, and its value in milli-units.
fn written(q: &Quantity) -> (String, i64) {
    (q.to_string(), q.milli_value())
}

/// The value of a required target field when it is present and positive; `value` is the
/// field as written and as a number.
fn positive(
    value: Option<(String, i64)>,
    t: &MetricTarget,
    tpath: &str,
    field: &str,
    report: &mut impl FnMut(String, String),
) -> Option<i64> {
    match value {
        None => {
            report(
                format!("{tpath}.{field}"),
                format!("required for type {:?}", t.kind),
            );
            None
        }
        Some((text, n)) if n <= 0 => {
            report(
                format!("{tpath}.{field}"),
                format!("must be positive, got {text}"),
            );
            None
        }
        Some((_, n)) => Some(n),
    }
}
