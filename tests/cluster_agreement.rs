//! Agreement with the real HPA controller: four scenarios run against kube-controller-manager
//! at once (each an HPA on its own external metric, `AverageValue` 10). For every HPA sync we
//! record the value the adapter served to the HPA (from the adapter's `served` log, with its
//! time) and what the HPA decided (`status.desiredReplicas`, watched). Then `tidescale replay`
//! runs over the same observations and behaviour, and the two replica sequences must agree on
//! every sync.

mod cluster_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{
    AdapterProcess, Cluster, Deadline, Exposition, Served, deployment_yaml, now_epoch, replicas,
};
use tokio::io::AsyncBufReadExt;

const HPA_USER: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

struct Scenario {
    /// HPA, Deployment and metric name (`agree_<name>`).
    name: &'static str,
    what: &'static str,
    initial: u32,
    max: u32,
    behavior: &'static str,
    /// (seconds to hold, total value): the external metric's value over time.
    steps: &'static [(f64, f64)],
}

static SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "up",
        what: "a step up limited by the default scale-up policies (Pods 4 / Percent 100 per 15 s)",
        initial: 1,
        max: 20,
        behavior: "{scaleDown: {stabilizationWindowSeconds: 21}}",
        steps: &[(6.0, 10.0), (50.0, 200.0)],
    },
    Scenario {
        name: "hold",
        what: "a scale-down held by a 21 s stabilization window",
        initial: 6,
        max: 20,
        behavior: "{scaleDown: {stabilizationWindowSeconds: 21}}",
        steps: &[(6.0, 60.0), (32.0, 20.0)],
    },
    Scenario {
        name: "tolerance",
        what: "changes inside the 10 % tolerance (exactly 1.1 and 0.9), then outside it",
        initial: 4,
        max: 20,
        behavior: "{scaleDown: {stabilizationWindowSeconds: 0}}",
        steps: &[
            (6.0, 40.0),
            (8.0, 44.0),
            (8.0, 36.0),
            (8.0, 46.0),
            (8.0, 39.0),
        ],
    },
    Scenario {
        name: "min",
        what: "custom behavior, Percent and Pods policies with selectPolicy Min, up and down",
        initial: 2,
        max: 20,
        behavior: "{scaleUp: {selectPolicy: Min, policies: [{type: Percent, value: 50, periodSeconds: 15}, {type: Pods, value: 3, periodSeconds: 15}]}, scaleDown: {stabilizationWindowSeconds: 0, selectPolicy: Min, policies: [{type: Percent, value: 50, periodSeconds: 15}, {type: Pods, value: 1, periodSeconds: 15}]}}",
        steps: &[(6.0, 20.0), (40.0, 200.0), (26.0, 10.0)],
    },
];

fn series(s: &Scenario) -> String {
    format!("agree_{}", s.name)
}

fn adapter_config(page: &str) -> String {
    let mut cfg = String::from("interval: 1s\nexternalMetrics:\n");
    for s in &SCENARIOS {
        let m = series(s);
        cfg += &format!("- name: {m}\n  scrape: {{endpoints: [\"{page}\"], metric: {m}}}\n");
    }
    cfg
}

fn hpa_yaml(ns: &str, s: &Scenario) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: {max}
  metrics: [{{type: External, external: {{metric: {{name: {m}}}, target: {{type: AverageValue, averageValue: "10"}}}}}}]
  behavior: {behavior}
"#,
        name = s.name,
        max = s.max,
        m = series(s),
        behavior = s.behavior
    )
}

/// The same policy for `tidescale replay`, and one tick per HPA sync with the value served.
fn replay_yaml(s: &Scenario, ticks: &[Served]) -> String {
    let m = series(s);
    let mut y = format!(
        "policy:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  \
         minReplicas: 1\n  maxReplicas: {max}\n  metrics:\n  - name: {m}\n    \
         prometheus: {{query: '{m}'}}\n    target: {{type: AverageValue, averageValue: \"10\"}}\n  \
         behavior: {behavior}\nreplicas: {initial}\nticks:\n",
        name = s.name,
        max = s.max,
        behavior = s.behavior,
        initial = s.initial
    );
    let t0 = ticks[0].at;
    for t in ticks {
        y += &format!(
            "- {{t: {:.3}, metrics: {{{m}: {{value: \"{}m\"}}}}}}\n",
            t.at - t0,
            t.total_milli()
        );
    }
    y
}

/// (time received, HPA name, status.desiredReplicas) from a watch on the namespace's HPAs.
type Decisions = Arc<Mutex<Vec<(f64, String, i64)>>>;

fn watch_hpas(c: &Cluster, ns: &str) -> (tokio::process::Child, Decisions) {
    let mut child = tokio::process::Command::new(cluster_support::kubectl_path())
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["-n", ns, "get", "hpa", "--watch", "-o"])
        .arg("jsonpath={.metadata.name} {.status.desiredReplicas}{\"\\n\"}")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl watch starts");
    let seen: Decisions = Arc::default();
    let out = child.stdout.take().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut f = line.split_whitespace();
            if let (Some(name), Some(Ok(d))) = (f.next(), f.next().map(str::parse::<i64>)) {
                s.lock().unwrap().push((now_epoch(), name.to_string(), d));
            }
        }
    });
    (child, seen)
}

