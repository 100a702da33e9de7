//! `tidescale demo` refuses bad input with one clear message before starting anything.

use std::process::Command;

fn demo(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("demo")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_trace_profile_needs_a_trace_file() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    let (code, err) = demo(&[
        "--profile",
        "trace",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--profile trace needs --trace FILE"), "{err}");
    assert!(!report.exists(), "nothing may be written for a refused run");
}

#[test]
fn a_policy_must_target_a_process_pool_and_be_valid() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        "targetRef: {kind: Deployment, name: web}\nmaxReplicas: 3\nmetrics:\n  - name: cpu\n    resource: {name: cpu}\n    target: {type: Utilization, averageUtilization: 50}\n",
    )
    .unwrap();
    let (code, err) = demo(&["--policy", deploy.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("targetRef.kind must be ProcessPool, not Deployment"),
        "{err}"
    );

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "targetRef: {kind: ProcessPool, name: demo}\nminReplicas: 5\nmaxReplicas: 2\nmetrics: []\n",
    )
    .unwrap();
    let (code, err) = demo(&["--policy", broken.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("minReplicas") && err.contains("metrics"),
        "every problem at once: {err}"
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let (code, err) = demo(&["--profile", "zigzag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("zigzag"), "{err}");
    let (code, err) = demo(&["--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid duration"), "{err}");
}
