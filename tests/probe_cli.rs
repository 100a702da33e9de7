//! `tidescale probe` as a user runs it: output formats, `--metric`, `--once`, and bad input.

use std::process::Command;

use tokio::net::TcpListener;

fn probe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("probe")
        .args(args)
        .output()
        .expect("run tidescale")
}

/// A loopback `/metrics` endpoint serving one gauge family.
async fn endpoint(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { body }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn policy(dir: &std::path::Path, metrics: &str) -> String {
    let p = dir.join("policy.yaml");
    std::fs::write(
        &p,
        format!("targetRef: {{kind: ProcessPool, name: demo}}\nmaxReplicas: 4\ninterval: 250ms\nmetrics:\n{metrics}"),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_prints_one_line_per_metric() {
    let a = endpoint("queue{q=\"jobs\"} 4\nqueue{q=\"mail\"} 9\n").await;
    let b = endpoint("queue{q=\"jobs\"} 10\n").await;
    let dir = tempfile::tempdir().unwrap();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", l.local_addr().unwrap())
    };
    let path = policy(
        dir.path(),
        &format!(
            "  - name: jobs\n    scrape: {{endpoints: [\"{a}\", \"{b}\"], metric: queue, labels: {{q: jobs}}, aggregate: {{gauge: {{reduce: max}}}}}}\n    target: {{type: Value, value: \"5\"}}\n\
             \x20 - name: dead\n    scrape: {{endpoints: [\"{refused}\"], metric: queue}}\n    target: {{type: Value, value: \"5\"}}\n"
        ),
    );
    let out = tokio::task::spawn_blocking(move || probe(&[&path, "--once", "--json"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let jobs = &lines[0];
    assert_eq!(jobs["metric"], "jobs");
    assert_eq!(jobs["value"], "10");
    assert_eq!(jobs["source"], "scrape");
    assert!(jobs["error"].is_null());
    assert_eq!(jobs["pods"].as_object().unwrap().len(), 2);
    assert!(jobs["t"].as_f64().unwrap() > 1.7e9);
    let dead = &lines[1];
    assert!(dead["value"].is_null());
    let err = dead["error"].as_str().unwrap();
    assert!(
        err.contains("dead") && err.contains(&refused) && err.contains("unreachable"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_metric_filter() {
    let a = endpoint("g 2.5\n").await;
    let dir = tempfile::tempdir().unwrap();
    let path = policy(
        dir.path(),
        &format!(
            "  - name: one\n    scrape: {{endpoints: [\"{a}\"], metric: g}}\n    target: {{type: Value, value: \"5\"}}\n\
             \x20 - name: two\n    scrape: {{endpoints: [\"{a}\"], metric: g}}\n    target: {{type: Value, value: \"5\"}}\n"
        ),
    );
    let p = path.clone();
    let out = tokio::task::spawn_blocking(move || probe(&[&p, "--metric", "two", "--reads", "2"]))
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("two = 2.5 [") && l.contains("(scrape: ")),
        "{text}"
    );
    let out = tokio::task::spawn_blocking(move || probe(&[&path, "--metric", "three", "--once"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no metric \"three\"") && err.contains("one, two"),
        "{err}"
    );
}

#[test]
fn invalid_policy_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "targetRef: {kind: Deployment, name: web}\nminReplicas: 5\nmaxReplicas: 2\nmetrics: []\n",
    )
    .unwrap();
    let out = probe(&[p.to_str().unwrap(), "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("maxReplicas") && err.contains("metrics"),
        "{err}"
    );
    let out = probe(&[dir.path().join("missing.yaml").to_str().unwrap()]);
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot read")
    );
}
