//! Which policies should run a loop: validity, the conflict guard (a native HPA on the same
//! target, or an older policy) and sharding, decided over plain data so it is tested without
//! a cluster.

use std::collections::BTreeMap;

use super::status::{NotReady, PolicyKey};
use crate::spec::ScalingPolicySpec;

/// What the planner needs of a policy object.
#[derive(Clone, Debug)]
pub struct PolicyObject {
    /// Namespace and name.
    pub key: PolicyKey,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` (RFC 3339; orders policies on one target).
    pub created: String,
    /// The spec.
    pub spec: ScalingPolicySpec,
    /// The status it carries (conditions keep their transition times across restarts).
    pub status: Option<crate::spec::ScalingPolicyStatus>,
}

/// A native HPA's target, as the conflict guard sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpaTarget {
    /// The HPA's namespace and name.
    pub key: PolicyKey,
    /// `scaleTargetRef.apiVersion`.
    pub api_version: Option<String>,
    /// `scaleTargetRef.kind`.
    pub kind: String,
    /// `scaleTargetRef.name`.
    pub name: String,
}

/// The decision for one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Run its loop.
    Run,
    /// Report why not, and run nothing.
    Hold(NotReady),
    /// Another shard owns it.
    OtherShard,
}

fn group(api_version: Option<&str>) -> &str {
    api_version
        .and_then(|av| av.split_once('/').map(|(g, _)| g))
        .unwrap_or(match api_version {
            Some(_) => "",
            None => "apps",
        })
}

/// Places every policy. `in_shard` says whether a policy belongs to this process.
pub fn plan(
    policies: &[PolicyObject],
    hpas: &[HpaTarget],
    in_shard: impl Fn(&PolicyKey) -> bool,
) -> BTreeMap<PolicyKey, Placement> {
    let mut ordered: Vec<&PolicyObject> = policies.iter().collect();
    ordered.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    let mut owners: BTreeMap<(String, String, String, String), &PolicyKey> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for p in ordered {
        let placement = place(p, hpas, &mut owners);
        let placement = match placement {
            _ if !in_shard(&p.key) => Placement::OtherShard,
            pl => pl,
        };
        out.insert(p.key.clone(), placement);
    }
    out
}

fn place<'a>(
    p: &'a PolicyObject,
    hpas: &[HpaTarget],
    owners: &mut BTreeMap<(String, String, String, String), &'a PolicyKey>,
) -> Placement {
    if let Err(e) = p.spec.validate() {
        return Placement::Hold(NotReady::InvalidSpec(
            e.problems.iter().map(ToString::to_string).collect(),
        ));
    }
    let t = &p.spec.target_ref;
    let g = group(t.api_version.as_deref()).to_string();
    if let Some(h) = hpas.iter().find(|h| {
        h.key.namespace == p.key.namespace
            && h.kind == t.kind
            && h.name == t.name
            && group(h.api_version.as_deref()) == g
    }) {
        return Placement::Hold(NotReady::Conflicting {
            reason: "ConflictingHPA",
            message: format!(
                "{}/{} is already scaled by the HorizontalPodAutoscaler {}",
                t.kind, t.name, h.key.name
            ),
        });
    }
    let target = (p.key.namespace.clone(), g, t.kind.clone(), t.name.clone());
    if let Some(owner) = owners.get(&target) {
        return Placement::Hold(NotReady::Conflicting {
            reason: "ConflictingPolicy",
            message: format!(
                "{}/{} is already scaled by the older ScalingPolicy {}",
                t.kind, t.name, owner.name
            ),
        });
    }
    owners.insert(target, &p.key);
    Placement::Run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, created: &str, target: &str, max: i32) -> PolicyObject {
        let spec = serde_json::from_value(serde_json::json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "maxReplicas": max,
            "metrics": [{"name": "rps", "prometheus": {"query": "sum(rate(x[1m]))"},
                "target": {"type": "Value", "value": 10}}]
        }))
        .unwrap();
        PolicyObject {
            key: PolicyKey {
                namespace: "shop".into(),
                name: name.into(),
            },
            uid: format!("uid-{name}"),
            generation: Some(1),
            created: created.into(),
            spec,
            status: None,
        }
    }

    #[test]
    fn the_older_policy_wins_a_target_and_an_hpa_beats_both() {
        let ps = [
            policy("newer", "2026-01-02T00:00:00Z", "web", 5),
            policy("older", "2026-01-01T00:00:00Z", "web", 5),
            policy("api", "2026-01-03T00:00:00Z", "api", 5),
            policy("bad", "2026-01-03T00:00:00Z", "other", 0),
        ];
        let hpas = [HpaTarget {
            key: PolicyKey {
                namespace: "shop".into(),
                name: "api-hpa".into(),
            },
            api_version: Some("apps/v1".into()),
            kind: "Deployment".into(),
            name: "api".into(),
        }];
        let plan = plan(&ps, &hpas, |_| true);
        let get = |n: &str| {
            plan[&PolicyKey {
                namespace: "shop".into(),
                name: n.into(),
            }]
                .clone()
        };
        assert_eq!(get("older"), Placement::Run);
        assert!(
            matches!(get("newer"), Placement::Hold(NotReady::Conflicting { reason: "ConflictingPolicy", ref message }) if message.contains("older"))
        );
        assert!(
            matches!(get("api"), Placement::Hold(NotReady::Conflicting { reason: "ConflictingHPA", ref message }) if message.contains("api-hpa"))
        );
        assert!(
            matches!(get("bad"), Placement::Hold(NotReady::InvalidSpec(ref p)) if p.iter().any(|l| l.contains("maxReplicas")))
        );
    }

    #[test]
    fn a_policy_of_another_shard_is_not_run_but_still_owns_its_target() {
        let ps = [
            policy("a", "2026-01-01T00:00:00Z", "web", 5),
            policy("b", "2026-01-02T00:00:00Z", "web", 5),
        ];
        let plan = plan(&ps, &[], |k| k.name == "b");
        assert_eq!(plan.values().filter(|p| **p == Placement::Run).count(), 0);
        assert!(matches!(
            &plan[&ps[1].key],
            Placement::Hold(NotReady::Conflicting { .. })
        ));
    }
}
