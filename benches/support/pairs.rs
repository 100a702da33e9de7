//! The side-by-side benchmark harness for benchmarks written in Rust, with the contract of
//! `scripts/lib/bench.sh`:
//!
//! - sides are measured in alternating rounds whose order rotates (AB, BA, … or ABC, BCA, CAB,
//!   …), so drift in the machine's state lands on every side alike, and ratios are reported as
//!   the median of the per-round ratios with their min–max;
//! - every process the benchmark starts carries `TIDESCALE_BENCH_RUN=NAME:PID` in its environment
//!   and is stopped when the [`Run`] is dropped (success or panic) or on Ctrl-C; the marker also
//!   finds grandchildren that a list of child handles would miss (except in programs that write
//!   over their environment, like nginx: those are stopped through their parent, by handle);
//! - a run refuses to start while processes of an earlier run of the same benchmark are still up.

// Each benchmark (and the harness's own tests) uses a different part of this module.
#![allow(dead_code)]

use std::fmt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

/// The environment variable that marks every process a benchmark run starts.
pub const MARKER_VAR: &str = "TIDESCALE_BENCH_RUN";

/// One benchmark run: its marker and the processes it started.
pub struct Run {
    marker: String,
    children: Vec<Child>,
}

impl Run {
    /// Starts run `name`: panics with the list when processes of an earlier run of the same
    /// benchmark are still up (they would distort the figures; other benchmarks' processes only
    /// get a warning), and stops this run's processes on Ctrl-C when a Tokio runtime is entered.
    pub fn start(name: &str) -> Self {
        let marker = format!("{name}:{}", std::process::id());
        let describe =
            |(pid, m): &(u32, String)| format!("  pid {pid} ({MARKER_VAR}={m}): {}", cmdline(*pid));
        let (same, others): (Vec<_>, Vec<_>) = marked_pids(|m| m != marker)
            .into_iter()
            .partition(|(_, m)| m.strip_prefix(name).is_some_and(|r| r.starts_with(':')));
        for p in &others {
            eprintln!(
                "warning: another benchmark's process is running, the figures may suffer:\n{}",
                describe(p)
            );
        }
        assert!(
            same.is_empty(),
            "processes left from an earlier {name} run are still up; stop them first:\n{}",
            same.iter().map(describe).collect::<Vec<_>>().join("\n")
        );
        println!("== {name}: no process left from an earlier run");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let on_interrupt = marker.clone();
            handle.spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop_marked(&on_interrupt);
                    std::process::exit(130);
                }
            });
        }
        Self {
            marker,
            children: Vec::new(),
        }
    }

    /// The marker of this run's processes (`NAME:PID`).
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// A command that carries this run's marker; start it with [`Run::spawn`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env(MARKER_VAR, &self.marker);
        cmd
    }

    /// Starts `cmd` (made by [`Run::command`]) and keeps it until the run ends.
    pub fn spawn(&mut self, cmd: &mut Command) -> std::io::Result<&mut Child> {
        let child = cmd.spawn()?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Children first, by handle, with TERM, so a proxy's master process stops its own
        // workers: nginx writes its process title over its environment, so neither its master
        // nor its workers can be found by the marker, and a master killed outright would leave
        // its workers running.
        let children: Vec<u32> = self.children.iter().map(Child::id).collect();
        terminate(&children);
        stop_marked(&self.marker);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A process that started while the others were being stopped (a proxy replacing a
        // worker, say) is caught by a second sweep.
        stop_marked(&self.marker);
    }
}

/// Processes (other than this one) whose marker satisfies `keep`, with the marker.
pub fn marked_pids(keep: impl Fn(&str) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let env = std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"));
            let prefix = format!("{MARKER_VAR}=");
            env.ok()?
                .split(|&b| b == 0)
                .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .filter(|m| keep(m))
                .map(|m| (pid, m))
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Stops every process carrying `marker`.
fn stop_marked(marker: &str) {
    let pids: Vec<u32> = marked_pids(|m| m == marker)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    terminate(&pids);
}

/// TERM (a clean stop: nginx takes its workers down with it), then KILL what is left after 3 s.
fn terminate(pids: &[u32]) {
    let send = |sig: Signal| {
        for &p in pids {
            if let Some(pid) = i32::try_from(p).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, sig);
            }
        }
    };
    send(Signal::TERM);
    for _ in 0..30 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    send(Signal::KILL);
}

/// Whether `pid` runs (a zombie waiting to be reaped counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Runs `rounds` rounds over `sides` sides, each round starting one side further on (AB, BA, …
/// or ABC, BCA, CAB, …); `measure(side, round)` takes one measurement (`round` from 1). Returns
/// each side's results in round order.
pub fn alternate<T>(
    rounds: usize,
    sides: usize,
    mut measure: impl FnMut(usize, usize) -> T,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..sides).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for k in 0..sides {
            let side = (round + k) % sides;
            out[side].push(measure(side, round + 1));
        }
    }
    out
}

/// Median with min and max of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaN figures when empty).
    pub fn of(values: &[f64]) -> Self {
        let median = tidescale::local::report::median(values.to_vec()).unwrap_or(f64::NAN);
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Self { median, min, max }
    }

    /// The spread of the per-round ratios `a[i] / b[i]`.
    pub fn of_ratios(a: &[f64], b: &[f64]) -> Self {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        Self::of(&r)
    }

    /// The spread of the per-round differences `a[i] - b[i]`.
    pub fn of_differences(a: &[f64], b: &[f64]) -> Self {
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        Self::of(&d)
    }

    /// How many of `values` are on the wrong side of `goal` (below it when `higher_is_better`).
    pub fn misses(values: &[f64], goal: f64, higher_is_better: bool) -> usize {
        values
            .iter()
            .filter(|&&v| if higher_is_better { v < goal } else { v > goal })
            .count()
    }
}

impl fmt::Display for Spread {
    /// `median [min–max]`, with the precision asked for (default 2 decimals).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(2);
        write!(f, "{:.p$} [{:.p$}–{:.p$}]", self.median, self.min, self.max)
    }
}
