//! The real `loadgen` binary: bad input exits 2 with one clear line; a good run prints JSON.

mod common;

use std::process::Command;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn assert_rejected(args: &[&str], needle: &str) {
    let out = loadgen(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line for {args:?}: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_input_exits_2_with_one_clear_message() {
    assert_rejected(&["--shape", "zigzag:a=1"], "unknown shape \"zigzag\"");
    assert_rejected(&["--rate", "-5"], "--rate");
    assert_rejected(&["--rate", "abc"], "--rate");
    assert_rejected(
        &["--shape", "trace:file=/nonexistent/t.csv"],
        "cannot read /nonexistent/t.csv",
    );
    assert_rejected(&["--url", "not a url", "--rate", "10"], "bad URL");
    assert_rejected(
        &["--url", "http://10.1.2.3:80", "--rate", "10"],
        "--allow-remote",
    );
    assert_rejected(&["--rate", "10", "--duration", "ten"], "invalid duration");
    assert_rejected(&["--rate", "10", "--bogus"], "--bogus");
    assert_rejected(&[], "give a load");
    // Several problems at once stay on one line, all named.
    assert_rejected(
        &["--shape", "sine:min=9,max=1,period=0s", "-c", "0"],
        "min 9 is above max 1",
    );
    let out = loadgen(&["--shape", "sine:min=9,max=1,period=0s", "-c", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("concurrency"));
}

#[test]
fn a_good_run_prints_one_json_summary() {
    let server = common::start(None);
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "--url",
        &server.url(),
        "--shape",
        "ramp:from=50,to=150,duration=1s",
        "--mix",
        "3:root",
        "--mix",
        "1:GET /status/404",
        "--json",
        "--seed",
        "7",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["requests"], 100);
    assert_eq!(v["seed"], 7);
    assert!(v["errors"]["http_4xx"].as_u64().unwrap() > 10, "{v}");
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(dir.path().join("timeline.png").exists());
}
