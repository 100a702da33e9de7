//! Runs the real `tidescale` binary over the replay scenarios and compares its output with the
//! golden files in `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them). Also covers invalid
//! scenarios and `tidescale check`, with their exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tidescale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the tidescale binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

fn scenarios() -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the scenario set, found {files:?}"
    );
    files
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
/// Returns a readable diff of the first differences, or `None` when equal.
fn golden(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected == actual {
        return None;
    }
    let (exp, act): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut diff = format!(
        "{} differs (UPDATE_GOLDEN=1 rewrites it):\n",
        path.display()
    );
    for i in 0..exp.len().max(act.len()) {
        let (e, a) = (exp.get(i), act.get(i));
        if e != a {
            diff.push_str(&format!(
                "  line {}:\n  - {}\n  + {}\n",
                i + 1,
                e.unwrap_or(&"(none)"),
                a.unwrap_or(&"(none)")
            ));
        }
    }
    Some(diff)
}

#[test]
fn replay_text_matches_golden_files() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let name = s.file_stem().unwrap().to_str().unwrap();
        let out = tidescale(&["replay", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let scenario = tidescale::replay::parse_scenario(&std::fs::read_to_string(&s).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            stdout.lines().count(),
            scenario.ticks.len(),
            "{name}: one line per tick"
        );
        failures.extend(golden(
            &root().join(format!("tests/golden/{name}.txt")),
            &stdout,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn replay_json_matches_golden_files_and_the_contract() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let name = s.file_stem().unwrap().to_str().unwrap();
        let out = tidescale(&["replay", s.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let plain = text(&tidescale(&["replay", s.to_str().unwrap()]).stdout);
        for (line, plain_line) in stdout.lines().zip(plain.lines()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            for key in [
                "t",
                "current",
                "desired",
                "applied",
                "proposals",
                "reasons",
                "line",
            ] {
                assert!(v.get(key).is_some(), "{name}: `{key}` missing in {line}");
            }
            for p in v["proposals"].as_array().unwrap() {
                assert!(p["metric"].is_string() && p["replicas"].is_i64() && p["ratio"].is_f64());
            }
            // The text form prints `line` after the tick and counts.
            assert!(
                plain_line.ends_with(v["line"].as_str().unwrap()),
                "{plain_line}"
            );
        }
        failures.extend(golden(
            &root().join(format!("tests/golden/{name}.jsonl")),
            &stdout,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn applied_decisions_carry_over_and_dry_runs_never_apply() {
    let out = tidescale(&["replay", "tests/fixtures/scenarios/spike.yaml", "--json"]);
    let ticks: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for pair in ticks.windows(2) {
        if pair[0]["applied"] == true {
            assert_eq!(pair[1]["current"], pair[0]["desired"]);
        } else {
            assert_eq!(pair[1]["current"], pair[0]["current"]);
        }
    }
    let out = tidescale(&["replay", "tests/fixtures/scenarios/dry_run.yaml", "--json"]);
    for l in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["applied"], false, "{l}");
        assert_ne!(v["desired"], v["current"], "{l}");
    }
}

#[test]
fn an_invalid_scenario_exits_1_listing_every_problem() {
    let out = tidescale(&["replay", "tests/fixtures/invalid/bad_scenario.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    for want in [
        "invalid scenario (5 problems)",
        "policy.minReplicas: minReplicas 3 is greater than maxReplicas 2",
        "policy.metrics[0].target.type: Utilization needs a resource metric",
        "ticks[1].t: 5 is not after the previous tick's 10",
        "ticks[1].metrics.rsp: no metric of this name in the policy",
        "ticks[2].metrics.rps.value: invalid quantity \"lots\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn replay_usage_errors_exit_2() {
    assert_eq!(tidescale(&["replay"]).status.code(), Some(2));
    assert_eq!(
        tidescale(&["replay", "--bogus", "x.yaml"]).status.code(),
        Some(2)
    );
    let out = tidescale(&["replay", "tests/fixtures/does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
    assert_eq!(tidescale(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn check_accepts_a_valid_policy() {
    let out = tidescale(&["check", "tests/fixtures/policies/web.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("web.yaml: ok (Deployment web: 5 metrics, replicas [1,20])")
    );
}

#[test]
fn check_lists_every_problem_of_every_file_and_exits_1() {
    let out = tidescale(&[
        "check",
        "tests/fixtures/policies/web.yaml",
        "tests/fixtures/policies/broken.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("web.yaml: ok"), "{stdout}");
    assert!(
        stdout.contains("broken.yaml: invalid policy (13 problems):"),
        "{stdout}"
    );
    for want in [
        "spec: unknown field `colour`",
        "spec.metrics[0].scrape.metrik: unknown field `metrik`",
        "spec.minReplicas: minReplicas 5 is greater than maxReplicas 3",
        "spec.onMetricError.replicas: Fallback needs the number of replicas",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}

#[test]
fn check_usage_errors_exit_2() {
    assert_eq!(tidescale(&["check"]).status.code(), Some(2));
    let out = tidescale(&["check", "tests/fixtures/policies/missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}
