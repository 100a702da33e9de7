//! `tidescale replay`: the engine over recorded observations, with no cluster and no clock.
//!
//! The scenario and output formats are a contract (spec/scaling-policy.md "Replay"). When a
//! tick's decision differs from the current count and is not a dry run, it is applied: the
//! next tick starts from it (unless that tick gives `replicas`), and the scale event is
//! recorded at the tick's `t` for rate policies and cooldowns.

use serde_json::{Value, json};

use crate::engine::{Decision, Evaluator, Proposal, Replicas, Usage, fmt_milli};

mod scenario;

pub use scenario::{MetricEntry, Phase, PodEntry, Scenario, ScenarioError, Tick, parse_scenario};

/// One tick's outcome.
#[derive(Clone, Debug)]
pub struct TickOutcome {
    /// The tick's `t`, in seconds since the start.
    pub t: f64,
    /// The decision.
    pub decision: Decision,
    /// True when the decision was applied (the next tick starts from it).
    pub applied: bool,
}

impl TickOutcome {
    /// The text form: the tick, the counts, and the explanation line.
    pub fn text(&self) -> String {
        let d = &self.decision;
        let applied = if self.applied { " applied" } else { "" };
        format!(
            "t={} {}→{}{applied}: {d}",
            fmt_t(self.t),
            d.current,
            d.desired
        )
    }

    /// The JSON form: one object per tick, with the fields the spec lists (and a few more).
    pub fn json(&self) -> Value {
        let d = &self.decision;
        json!({
            "t": t_value(self.t),
            "current": d.current.0,
            "desired": d.desired.0,
            "applied": self.applied,
            "proposals": d.proposals.iter().map(proposal_json).collect::<Vec<_>>(),
            "reasons": d.reasons.iter().map(|r| json!({"kind": r.kind(), "text": r.to_string()})).collect::<Vec<_>>(),
            "line": d.to_string(),
        })
    }
}

fn fmt_t(t: f64) -> String {
    if t.fract() == 0.0 && t.abs() < 1e15 {
        format!("{}", t as i64)
    } else {
        format!("{t}")
    }
}

fn t_value(t: f64) -> Value {
    if t.fract() == 0.0 && t.abs() < 1e15 {
        json!(t as i64)
    } else {
        json!(t)
    }
}

fn proposal_json(p: &Proposal) -> Value {
    let value = match p.usage {
        Usage::Utilization(u) => format!("{u}%"),
        Usage::PerPod(v) | Usage::Total(v) | Usage::TotalPerReplica { total: v, .. } => {
            fmt_milli(v).to_string()
        }
    };
    json!({
        "metric": &*p.metric,
        "replicas": p.replicas.0,
        "ratio": p.ratio,
        "value": value,
        "withinTolerance": p.within_tolerance,
    })
}

/// Runs a checked scenario from the start, tick by tick.
pub fn run(scenario: &Scenario) -> Vec<TickOutcome> {
    let mut evaluator = Evaluator::new(scenario.policy.clone());
    let mut current = scenario.replicas;
    let mut out = Vec::with_capacity(scenario.ticks.len());
    for tick in &scenario.ticks {
        if let Some(r) = tick.replicas {
            current = Replicas(r);
        }
        let now = tick.time();
        let obs = tick.observation(&scenario.policy, current);
        let decision = evaluator.evaluate(&obs, now);
        let applied = decision.apply;
        if applied {
            evaluator.record_scale(current, decision.desired, now);
            current = decision.desired;
        }
        out.push(TickOutcome {
            t: tick.t,
            decision,
            applied,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
policy:
  targetRef: {kind: Deployment, name: web}
  maxReplicas: 20
  metrics:
    - name: cpu
      resource: {name: cpu}
      target: {type: Utilization, averageUtilization: 50}
    - name: rps
      scrape: {metric: http_requests_total, aggregate: {rate: {window: 15s}}}
      target: {type: AverageValue, averageValue: "100"}
    - name: p95
      scrape: {metric: lat, aggregate: {quantile: {q: 0.95, window: 30s}}}
      target: {type: Value, value: 250m}
  behavior: {}
replicas: 3
ticks:
  - t: 0
    pods:
      - {name: web-1, phase: Running, ready: true, started: -900, readySince: -880, requests: {cpu: 200m}}
      - {name: web-2, started: -900}
      - {name: web-3, started: -900}
      - {name: web-4, phase: Pending}
    metrics:
      cpu: {pods: {web-1: 300m, web-2: 300m, web-3: 300m}}
      rps: {value: "950"}
      p95: {error: "scrape timeout"}
  - t: 15
    replicas: 4
    metrics:
      cpu: {pods: {replica-1: 100m}}
      rps: {value: 400}
      p95: {value: 0.2}
"#;

    #[test]
    fn the_documented_scenario_runs() {
        let s = parse_scenario(SCENARIO).unwrap();
        let out = run(&s);
        assert_eq!(out.len(), 2);
        let first = &out[0];
        // cpu: 900m of 600m requested = 150% vs 50%, ratio 3 but web-4 is pending → refill.
        assert_eq!(first.decision.proposals[0].ratio, 3.0);
        assert!(first.applied);
        let j = first.json();
        assert_eq!(j["t"], 0);
        assert_eq!(j["current"], 3);
        assert_eq!(j["proposals"][0]["metric"], "cpu");
        assert!(
            j["line"]
                .as_str()
                .unwrap()
                .contains("p95 failed: scrape timeout")
        );
        // The second tick gives replicas itself: it starts from 4.
        assert_eq!(out[1].decision.current, Replicas(4));
        assert!(out[1].text().starts_with("t=15 4→"), "{}", out[1].text());
    }

    #[test]
    fn every_tick_problem_is_listed_with_its_location() {
        let bad = r#"
policy: {targetRef: {kind: D, name: w}, maxReplicas: 0, metrics: [{name: a, prometheus: {query: x}, target: {type: Value, value: 1}}]}
replicas: -1
ticks:
  - {t: 5, metrics: {a: {value: 1, error: boom}, b: {value: 2}}}
  - {t: 5, pods: [{name: x}, {name: x, requests: {gpu: 1}}]}
  - {t: 9, metrics: {a: {value: 12 apples}}}
  - {t: 10, extra: 1}
"#;
        let e = parse_scenario(bad).unwrap_err();
        let text = e.to_string();
        for want in [
            "policy.maxReplicas: must be ≥ 1, got 0",
            "replicas: expected a count ≥ 0, got -1",
            "ticks[0].metrics.a: give exactly one of pods (per-pod readings), value, error",
            "ticks[0].metrics.b: no metric of this name in the policy",
            "ticks[1].t: 5 is not after the previous tick's 5",
            "ticks[1].pods[1].name: duplicate pod name \"x\"",
            "ticks[1].pods[1].requests.gpu: unknown resource",
            "ticks[2].metrics.a.value: invalid quantity \"12 apples\"",
            "ticks[3].extra: unknown field `extra`",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), 10, "{text}");
    }
}
