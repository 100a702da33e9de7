//! Tests of the spec types, their CRD, loading and validation.

use kube::CustomResourceExt;

use super::*;
use crate::engine::{
    Confidence, FlapBudget, Normalization, OnError, RatePolicy, Replicas, Resource, Seconds,
    SelectPolicy, Target,
};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/policies/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_documented_example_loads_and_validates() {
    let (spec, policy) = load_policy_yaml(&fixture("web.yaml")).unwrap();
    assert_eq!(spec.max_replicas, 20);
    assert_eq!(spec.interval(), std::time::Duration::from_secs(5));
    assert_eq!(policy.min_replicas, Replicas(1));
    assert_eq!(policy.max_replicas, Replicas(20));
    let names: Vec<&str> = policy.metrics.iter().map(|m| &*m.name).collect();
    assert_eq!(names, ["cpu", "memory", "rps", "p95", "queue"]);
    assert_eq!(policy.metrics[0].target, Target::Utilization(60));
    assert_eq!(policy.metrics[0].resource, Some(Resource::Cpu));
    assert_eq!(
        policy.metrics[1].target,
        Target::AverageValue(400 * 1024 * 1024 * 1000)
    );
    assert_eq!(policy.metrics[1].resource, Some(Resource::Memory));
    assert_eq!(policy.metrics[2].resource, None);
    assert_eq!(policy.metrics[2].target, Target::AverageValue(100_000));
    assert_eq!(policy.metrics[3].target, Target::Value(250));
    assert_eq!(policy.on_error, OnError::Hold);
    let Normalization::Behavior(b) = &policy.normalization else {
        panic!("behavior expected")
    };
    assert_eq!(
        b.scale_up.policies,
        [RatePolicy::pods(4, 15), RatePolicy::percent(100, 15)]
    );
    assert_eq!(b.scale_down.stabilization_window, Seconds(300));
}

#[test]
fn defaults_are_the_hpas() {
    let yaml = "targetRef: {kind: ProcessPool, name: demo}\nmaxReplicas: 4\nmetrics:\n  - name: q\n    prometheus: {query: 'sum(x)'}\n    target: {type: Value, value: 10}\n";
    let (spec, policy) = load_policy_yaml(yaml).unwrap();
    assert_eq!(spec.min_replicas, 1);
    assert_eq!(policy.min_replicas, Replicas(1));
    assert_eq!(
        policy.normalization,
        Normalization::Legacy {
            downscale_window: Seconds(300)
        }
    );
    assert_eq!(policy.tolerance.up, 0.1);
    assert!(!policy.dry_run);
    // A behavior with only scaleUp set fills scaleDown with the HPA's defaults.
    let yaml2 =
        format!("{yaml}behavior: {{scaleUp: {{selectPolicy: Disabled, cooldownSeconds: 30}}}}\n");
    let (_, p2) = load_policy_yaml(&yaml2).unwrap();
    let Normalization::Behavior(b) = p2.normalization else {
        panic!()
    };
    assert_eq!(b.scale_up.select, SelectPolicy::Disabled);
    assert_eq!(b.scale_up.cooldown, Seconds(30));
    assert_eq!(
        b.scale_down,
        crate::engine::Behavior::hpa_default().scale_down
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let err = load_policy_yaml(&fixture("broken.yaml")).unwrap_err();
    let text = err.to_string();
    let expect = [
        "spec: unknown field `colour`",
        "spec.metrics[0].scrape.metrik: unknown field `metrik`",
        "spec.minReplicas: minReplicas 5 is greater than maxReplicas 3",
        "spec.interval: must be at least 250ms",
        "spec.metrics[1].target.type: Utilization needs a resource metric",
        "spec.metrics[2]: has more than one source",
        "spec.metrics[2].target.type: a resource metric takes Utilization or AverageValue",
        "spec.metrics[2].target.value: required for type Value",
        "spec.behavior.scaleUp.stabilizationWindowSeconds: must be between 0 and 3600, got 4000",
        "spec.behavior.scaleUp.policies[0].value: must be positive, got 0",
        "spec.behavior.scaleDown.policies[0].periodSeconds: must be between 1 and 1800, got 3600",
        "spec.behavior.scaleDown.tolerance: must be a number ≥ 0, got -1",
        "spec.onMetricError.replicas: Fallback needs the number of replicas",
    ];
    for e in expect {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), expect.len(), "{text}");
}

