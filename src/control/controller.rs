//! The cluster controller behind `tidescale run`: watches `ScalingPolicy` objects (and native
//! HPAs, for the conflict guard), runs one [`PolicyLoop`] per policy it may run, restarts it
//! when the spec's generation changes, stops it when the policy goes, and reports the rest
//! (`InvalidSpec`, `TargetNotFound`, `ConflictingHPA`) in the policy's status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::{Notify, watch};

use super::leader::shard_of;
use super::plan::{HpaTarget, Placement, PolicyObject, plan};
use super::policy_loop::{LoopOptions, PolicyLoop};
use super::recorder::Recorder;
use super::runner::{drive, hold, stopped};
use super::status::{NotReady, PolicyKey, PolicyRef, StatusSink, StatusTracker};
use crate::clock::Clock;
use crate::metric::MetricId;
use crate::source::BuildContext;
use crate::spec::{ScalingPolicy, ScalingPolicySpec, TargetKind};
use crate::target::{KubeScale, PodCache, ScaleTarget};

/// What the controller watches and how it runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// A label selector on policies.
    pub selector: Option<String>,
    /// How many shards split the policies, and which one this process runs.
    pub shards: u32,
    /// This process's shard, `0..shards`.
    pub shard_index: u32,
    /// The default Prometheus URL for `prometheus` metrics.
    pub prometheus_url: Option<String>,
    /// How often metric values alone are written to a status.
    pub status_refresh: Duration,
    /// How often the whole plan is re-checked (a missing target, a new HPA).
    pub resync: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespaces: vec![],
            selector: None,
            shards: 1,
            shard_index: 0,
            prometheus_url: None,
            status_refresh: Duration::from_secs(30),
            resync: Duration::from_secs(10),
        }
    }
}

struct Running {
    metrics: Vec<String>,
    uid: String,
    generation: Option<i64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What every policy task shares.
struct Shared {
    client: Client,
    config: ControllerConfig,
    pods: PodCache,
    sink: Arc<dyn StatusSink>,
    recorder: Arc<dyn Recorder>,
    http: reqwest::Client,
}

/// Watches policies and HPAs; runs the loops of the policies this process owns.
pub struct Controller {
    shared: Arc<Shared>,
    running: HashMap<PolicyKey, Running>,
    held: HashMap<PolicyKey, (String, Option<i64>, NotReady)>,
}

/// Reflectors over one kind, one per watched namespace (or one for all).
struct Watches<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    stores: Vec<reflector::Store<K>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Drop for Watches<K> {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn watch_kind<K>(
    client: &Client,
    namespaces: &[String],
    labels: Option<&str>,
    changed: &Arc<Notify>,
) -> Watches<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let apis: Vec<Api<K>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for api in apis {
        let (store, writer) = reflector::store();
        let mut cfg = watcher::Config::default().any_semantic();
        if let Some(l) = labels {
            cfg = cfg.labels(l);
        }
        let stream = watcher(api, cfg).default_backoff().reflect(writer);
        let changed = changed.clone();
        tasks.push(tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(_) => changed.notify_one(),
                    Err(e) => tracing::warn!("{} watch: {e}", K::kind(&())),
                }
            }
        }));
        stores.push(store);
    }
    Watches { stores, tasks }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Watches<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    async fn ready(&self) {
        for s in &self.stores {
            let _ = s.wait_until_ready().await;
        }
    }

    fn objects(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }
}

