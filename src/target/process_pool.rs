//! A pool of local processes as a scale target: the laptop's stand-in for a Deployment.
//!
//! Members start on free loopback ports, join the balancer's backend set only once their
//! readiness check passes, leave it before they are told to stop (SIGTERM, then SIGKILL after a
//! grace period), and are replaced when they die, as a ReplicaSet would replace a pod.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{Endpoint, PodStatus, ScaleTarget, TargetError, TargetStatus};
use crate::engine::{PodPhase, Replicas};

/// How often the supervisor looks at the members.
const TICK: Duration = Duration::from_millis(100);
/// How often a ready member's readiness is re-checked.
const RECHECK: Duration = Duration::from_secs(1);
/// Most events kept for [`ProcessPool::take_events`].
const MAX_EVENTS: usize = 10_000;

/// What to run and how to treat it.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The pool's name (members are `<name>-<n>`).
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments. A `{port}` argument is replaced by a free loopback port; without one,
    /// the program must print its base URL (`http://127.0.0.1:PORT`) as its first stdout line.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The readiness path, answered with 2xx when ready.
    pub ready_path: String,
    /// After SIGTERM, how long a member may drain before SIGKILL.
    pub grace: Duration,
    /// A member not ready within this long is killed and replaced.
    pub startup_timeout: Duration,
    /// The most members the pool will run.
    pub max_members: usize,
}

impl PoolConfig {
    /// A pool of `program` with the defaults used for the demo service.
    pub fn new(name: &str, program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            program: program.into(),
            args,
            env: Vec::new(),
            ready_path: "/readyz".into(),
            grace: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(10),
            max_members: 64,
        }
    }
}

/// Something that happened to a member, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEvent {
    /// When it happened.
    pub at: Instant,
    /// Which member.
    pub member: String,
    /// What happened.
    pub kind: PoolEventKind,
}

/// Kinds of [`PoolEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolEventKind {
    /// The process was started.
    Started,
    /// It passed its readiness check and joined the backends.
    Ready,
    /// It was chosen for removal: out of the backends, SIGTERM sent.
    Draining,
    /// It exited after draining.
    Stopped,
    /// It exited (or failed to become ready) without being asked to: it will be replaced.
    Died,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Draining { since: Instant, killed: bool },
}

#[derive(Debug)]
struct Member {
    name: String,
    child: Child,
    pid: Option<u32>,
    addr: Option<SocketAddr>,
    phase: Phase,
    started: Instant,
    ready_changed: Instant,
    last_check: Instant,
}

#[derive(Debug, Default)]
struct PoolState {
    desired: usize,
    members: Vec<Member>,
    next_id: u64,
    closed: bool,
    events: Vec<PoolEvent>,
}

impl PoolState {
    fn event(&mut self, member: &str, kind: PoolEventKind, at: Instant) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(PoolEvent {
            at,
            member: member.to_string(),
            kind,
        });
    }

    fn active(&self) -> usize {
        self.members
            .iter()
            .filter(|m| !matches!(m.phase, Phase::Draining { .. }))
            .count()
    }
}

struct Inner {
    config: PoolConfig,
    state: Mutex<PoolState>,
    backends: watch::Sender<Vec<Endpoint>>,
    http: Client<HttpConnector, Empty<bytes::Bytes>>,
}

/// A pool of local processes; see the module docs.
pub struct ProcessPool {
    inner: Arc<Inner>,
    supervisor: tokio::task::JoinHandle<()>,
    label: String,
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("name", &self.label)
            .finish()
    }
}

impl ProcessPool {
    /// Starts a pool with no members; `scale_to` adds them. Must run inside a tokio runtime.
    pub fn start(config: PoolConfig) -> Self {
        let (backends, _) = watch::channel(Vec::new());
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let label = format!("ProcessPool/{}", config.name);
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(PoolState::default()),
            backends,
            http,
        });
        let supervisor = tokio::spawn(supervise(inner.clone()));
        Self {
            inner,
            supervisor,
            label,
        }
    }

    /// The ready members, published whenever the set changes (a balancer subscribes).
    pub fn endpoints(&self) -> watch::Receiver<Vec<Endpoint>> {
        self.inner.backends.subscribe()
    }

    /// Events since the last call.
    pub fn take_events(&self) -> Vec<PoolEvent> {
        std::mem::take(&mut self.inner.state.lock().expect("pool state poisoned").events)
    }

    /// Stops every member (SIGTERM, SIGKILL after the grace period) and the supervisor.
    pub async fn shutdown(self) {
        {
            let mut state = self.inner.state.lock().expect("pool state poisoned");
            state.closed = true;
            state.desired = 0;
        }
        // With nothing desired, reconciling only drains: it cannot fail to spawn.
        let _ = reconcile(&self.inner);
        let polls = (self.inner.config.grace.as_millis() / TICK.as_millis()) as u64 + 20;
        for _ in 0..polls {
            if self
                .inner
                .state
                .lock()
                .expect("pool state poisoned")
                .members
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        self.supervisor.abort();
        let mut state = self.inner.state.lock().expect("pool state poisoned");
        for m in &mut state.members {
            let _ = m.child.start_kill();
        }
        state.members.clear();
    }
}