#[test]
fn duplicate_names_and_wrong_target_fields_are_named() {
    let yaml = r#"
targetRef: {kind: Deployment, name: web}
maxReplicas: 5
metrics:
  - {name: a, prometheus: {query: x}, target: {type: Value, value: 1, averageValue: 2}}
  - {name: a, prometheus: {query: y}, target: {type: AverageValue, averageValue: "-1"}}
  - {name: c, target: {type: Value, value: 1}}
onMetricError: {action: Fallback, replicas: 9}
"#;
    let text = load_policy_yaml(yaml).unwrap_err().to_string();
    assert!(
        !text.contains("query"),
        "`y` is a string, not a boolean: {text}"
    );
    for e in [
        "spec.metrics[0].target.averageValue: not used by type Value",
        "spec.metrics[1].name: duplicate metric name \"a\"",
        "spec.metrics[1].target.averageValue: must be positive, got -1",
        "spec.metrics[2]: needs a source",
        "spec.onMetricError.replicas: 9 is outside [minReplicas, maxReplicas] = [1, 5]",
    ] {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

#[test]
fn structural_errors_in_several_places_are_all_listed() {
    let yaml = r#"
targetRef: {kind: Deployment}
maxReplicas: many
metrics:
  - {name: a, prometheus: {query: x}, target: {type: Valu, value: 1}}
  - {name: b, prometheus: {query: x, timeout: forever}, target: {type: Value, value: 1}}
behavior: {scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 1, extra: 1}]}, sideways: {}}
"#;
    let text = load_policy_yaml(yaml).unwrap_err().to_string();
    for e in [
        "spec.targetRef: missing field `name`",
        "spec.maxReplicas: invalid type",
        "spec.metrics[0].target.type: unknown variant `Valu`",
        "spec.metrics[1].prometheus.timeout: invalid duration \"forever\"",
        "spec.behavior: unknown field `sideways`",
        "spec.behavior.scaleUp.policies[0].extra: unknown field `extra`",
    ] {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

#[test]
fn a_wrong_kind_is_reported() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nspec: {targetRef: {kind: D, name: w}, maxReplicas: 2, metrics: [{name: a, prometheus: {query: x}, target: {type: Value, value: 1}}]}\n";
    let text = load_policy_yaml(yaml).unwrap_err().to_string();
    assert!(
        text.contains("apiVersion: expected tidescale.io/v1alpha1"),
        "{text}"
    );
    assert!(text.contains("kind: expected ScalingPolicy"), "{text}");
}

#[test]
fn crd_has_the_documented_shape() {
    let crd = ScalingPolicy::crd();
    assert_eq!(crd.spec.group, "tidescale.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["sp".to_string()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        cols,
        [
            "Min",
            "Max",
            "Current",
            "Desired",
            "Last Scale",
            "Reason",
            "Age"
        ]
    );
    let yaml = serde_saphyr::to_string(&crd).unwrap();
    assert!(
        yaml.contains("x-kubernetes-int-or-string"),
        "quantities are int-or-string"
    );
}

#[test]
fn spec_round_trips_through_yaml() {
    let (spec, _) = load_policy_yaml(&fixture("web.yaml")).unwrap();
    let text = serde_saphyr::to_string(&spec).unwrap();
    let back: ScalingPolicySpec = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(back, spec);
}

const CALM_BASE: &str = "targetRef: {kind: ProcessPool, name: demo}\nmaxReplicas: 10\nmetrics:\n  - name: q\n    prometheus: {query: 'sum(x)'}\n    target: {type: AverageValue, averageValue: 100}\n";

