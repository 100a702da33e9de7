//! The `tidescale adapter` binary: a bad config is refused with every problem listed, and a good
//! one is served over a self-signed certificate in `--insecure-dev-mode`, with real scraped
//! numbers, until SIGINT.

mod adapter_support;

use std::time::Duration;

use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_lists_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "externalMetrics:\n- name: a/b\n  scrape: {metric: q}\ncustomMetrics:\n- name: m\n  resource: deployments.apps\n  prometheus: {query: q}\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args(["adapter", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--insecure-dev-mode"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "externalMetrics[0].name",
        "externalMetrics[0].scrape: `endpoints` is required",
        "customMetrics[0].object",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_self_signed_in_dev_mode_and_stops_on_sigint() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let gauge = adapter_support::gauge_server(42.0).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("adapter.yaml");
    std::fs::write(&cfg, adapter_support::config_yaml(&gauge.url)).unwrap();
    std::fs::write(
        dir.path().join("web-policy.yaml"),
        adapter_support::policy_yaml(&gauge.url),
    )
    .unwrap();
    let (mut child, port, client) = adapter_support::spawn_dev_adapter(&cfg, &[]);
    let url = format!(
        "https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth"
    );
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(&url).send().await
            && r.status() == 200
        {
            body = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("\"value\":\"42\""), "{body}");
    let pid = child.id().unwrap() as i32;
    // Ctrl-C, as an operator would: SIGINT to our own child, by its pid.
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("adapter exits on SIGINT")
        .unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(exit.success(), "{log}");
    assert!(
        log.contains("self-signed"),
        "the self-signed certificate is logged: {log}"
    );
    assert!(
        log.contains("AUTHENTICATION AND AUTHORIZATION ARE OFF"),
        "{log}"
    );
}