impl Controller {
    /// A controller through `client` that writes statuses to `sink` and reports loops to
    /// `recorder`.
    pub fn new(
        client: Client,
        config: ControllerConfig,
        sink: Arc<dyn StatusSink>,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                pods: PodCache::new(client.clone()),
                client,
                config,
                sink,
                recorder,
                http: reqwest::Client::new(),
            }),
            running: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Watches and reconciles until `shutdown`; then stops every loop and waits for them.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let changed = Arc::new(Notify::new());
        let cfg = &self.shared.config;
        let policies: Watches<ScalingPolicy> = watch_kind(
            &self.shared.client,
            &cfg.namespaces,
            cfg.selector.as_deref(),
            &changed,
        );
        let hpas: Watches<HorizontalPodAutoscaler> =
            watch_kind(&self.shared.client, &cfg.namespaces, None, &changed);
        tokio::select! {
            () = &mut shutdown => return,
            () = async { policies.ready().await; hpas.ready().await } => {}
        }
        tracing::info!("policies and HPAs listed; reconciling");
        let resync = self.shared.config.resync;
        loop {
            self.reconcile(&policies.objects(), &hpas.objects()).await;
            tokio::select! {
                () = &mut shutdown => break,
                () = changed.notified() => {
                    // Let a burst of events settle into one pass.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                () = tokio::time::sleep(resync) => {}
            }
        }
        self.stop_all().await;
    }

    /// How many policy loops run now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    async fn stop_all(&mut self) {
        let all: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        for r in all {
            let _ = r.task.await;
        }
    }

    async fn reconcile(
        &mut self,
        policies: &[Arc<ScalingPolicy>],
        hpas: &[Arc<HorizontalPodAutoscaler>],
    ) {
        let objects: Vec<PolicyObject> = policies.iter().filter_map(|p| policy_object(p)).collect();
        let hpas: Vec<HpaTarget> = hpas.iter().filter_map(|h| hpa_target(h)).collect();
        let (shards, index) = (self.shared.config.shards, self.shared.config.shard_index);
        let placed = plan(&objects, &hpas, |k| {
            shard_of(&k.namespace, &k.name, shards) == index
        });
        let stale: Vec<PolicyKey> = self
            .running
            .iter()
            .filter(|(key, r)| {
                let current = objects.iter().find(|o| &o.key == *key);
                placed.get(*key) != Some(&Placement::Run)
                    || current.is_none_or(|o| o.uid != r.uid || o.generation != r.generation)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(r) = self.running.remove(&key) {
                tracing::info!(policy = %key, "stopping the policy's loop");
                let _ = r.stop.send(true);
                let _ = r.task.await;
                self.shared.recorder.forget(&key.to_string(), &r.metrics);
            }
        }
        self.held.retain(|k, _| objects.iter().any(|o| &o.key == k));
        for obj in objects {
            match placed.get(&obj.key) {
                Some(Placement::Run) => {
                    self.held.remove(&obj.key);
                    if !self.running.contains_key(&obj.key) {
                        self.start(obj);
                    }
                }
                Some(Placement::Hold(why)) => self.hold(obj, why).await,
                _ => {
                    self.held.remove(&obj.key);
                }
            }
        }
    }

    async fn hold(&mut self, obj: PolicyObject, why: &NotReady) {
        let mark = (obj.uid.clone(), obj.generation, why.clone());
        if self.held.get(&obj.key) == Some(&mark) {
            return;
        }
        tracing::warn!(policy = %obj.key, "not running: {why:?}");
        let mut tracker = tracker_for(&obj, self.shared.config.status_refresh);
        let policy = PolicyRef {
            key: obj.key.clone(),
            uid: obj.uid.clone(),
        };
        hold(&mut tracker, &*self.shared.sink, &policy, why).await;
        self.held.insert(obj.key, mark);
    }

    fn start(&mut self, obj: PolicyObject) {
        tracing::info!(policy = %obj.key, generation = ?obj.generation, "starting the policy's loop");
        let (stop_tx, stop_rx) = watch::channel(false);
        let key = obj.key.clone();
        let (uid, generation) = (obj.uid.clone(), obj.generation);
        let metrics = obj.spec.metrics.iter().map(|m| m.name.clone()).collect();
        let task = tokio::spawn(run_policy(self.shared.clone(), obj, stop_rx));
        self.running.insert(
            key,
            Running {
                metrics,
                uid,
                generation,
                stop: stop_tx,
                task,
            },
        );
    }
}

/// The status tracker of a policy object, starting from the status it carries.
fn tracker_for(obj: &PolicyObject, refresh: Duration) -> StatusTracker {
    let targets: BTreeMap<String, String> = obj
        .spec
        .metrics
        .iter()
        .map(|m| (m.name.clone(), target_text(m)))
        .collect();
    let sources = obj
        .spec
        .metrics
        .iter()
        .map(|m| {
            let kind = if m.scrape.is_some() {
                "Pods"
            } else if m.resource.is_some() {
                "Resource"
            } else {
                "External"
            };
            (m.name.clone(), kind)
        })
        .collect();
    StatusTracker::new(
        obj.generation,
        targets,
        sources,
        obj.status.clone(),
        refresh,
    )
}