#[test]
fn confidence_and_flap_budget_reach_the_engine() {
    let yaml = format!(
        "{CALM_BASE}behavior:\n  scaleDown: {{stabilizationWindowSeconds: 0, confidence: 0.95, sampleWindowSeconds: 45}}\n  maxReversals: {{count: 2, windowSeconds: 600}}\n"
    );
    let (spec, policy) = load_policy_yaml(&yaml).unwrap();
    let Normalization::Behavior(b) = &policy.normalization else {
        panic!("behavior expected")
    };
    assert_eq!(
        b.confidence,
        Some(Confidence {
            level: 0.95,
            sample_window: Seconds(45)
        })
    );
    assert_eq!(
        b.max_reversals,
        Some(FlapBudget {
            count: 2,
            window: Seconds(600)
        })
    );
    let back: ScalingPolicySpec =
        serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn the_sample_window_defaults_to_the_stabilization_window_or_a_minute() {
    let window = |down: &str| {
        let yaml = format!("{CALM_BASE}behavior:\n  scaleDown: {{{down}confidence: 0.9}}\n");
        let (_, policy) = load_policy_yaml(&yaml).unwrap();
        let Normalization::Behavior(b) = policy.normalization else {
            panic!("behavior expected")
        };
        b.confidence.unwrap().sample_window
    };
    assert_eq!(window(""), Seconds(300));
    assert_eq!(window("stabilizationWindowSeconds: 30, "), Seconds(30));
    assert_eq!(window("stabilizationWindowSeconds: 0, "), Seconds(60));
}

#[test]
fn without_the_new_fields_nothing_changes() {
    let yaml = format!("{CALM_BASE}behavior:\n  scaleDown: {{stabilizationWindowSeconds: 30}}\n");
    let (_, policy) = load_policy_yaml(&yaml).unwrap();
    let Normalization::Behavior(b) = policy.normalization else {
        panic!("behavior expected")
    };
    assert_eq!((b.confidence, b.max_reversals), (None, None));
}

#[test]
fn every_calm_problem_is_reported_at_once_with_its_path() {
    let yaml = format!(
        "{CALM_BASE}behavior:\n  scaleUp: {{confidence: 0.9, sampleWindowSeconds: 30}}\n  scaleDown: {{confidence: 1.0, sampleWindowSeconds: 0}}\n  maxReversals: {{count: -1, windowSeconds: 0}}\n"
    );
    let err = load_policy_yaml(&yaml).unwrap_err();
    let text = err.to_string();
    let expect = [
        "spec.behavior.scaleUp.confidence: only scaleDown has a confidence check",
        "spec.behavior.scaleUp.sampleWindowSeconds: only scaleDown has a confidence check",
        "spec.behavior.scaleDown.sampleWindowSeconds: must be between 1 and 3600, got 0",
        "spec.behavior.scaleDown.confidence: must be a number between 0.5 and 1 (exclusive), e.g. 0.95, got 1",
        "spec.behavior.maxReversals.count: must be ≥ 0, got -1",
        "spec.behavior.maxReversals.windowSeconds: must be between 1 and 3600, got 0",
    ];
    for e in expect {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), expect.len(), "{text}");
}

#[test]
fn a_sample_window_without_confidence_and_unknown_budget_fields_are_named() {
    let problem = |behavior: &str| {
        let yaml = format!("{CALM_BASE}behavior:\n{behavior}");
        load_policy_yaml(&yaml).unwrap_err().to_string()
    };
    let text = problem("  scaleDown: {sampleWindowSeconds: 30}\n");
    assert!(
        text.contains(
            "spec.behavior.scaleDown.sampleWindowSeconds: has no effect without confidence"
        ),
        "{text}"
    );
    let text = problem("  maxReversals: {count: 1, windowSeconds: 60, every: 3}\n");
    assert!(
        text.contains("spec.behavior.maxReversals.every: unknown field `every`"),
        "{text}"
    );
}