/// What the HPA had decided after each of its syncs: the last desiredReplicas written before
/// its next request (the status write follows the request within milliseconds).
fn hpa_sequence(ticks: &[Served], decisions: &[(f64, String, i64)], name: &str) -> Vec<i64> {
    (0..ticks.len())
        .map(|i| {
            let until = ticks.get(i + 1).map_or(f64::INFINITY, |t| t.at);
            decisions
                .iter()
                .filter(|(at, n, _)| n == name && *at < until && *at > ticks[i].at)
                .map(|(_, _, d)| *d)
                .next_back()
                .unwrap_or_else(|| {
                    // No write after this sync: the decision did not change.
                    decisions
                        .iter()
                        .filter(|(at, n, _)| n == name && *at < ticks[i].at)
                        .map(|(_, _, d)| *d)
                        .next_back()
                        .unwrap_or(-1)
                })
        })
        .collect()
}

fn replay(file: &std::path::Path) -> Vec<(i64, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("replay")
        .arg(file)
        .arg("--json")
        .output()
        .expect("tidescale replay runs");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["desired"].as_i64().unwrap(),
                v["line"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_agrees_with_the_real_hpa_on_every_sync() {
    let c = Cluster::require();
    let ns = c.namespace("agree").await;
    let page = Arc::new(Exposition::start(&c.host_ip).await);
    for s in &SCENARIOS {
        page.set(&series(s), s.steps[0].1);
        c.apply(&deployment_yaml(&ns, s.name, s.initial)).await;
    }
    for s in &SCENARIOS {
        let want = i64::from(s.initial);
        let deadline = Deadline::new("the initial replicas", 90);
        while replicas(&c, &ns, s.name).await != (want, want) {
            deadline.tick().await;
        }
    }
    let adapter = AdapterProcess::start(&c, &adapter_config(&page.url)).await;
    let (watch, decisions) = watch_hpas(&c, &ns);
    for s in &SCENARIOS {
        c.apply(&hpa_yaml(&ns, s)).await;
    }
    let drivers: Vec<_> = SCENARIOS
        .iter()
        .map(|s| {
            let page = page.clone();
            tokio::spawn(async move {
                for &(hold, value) in s.steps {
                    page.set(&series(s), value);
                    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
                }
            })
        })
        .collect();
    for d in drivers {
        d.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(watch);
    let served = adapter.served();
    adapter.stop().await;
    c.kubectl_ok(&["-n", &ns, "delete", "hpa", "--all"]).await;

    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-agreement");
    std::fs::create_dir_all(&out_dir).unwrap();
    let decisions = decisions.lock().unwrap().clone();
    let mut failures = vec![];
    for s in &SCENARIOS {
        let path_end = format!("/{}", series(s));
        let ticks: Vec<Served> = served
            .iter()
            .filter(|x| x.user == HPA_USER && x.path.ends_with(&path_end))
            .cloned()
            .collect();
        assert!(
            ticks.len() >= 10,
            "{}: only {} HPA syncs recorded",
            s.name,
            ticks.len()
        );
        let hpa = hpa_sequence(&ticks, &decisions, s.name);
        let file = out_dir.join(format!("{}.yaml", s.name));
        std::fs::write(&file, replay_yaml(s, &ticks)).unwrap();
        let ours = replay(&file);
        let mut report = format!("scenario {} — {}: {} syncs\n", s.name, s.what, ticks.len());
        let mut agree = ours.len() == hpa.len();
        for (i, t) in ticks.iter().enumerate() {
            let (d, line) = ours.get(i).cloned().unwrap_or((-1, String::new()));
            let mark = if d == hpa[i] { " " } else { "✗" };
            agree &= d == hpa[i];
            report += &format!(
                "{mark} t={:7.3} value={:>8} hpa={:>2} replay={:>2}  {line}\n",
                t.at - ticks[0].at,
                format!("{}m", t.total_milli()),
                hpa[i],
                d
            );
        }
        std::fs::write(out_dir.join(format!("{}.txt", s.name)), &report).unwrap();
        eprintln!("{report}");
        if !agree {
            failures.push(s.name);
        }
        check_exercised(s, &hpa);
    }
    assert!(
        failures.is_empty(),
        "replay and the real HPA disagree in {failures:?} (reports in {})",
        out_dir.display()
    );
}

/// Each scenario really showed what it is about (else agreement would prove little).
fn check_exercised(s: &Scenario, hpa: &[i64]) {
    let distinct: Vec<i64> = hpa.iter().fold(vec![], |mut v, &d| {
        if v.last() != Some(&d) {
            v.push(d);
        }
        v
    });
    let want: &[i64] = match s.name {
        // 1 → 5 (Pods 4 beats Percent 100) → 10 (Percent) → 20 (Percent, max).
        "up" => &[1, 5, 10, 20],
        // 6 held for the window, then 2 at once (Percent 100).
        "hold" => &[6, 2],
        // 4 through 44 and 36 (ratio exactly 1.1 and 0.9), 5 at 46, 4 at 39.
        "tolerance" => &[4, 5, 4],
        // Up: 2 → 3 → 5 → 8 (Percent 50 is the smaller step each time), the last step at
        // most 43.3 s in (three syncs, each within 2 s + the 1 s refresh of its period's
        // start). The value drops at 46 s, so the first step down comes less than 15 s after
        // the scale-up 5 → 8. Min keeps the smaller step, Pods 1, counted from the replicas at
        // the period's start, which that scale-up is inside of: 5 - 1 = 4; a period later 3.
        "min" => &[2, 3, 5, 8, 4, 3],
        _ => unreachable!(),
    };
    assert_eq!(distinct, want, "{}: the HPA's sequence {hpa:?}", s.name);
    if s.name == "hold" {
        let held = hpa.iter().filter(|&&d| d == 6).count();
        assert!(
            held >= 10,
            "hold: 6 kept over the window ({held} syncs): {hpa:?}"
        );
    }
}
