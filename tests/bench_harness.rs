//! The benchmark harnesses keep their promises: pairs alternate, figures are medians with their
//! spread, and every process a benchmark started is gone after success, failure or Ctrl-C —
//! for the script library (`scripts/lib/bench.sh`) and its Rust counterpart
//! (`benches/support/pairs.rs`).

#[path = "../benches/support/pairs.rs"]
mod pairs;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pairs::{Run, Spread, alternate, marked_pids};
use rustix::process::{Pid, Signal, kill_process_group};

#[test]
fn rounds_rotate_which_side_goes_first() {
    let mut order = Vec::new();
    let out = alternate(4, 2, |side, round| {
        order.push((side, round));
        side * 10 + round
    });
    assert_eq!(
        order,
        [
            (0, 1),
            (1, 1),
            (1, 2),
            (0, 2),
            (0, 3),
            (1, 3),
            (1, 4),
            (0, 4)
        ]
    );
    assert_eq!(out, [vec![1, 2, 3, 4], vec![11, 12, 13, 14]]);
    let mut firsts = Vec::new();
    alternate(3, 3, |side, round| {
        if firsts.len() < round {
            firsts.push(side);
        }
    });
    assert_eq!(firsts, [0, 1, 2]);
}

#[test]
fn figures_are_medians_with_their_spread() {
    let s = Spread::of(&[3.0, 1.0, 10.0, 2.0]);
    assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
    assert_eq!(s.to_string(), "2.50 [1.00–10.00]");
    let r = Spread::of_ratios(&[8.0, 9.0, 6.0], &[10.0, 10.0, 10.0]);
    assert!((r.median - 0.8).abs() < 1e-12 && (r.min - 0.6).abs() < 1e-12);
    assert_eq!(Spread::of_differences(&[5.0, 7.0], &[1.0, 1.0]).max, 6.0);
    assert_eq!(Spread::misses(&[0.6, 0.8, 0.9], 0.8, true), 1);
    assert_eq!(Spread::misses(&[150.0, 250.0], 200.0, false), 1);
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn pids_of(marker: &str) -> Vec<u32> {
    marked_pids(|m| m == marker)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn a_run_stops_children_and_grandchildren_when_dropped() {
    let mut run = Run::start("harness-drop");
    let marker = run.marker().to_string();
    let mut cmd = run.command("bash");
    // The grandchild `sleep` is what a list of child handles alone would miss.
    cmd.args(["-c", "sleep 30 & sleep 30"]);
    run.spawn(&mut cmd).expect("bash");
    let mut started = Vec::new();
    for _ in 0..100 {
        started = pids_of(&marker);
        if started.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.len() >= 3, "bash and both sleeps: {started:?}");
    drop(run);
    let left: Vec<u32> = started.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "still running after the run ended: {left:?}"
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A benchmark script on the library: two servers (one with a child of its own), a sampler
/// loop in a subshell, one pair; then `MODE` decides how it ends. Prints its marker first.
fn fake_bench(dir: &Path, name: &str, mode: &str) -> Child {
    let script = dir.join(format!("{name}.sh"));
    let text = format!(
        "set -euo pipefail\nsource {lib}\nbench_init {name}\necho \"$TIDESCALE_BENCH_RUN\"\n\
         bench_start u1 one bash -c 'echo http://one; exec sleep 30'\n\
         bench_start u2 two bash -c 'echo http://two; sleep 30 & sleep 30'\n\
         (while sleep 0.1; do :; done) &\n\
         a() {{ BENCH_VALUE=8; }}\nb() {{ BENCH_VALUE=10; }}\nbench_pairs fake 2 a b 0.7\n\
         echo measured\ncase {mode} in fail) false ;; wait) sleep 30 ;; esac\n",
        lib = repo().join("scripts/lib/bench.sh").display(),
    );
    std::fs::write(&script, text).unwrap();
    Command::new("bash")
        .arg(&script)
        .env_remove(pairs::MARKER_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, as a script in a terminal has: Ctrl-C is sent to the group.
        .process_group(0)
        .spawn()
        .expect("bash")
}

/// Reads the script's stdout until `measured` (all its processes are up); returns its marker.
fn wait_measured(child: &mut Child) -> (String, String) {
    let mut out = child.stdout.take().unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 256];
    while !text.contains("measured") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the script ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child.stdout = Some(out);
    let marker = text.lines().nth(1).unwrap_or_default().to_string();
    (marker, text)
}

fn finish(mut child: Child) -> (i32, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn the_script_library_leaves_nothing_behind_on_any_exit() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, expected) in [("ok", 0), ("fail", 1), ("wait", 130)] {
        let name = format!("harness-{mode}");
        let mut child = fake_bench(dir.path(), &name, mode);
        let (marker, text) = wait_measured(&mut child);
        assert!(marker.starts_with(&format!("{name}:")), "{text}");
        assert!(
            text.contains("no process left from an earlier run"),
            "{text}"
        );
        assert!(
            text.contains("ratio A/B 0.8 [0.8–0.8] over 2 pairs"),
            "{text}"
        );
        if mode == "wait" {
            std::thread::sleep(Duration::from_millis(200));
            let group = Pid::from_raw(child.id() as i32).unwrap();
            kill_process_group(group, Signal::INT).unwrap();
        }
        let (code, err) = finish(child);
        assert_eq!(code, expected, "{mode}: {err}");
        assert_eq!(pids_of(&marker), Vec::<u32>::new(), "{mode}: left running");
    }
}

#[test]
fn a_second_run_refuses_to_measure_next_to_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = fake_bench(dir.path(), "harness-left", "wait");
    let group = Pid::from_raw(first.id() as i32).unwrap();
    let (marker, _) = wait_measured(&mut first);
    // A killed script cannot tear down: its servers stay up, marked.
    first.kill().unwrap();
    first.wait().unwrap();
    let left = pids_of(&marker);
    assert!(!left.is_empty());
    let (code, err) = finish(fake_bench(dir.path(), "harness-left", "ok"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("left from an earlier harness-left run"),
        "{err}"
    );
    // The leftovers, the script's subshell included, are still in its process group.
    let _ = kill_process_group(group, Signal::KILL);
    std::thread::sleep(Duration::from_millis(200));
    let still: Vec<u32> = left.into_iter().filter(|&p| alive(p)).collect();
    assert!(still.is_empty(), "cleanup failed: {still:?}");
}