impl ScaleTarget for ProcessPool {
    fn name(&self) -> &str {
        &self.label
    }

    fn status(&self) -> BoxFuture<'_, Result<TargetStatus, TargetError>> {
        Box::pin(async move {
            let now = clock::now();
            let state = self.inner.state.lock().expect("pool state poisoned");
            let pods = state
                .members
                .iter()
                .filter(|m| !matches!(m.phase, Phase::Draining { .. }))
                .map(|m| PodStatus {
                    name: m.name.clone(),
                    phase: if m.phase == Phase::Ready {
                        PodPhase::Running
                    } else {
                        PodPhase::Pending
                    },
                    ready: m.phase == Phase::Ready,
                    age: now.duration_since(m.started),
                    ready_changed: now.duration_since(m.ready_changed),
                    endpoint: m.addr.map(|a| format!("http://{a}")),
                    pid: m.pid,
                    deleting: false,
                    started: true,
                    requests: None,
                })
                .collect::<Vec<_>>();
            let ready = pods.iter().filter(|p| p.ready).count();
            Ok(TargetStatus {
                desired: Replicas(state.desired as i32),
                running: Replicas(pods.len() as i32),
                ready: Replicas(ready as i32),
                pods,
            })
        })
    }

    fn scale_to(&self, replicas: Replicas) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let max = self.inner.config.max_members;
            let requested = usize::try_from(replicas.get()).ok().filter(|n| *n <= max);
            let Some(n) = requested else {
                return Err(TargetError::Rejected {
                    target: self.label.clone(),
                    requested: replicas,
                    why: format!("a pool runs 0 to {max} members"),
                });
            };
            {
                let mut state = self.inner.state.lock().expect("pool state poisoned");
                if state.closed {
                    return Err(TargetError::Unavailable {
                        target: self.label.clone(),
                        why: "pool shut down".into(),
                    });
                }
                state.desired = n;
            }
            reconcile(&self.inner).map_err(|(member, source)| TargetError::Spawn {
                target: self.label.clone(),
                member,
                source,
            })
        })
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

fn signal(pid: Option<u32>, sig: rustix::process::Signal) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn spawn_member(inner: &Arc<Inner>, name: &str) -> std::io::Result<Member> {
    let config = &inner.config;
    let port = if config.args.iter().any(|a| a.contains("{port}")) {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    } else {
        None
    };
    let args = config.args.iter().map(|a| match port {
        Some(p) => a.replace("{port}", &p.to_string()),
        None => a.clone(),
    });
    let mut child = Command::new(&config.program)
        .args(args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take();
    let addr = port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    if addr.is_none()
        && let Some(stdout) = stdout
    {
        // The member announces its address on its first line; keep reading afterwards so a
        // chatty program never blocks on a full pipe.
        let inner = inner.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            if let Ok(Some(first)) = lines.next_line().await {
                let parsed = first
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .ok();
                let mut state = inner.state.lock().expect("pool state poisoned");
                if let Some(m) = state.members.iter_mut().find(|m| m.name == name) {
                    m.addr = parsed;
                }
            }
            while let Ok(Some(_)) = lines.next_line().await {}
        });
    }
    let now = clock::now();
    Ok(Member {
        name: name.to_string(),
        pid: child.id(),
        child,
        addr,
        phase: Phase::Starting,
        started: now,
        ready_changed: now,
        last_check: now,
    })
}

/// Brings the member count to the desired count: starts members, or drains the newest.
fn reconcile(inner: &Arc<Inner>) -> Result<(), (String, std::io::Error)> {
    let now = clock::now();
    let mut state = inner.state.lock().expect("pool state poisoned");
    let active = state.active();
    if active < state.desired && !state.closed {
        for _ in active..state.desired {
            state.next_id += 1;
            let name = format!("{}-{}", inner.config.name, state.next_id);
            let member = spawn_member(inner, &name).map_err(|e| (name.clone(), e))?;
            state.event(&name, PoolEventKind::Started, now);
            tracing::debug!(member = %name, pid = ?member.pid, "pool member started");
            state.members.push(member);
        }
    } else if active > state.desired {
        let mut excess = active - state.desired;
        // Victims: members not yet ready first (they serve nothing), then the newest ready ones.
        let mut order: Vec<usize> = (0..state.members.len())
            .filter(|&i| !matches!(state.members[i].phase, Phase::Draining { .. }))
            .collect();
        order.sort_by_key(|&i| {
            (
                state.members[i].phase == Phase::Ready,
                std::cmp::Reverse(state.members[i].started),
            )
        });
        let mut victims = Vec::new();
        for i in order {
            if excess == 0 {
                break;
            }
            state.members[i].phase = Phase::Draining {
                since: now,
                killed: false,
            };
            victims.push(i);
            excess -= 1;
        }
        // Out of the balancer first, then the signal: no new request can reach a victim.
        publish(inner, &state);
        for i in victims {
            let (name, pid) = (state.members[i].name.clone(), state.members[i].pid);
            signal(pid, rustix::process::Signal::TERM);
            state.event(&name, PoolEventKind::Draining, now);
            tracing::debug!(member = %name, "pool member draining");
        }
    }
    Ok(())
}

