//! `tidescale demo` end to end: the real binary runs a short spike through the real pool,
//! balancer and load generator; a replica is killed with SIGKILL mid-run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Processes whose parent is `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent && cmdline.contains("serve-demo") {
            out.push(pid);
        }
    }
    out
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn spike_scales_up_fast_scales_down_without_failures_and_replaces_a_killed_replica() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let policy =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies/demo-fast.yaml");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args([
            "demo",
            "--profile",
            "spike",
            "--duration",
            "40s",
            "--quiet",
            "--seed",
            "7",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Mid-spike, SIGKILL one replica (bounded wait for the pool to have grown).
    let mut killed = None;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        let members = children(demo.id());
        if members.len() >= 3 {
            let victim = members[0];
            let ok = Command::new("kill")
                .args(["-KILL", &victim.to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            killed = Some(victim);
            break;
        }
    }
    assert!(
        killed.is_some(),
        "the pool never grew to 3 replicas during the spike"
    );

    let mut status = None;
    for _ in 0..900 {
        if let Some(s) = demo.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = demo.kill();
        panic!("tidescale demo did not finish within 90 s");
    };
    assert!(status.success(), "tidescale demo failed: {status}");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap())
            .unwrap();
    let run = &summary[0];
    // Scaled up within a few seconds of the spike.
    assert!(run["median_decision_s"].as_f64().unwrap() <= 3.0, "{run}");
    assert!(run["median_ready_s"].as_f64().unwrap() <= 6.0, "{run}");

    // Scaled down after the spike, within the configured windows.
    let decisions = jsonl(&report.join("decisions.jsonl"));
    let spike_end = 0.2 * 40.0 + 40.0 / 3.0;
    let down = decisions
        .iter()
        .find(|d| {
            d["applied"] == true
                && d["desired"].as_i64() < d["current"].as_i64()
                && d["t"].as_f64().unwrap() > spike_end
        })
        .unwrap_or_else(|| panic!("no scale-down after the spike: {decisions:?}"));
    assert!(
        down["t"].as_f64().unwrap() < spike_end + 12.0,
        "scale-down came late: {down}"
    );

    // The killed replica was replaced: a death, then a start and a ready after it.
    let events = jsonl(&report.join("pool-events.jsonl"));
    let died = events
        .iter()
        .find(|e| e["kind"] == "Died")
        .expect("the SIGKILL was not seen as a death");
    let died_t = died["t"].as_f64().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "Ready" && e["t"].as_f64().unwrap() > died_t),
        "{events:?}"
    );
    assert!(run["replaced"].as_u64().unwrap() >= 1);

    // No failed request anywhere but around the kill: scaling itself (every drained
    // scale-down included) lost nothing. Columns come from the load generator's CSV header.
    let csv = std::fs::read_to_string(report.join("load-timeline.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (second, failures): (usize, Vec<usize>) = (
        col("second"),
        ["timeout", "refused", "io", "http_5xx", "other"]
            .map(col)
            .to_vec(),
    );
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let s: f64 = cells[second].parse().unwrap();
        let failed: u64 = failures
            .iter()
            .map(|&c| cells[c].parse::<u64>().unwrap())
            .sum();
        if (s - died_t).abs() > 2.0 {
            assert_eq!(
                failed, 0,
                "failed requests in second {s}, away from the kill at {died_t:.1}: {line}"
            );
        }
    }
    let drained = events.iter().filter(|e| e["kind"] == "Stopped").count();
    assert!(drained >= 1, "no replica was drained: {events:?}");
}
