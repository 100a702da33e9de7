//! The `process` source: CPU rate and resident memory of local processes, from `/proc`.
//!
//! CPU is the change of `utime + stime` (fields 14 and 15 of `/proc/<pid>/stat`, in clock ticks)
//! between two reads, divided by the elapsed time: cores in use. Linux reports these fields in
//! `USER_HZ`, which is 100 on every architecture it exposes to user space, so no `sysconf` call
//! (and no `unsafe`) is needed. Memory is `VmRSS` from `/proc/<pid>/status`, in bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metric::{MetricId, Reading};
use crate::source::{BuildContext, LocalProcess, MetricSource, ResourceName, SourceError};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`).
pub const USER_HZ: f64 = 100.0;
/// On the first read of a process, how long to wait between the two CPU samples.
pub const FIRST_SAMPLE_GAP: Duration = Duration::from_millis(250);

/// Reads CPU or memory of a set of local processes.
#[derive(Debug)]
pub struct ProcessSource {
    id: MetricId,
    resource: ResourceName,
    processes: watch::Receiver<Vec<LocalProcess>>,
    proc_root: PathBuf,
    clock: Clock,
    previous: Mutex<HashMap<u32, (Instant, u64)>>,
}

impl ProcessSource {
    /// A source over the processes `processes` lists (it may change between reads).
    pub fn new(
        resource: ResourceName,
        processes: watch::Receiver<Vec<LocalProcess>>,
        ctx: &BuildContext,
    ) -> Self {
        Self {
            id: ctx.metric.clone(),
            resource,
            processes,
            proc_root: PathBuf::from("/proc"),
            clock: ctx.clock,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// Reads from another `/proc`-shaped directory (for tests).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    fn error(&self, pid: u32, why: String) -> SourceError {
        SourceError::Process {
            metric: self.id.clone(),
            pid,
            why,
        }
    }

    fn cpu_ticks(&self, pid: u32) -> Result<u64, SourceError> {
        let path = self.proc_root.join(pid.to_string()).join("stat");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.error(pid, format!("{}: {e}", path.display())))?;
        parse_stat_ticks(&text)
            .ok_or_else(|| self.error(pid, format!("{}: unexpected format", path.display())))
    }

    fn rss_bytes(&self, pid: u32) -> Result<f64, SourceError> {
        let path = self.proc_root.join(pid.to_string()).join("status");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.error(pid, format!("{}: {e}", path.display())))?;
        parse_status_rss(&text)
            .ok_or_else(|| self.error(pid, format!("{}: no VmRSS line", path.display())))
    }

    async fn read_now(&self) -> Result<Reading, SourceError> {
        let members = self.processes.borrow().clone();
        if members.is_empty() {
            return Err(SourceError::NoData {
                metric: self.id.clone(),
                endpoint: self.proc_root.display().to_string(),
                why: "no processes in the pool".into(),
            });
        }
        let results = match self.resource {
            ResourceName::Memory => members
                .iter()
                .map(|m| (m.name.clone(), self.rss_bytes(m.pid)))
                .collect(),
            ResourceName::Cpu => self.cpu_rates(&members).await,
        };
        let (_, wall) = self.clock.now();
        let mut pods = BTreeMap::new();
        let mut failed = BTreeMap::new();
        let mut failures = Vec::new();
        for (name, r) in results {
            match r {
                Ok(v) => {
                    pods.insert(name, v);
                }
                Err(e) => {
                    failed.insert(name, e.to_string());
                    failures.push(e);
                }
            }
        }
        if pods.is_empty() {
            return Err(if failures.len() == 1 {
                failures.remove(0)
            } else {
                SourceError::AllFailed {
                    metric: self.id.clone(),
                    failures,
                }
            });
        }
        let total = pods.values().sum();
        let origin = format!(
            "{}/<pid>/{}",
            self.proc_root.display(),
            match self.resource {
                ResourceName::Cpu => "stat",
                ResourceName::Memory => "status",
            }
        );
        let mut reading = Reading::per_pod(pods, total, wall, origin);
        reading.failed = failed;
        Ok(reading)
    }

    /// Each member's CPU use in cores since the previous read (a first read samples twice,
    /// `FIRST_SAMPLE_GAP` apart).
    async fn cpu_rates(&self, members: &[LocalProcess]) -> Vec<(String, Result<f64, SourceError>)> {
        let unseen = {
            let prev = self.previous.lock().unwrap_or_else(|p| p.into_inner());
            members.iter().any(|m| !prev.contains_key(&m.pid))
        };
        if unseen {
            self.baseline(members);
            tokio::time::sleep(FIRST_SAMPLE_GAP).await;
        }
        let now = clock::now();
        let mut prev = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        prev.retain(|pid, _| members.iter().any(|m| m.pid == *pid));
        let mut results = Vec::with_capacity(members.len());
        for m in members {
            let r = self.cpu_ticks(m.pid).and_then(|ticks| {
                let before = prev.insert(m.pid, (now, ticks));
                let (t0, ticks0) =
                    before.ok_or_else(|| self.error(m.pid, "appeared during the read".into()))?;
                let secs = now.saturating_duration_since(t0).as_secs_f64();
                if secs <= 0.0 {
                    return Err(self.error(m.pid, "read twice at the same instant".into()));
                }
                // A pid reused by a new process shows fewer ticks: count from zero.
                let delta = ticks.checked_sub(ticks0).unwrap_or(ticks);
                Ok(delta as f64 / USER_HZ / secs)
            });
            results.push((m.name.clone(), r));
        }
        results
    }

    fn baseline(&self, members: &[LocalProcess]) {
        let now = clock::now();
        let mut prev = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        for m in members {
            if let Ok(t) = self.cpu_ticks(m.pid) {
                prev.entry(m.pid).or_insert((now, t));
            }
        }
    }
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes from the text of `/proc/<pid>/status`.
pub fn parse_status_rss(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

impl MetricSource for ProcessSource {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "process"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        Box::pin(self.read_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BuildContext {
        let _ = rustls::crypto::ring::default_provider().install_default();
        BuildContext::new(MetricId::new("local", "cpu"), reqwest::Client::new())
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 3 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(320));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(
            parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
    }

    /// A real child process burning CPU reads near one core; an idle one near zero.
    #[tokio::test]
    async fn reads_a_busy_and_an_idle_child() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn sh");
        let mut idle = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let members = vec![
            LocalProcess {
                name: "busy".into(),
                pid: busy.id(),
            },
            LocalProcess {
                name: "idle".into(),
                pid: idle.id(),
            },
        ];
        let (_tx, rx) = watch::channel(members);
        let cpu = ProcessSource::new(ResourceName::Cpu, rx.clone(), &ctx());
        let _ = cpu.read().await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = cpu.read().await.unwrap();
        let mem = ProcessSource::new(ResourceName::Memory, rx, &ctx())
            .read()
            .await
            .unwrap();
        busy.kill().ok();
        idle.kill().ok();
        busy.wait().ok();
        idle.wait().ok();
        let pods = r.pods().unwrap();
        // Two cores shared with other work: the busy loop gets a good part of one.
        assert!(pods["busy"] > 0.1 && pods["busy"] < 1.2, "{pods:?}");
        assert!(pods["idle"] < 0.05, "{pods:?}");
        assert!(mem.pods().unwrap()["idle"] > 100_000.0);
    }

    #[tokio::test]
    async fn a_dead_process_fails_alone() {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let members = vec![
            LocalProcess {
                name: "me".into(),
                pid: std::process::id(),
            },
            LocalProcess {
                name: "gone".into(),
                pid: gone_pid,
            },
        ];
        let (_tx, rx) = watch::channel(members);
        let r = ProcessSource::new(ResourceName::Memory, rx, &ctx())
            .read()
            .await
            .unwrap();
        assert!(r.pods().unwrap().contains_key("me"));
        assert!(
            r.failed["gone"].contains(&format!("process {gone_pid}")),
            "{:?}",
            r.failed
        );
    }
}