fn publish(inner: &Inner, state: &PoolState) {
    let ready: Vec<Endpoint> = state
        .members
        .iter()
        .filter(|m| m.phase == Phase::Ready)
        .filter_map(|m| {
            m.addr.map(|addr| Endpoint {
                id: m.name.clone(),
                addr,
            })
        })
        .collect();
    inner.backends.send_if_modified(|current| {
        if *current == ready {
            false
        } else {
            *current = ready;
            true
        }
    });
}

async fn is_ready(inner: &Inner, addr: SocketAddr) -> bool {
    let Ok(uri) = format!("http://{addr}{}", inner.config.ready_path).parse::<hyper::Uri>() else {
        return false;
    };
    match tokio::time::timeout(Duration::from_millis(500), inner.http.get(uri)).await {
        Ok(Ok(resp)) => resp.status().is_success(),
        _ => false,
    }
}

/// The supervisor: reaps exits, checks readiness, replaces the dead, enforces drain grace.
async fn supervise(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let to_check = reap(&inner, clock::now());
        let checks = futures::future::join_all(to_check.into_iter().map(|(name, addr)| {
            let inner = &inner;
            async move { (name, is_ready(inner, addr).await) }
        }))
        .await;
        apply_checks(&inner, checks, clock::now());
        if let Err((member, e)) = reconcile(&inner) {
            tracing::warn!(%member, error = %e, "cannot start pool member");
        }
    }
}

/// Removes members that exited, kills those past their drain grace or startup timeout, and
/// returns the members whose readiness is due for a check.
fn reap(inner: &Inner, now: Instant) -> Vec<(String, SocketAddr)> {
    let mut state = inner.state.lock().expect("pool state poisoned");
    let mut exited = Vec::new();
    for (i, m) in state.members.iter_mut().enumerate() {
        if let Ok(Some(_)) = m.child.try_wait() {
            exited.push(i);
        } else if let Phase::Draining {
            since,
            killed: false,
        } = m.phase
            && now.duration_since(since) >= inner.config.grace
        {
            let _ = m.child.start_kill();
            m.phase = Phase::Draining {
                since,
                killed: true,
            };
        } else if m.phase == Phase::Starting
            && now.duration_since(m.ready_changed) >= inner.config.startup_timeout
        {
            let _ = m.child.start_kill();
        }
    }
    for i in exited.into_iter().rev() {
        let m = state.members.remove(i);
        let kind = if matches!(m.phase, Phase::Draining { .. }) {
            PoolEventKind::Stopped
        } else {
            tracing::warn!(member = %m.name, "pool member exited unexpectedly; replacing it");
            PoolEventKind::Died
        };
        state.event(&m.name, kind, now);
    }
    publish(inner, &state);
    state
        .members
        .iter()
        .filter(|m| {
            m.phase == Phase::Starting
                || (m.phase == Phase::Ready && now.duration_since(m.last_check) >= RECHECK)
        })
        .filter_map(|m| m.addr.map(|a| (m.name.clone(), a)))
        .collect()
}

/// Moves members in and out of `Ready` by their checks, and publishes the new set.
fn apply_checks(inner: &Inner, checks: Vec<(String, bool)>, now: Instant) {
    let mut state = inner.state.lock().expect("pool state poisoned");
    let mut became_ready = Vec::new();
    for (name, ready) in checks {
        let Some(m) = state.members.iter_mut().find(|m| m.name == name) else {
            continue;
        };
        m.last_check = now;
        match (m.phase, ready) {
            (Phase::Starting, true) => {
                m.phase = Phase::Ready;
                m.ready_changed = now;
                became_ready.push(name);
            }
            (Phase::Ready, false) => {
                m.phase = Phase::Starting;
                m.ready_changed = now;
            }
            _ => {}
        }
    }
    for name in became_ready {
        state.event(&name, PoolEventKind::Ready, now);
    }
    publish(inner, &state);
}