fn target_text(m: &crate::spec::MetricSpec) -> String {
    let t = &m.target;
    match t.kind {
        TargetKind::Utilization => format!("{}%", t.average_utilization.unwrap_or(0)),
        TargetKind::AverageValue => format!(
            "{}/pod",
            t.average_value.map(|q| q.to_string()).unwrap_or_default()
        ),
        TargetKind::Value => t.value.map(|q| q.to_string()).unwrap_or_default(),
    }
}

/// One policy's task: resolve its target (holding while it is missing), then run its loop.
async fn run_policy(shared: Arc<Shared>, obj: PolicyObject, stop: watch::Receiver<bool>) {
    let policy = PolicyRef {
        key: obj.key.clone(),
        uid: obj.uid.clone(),
    };
    let mut tracker = tracker_for(&obj, shared.config.status_refresh);
    let spec = &obj.spec;
    let target = loop {
        let t = &spec.target_ref;
        match KubeScale::resolve(
            shared.client.clone(),
            shared.pods.clone(),
            &obj.key.namespace,
            t.api_version.as_deref(),
            &t.kind,
            &t.name,
        )
        .await
        {
            Ok(t) => break Arc::new(t),
            Err(e) => {
                hold(
                    &mut tracker,
                    &*shared.sink,
                    &policy,
                    &NotReady::TargetNotFound(e.to_string()),
                )
                .await;
                tokio::select! {
                    () = stopped(stop.clone()) => return,
                    () = tokio::time::sleep(shared.config.resync) => {}
                }
            }
        }
    };
    // The first read learns the selector that `{{ selector }}` in queries stands for.
    let _ = target.status().await;
    let lp = match build_loop(&shared, &obj, spec, target) {
        Ok(lp) => lp,
        Err(why) => {
            hold(&mut tracker, &*shared.sink, &policy, &why).await;
            return;
        }
    };
    drive(lp, tracker, shared.sink.clone(), policy, stop).await;
}

fn build_loop(
    shared: &Shared,
    obj: &PolicyObject,
    spec: &ScalingPolicySpec,
    target: Arc<KubeScale>,
) -> Result<PolicyLoop, NotReady> {
    let invalid = |lines: Vec<String>| NotReady::InvalidSpec(lines);
    let policy = spec
        .validate()
        .map_err(|e| invalid(e.problems.iter().map(ToString::to_string).collect()))?;
    let name = obj.key.to_string();
    let ctx = BuildContext {
        metric: MetricId::new(name.clone(), String::new()),
        namespace: obj.key.namespace.clone(),
        selector: target.selector(),
        http: shared.http.clone(),
        kube: Some(shared.client.clone()),
        prometheus_url: shared.config.prometheus_url.clone(),
        pods: None,
        processes: None,
        clock: Clock::start(),
    };
    let interval = spec.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5));
    let target: Arc<dyn ScaleTarget> = target;
    PolicyLoop::new(
        spec,
        policy,
        target,
        ctx,
        None,
        shared.recorder.clone(),
        LoopOptions::every(&name, interval),
    )
    .map_err(|e| invalid(vec![e.to_string()]))
}

/// The planner's view of a policy object; `None` for one without a name or namespace.
fn policy_object(p: &ScalingPolicy) -> Option<PolicyObject> {
    let meta = p.meta();
    Some(PolicyObject {
        key: PolicyKey {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
        },
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation,
        created: meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        spec: p.spec.clone(),
        status: p.status.clone(),
    })
}

fn hpa_target(h: &HorizontalPodAutoscaler) -> Option<HpaTarget> {
    let meta = h.meta();
    let spec = h.spec.as_ref()?;
    Some(HpaTarget {
        key: PolicyKey {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
        },
        api_version: spec.scale_target_ref.api_version.clone(),
        kind: spec.scale_target_ref.kind.clone(),
        name: spec.scale_target_ref.name.clone(),
    })
}
