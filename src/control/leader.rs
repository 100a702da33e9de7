//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews every `retry_period`; another candidate takes the lease only after it saw
//! the record unchanged for a whole `lease_duration` (its own clock, so skew does not matter);
//! a holder that has not renewed within `renew_deadline` stops leading first, before the lease
//! can expire for the others; on shutdown the holder gives the lease up.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::clock::{self, Clock, Instant};

/// The election's knobs.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops leading (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following,
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    clock: Clock,
    /// The last record seen and when it was first seen in that form.
    observed: Option<(Option<String>, Option<String>, Instant)>,
}

impl Elector {
    /// A candidate through `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock: Clock::start(),
            observed: None,
        }
    }

    /// Campaigns until `shutdown`; `leading` is true exactly while this candidate holds a
    /// lease it renewed within `renew_deadline`. Gives the lease up on shutdown.
    pub async fn run(
        mut self,
        leading: watch::Sender<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = tokio::time::timeout(self.config.retry_period, self.try_once()).await;
            match attempt {
                Ok(Ok(Attempt::Leading)) => {
                    if !*leading.borrow() {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    }
                    last_renewal = Some(clock::now());
                    leading.send_if_modified(|l| !std::mem::replace(l, true));
                }
                Ok(Ok(Attempt::Following)) => {
                    last_renewal = None;
                    if leading.send_if_modified(|l| std::mem::replace(l, false)) {
                        tracing::warn!(lease = %self.config.name, "lost the lease");
                    }
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.config.name, "lease: {e}"),
                Err(_) => tracing::warn!(lease = %self.config.name, "lease: request timed out"),
            }
            if let Some(t) = last_renewal
                && clock::since(t) > self.config.renew_deadline
                && leading.send_if_modified(|l| std::mem::replace(l, false))
            {
                tracing::warn!(lease = %self.config.name, "could not renew within the deadline; stopped leading");
                last_renewal = None;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if leading.send_if_modified(|l| std::mem::replace(l, false)) {
            if let Err(e) = self.release().await {
                tracing::warn!(lease = %self.config.name, "could not release the lease: {e}");
            } else {
                tracing::info!(lease = %self.config.name, "released the lease");
            }
        }
    }

    fn now_micro(&self) -> MicroTime {
        let wall: SystemTime = self.clock.now().1;
        MicroTime(k8s_openapi::jiff::Timestamp::try_from(wall).unwrap_or_default())
    }

    /// One acquire-or-renew.
    async fn try_once(&mut self) -> Result<Attempt, kube::Error> {
        let me = self.config.identity.clone();
        let duration = self.config.lease_duration.as_secs().max(1) as i32;
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(self.now_micro()),
                    renew_time: Some(self.now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let now = clock::now();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(h, r, _)| *h != holder || *r != renew);
        if changed {
            self.observed = Some((holder.clone(), renew.clone(), now));
        }
        let held_by_me = holder.as_deref() == Some(me.as_str());
        let expired = holder.is_none()
            || self.observed.as_ref().is_some_and(|(_, _, at)| {
                now.duration_since(*at)
                    > Duration::from_secs(
                        spec.lease_duration_seconds.unwrap_or(duration).max(1) as u64
                    )
            });
        if !held_by_me && !expired {
            return Ok(Attempt::Following);
        }
        let mut next = lease.clone();
        let s = next.spec.get_or_insert_with(Default::default);
        if !held_by_me {
            s.acquire_time = Some(self.now_micro());
            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
        }
        s.holder_identity = Some(me);
        s.lease_duration_seconds = Some(duration);
        s.renew_time = Some(self.now_micro());
        // The resourceVersion of the read makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up: no holder, so the next candidate takes it at once.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let s = lease.spec.get_or_insert_with(Default::default);
        if s.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        s.holder_identity = None;
        s.lease_duration_seconds = Some(1);
        s.renew_time = Some(self.now_micro());
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// Which shard a policy belongs to: a stable hash (FNV-1a) of `namespace/name` modulo `shards`.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;

    fn reply(code: StatusCode, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    /// The leader creates the Lease, then the API server stops answering renewals: it stops
    /// leading once the renew deadline has passed, before the lease could expire for others.
    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_leading_within_the_renew_deadline() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let config = LeaseConfig {
            name: "tidescale".into(),
            namespace: "ops".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        let elector = Elector::new(Client::new(svc, "ops"), config);
        let (tx, mut rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let run = tokio::spawn(elector.run(tx, crate::control::runner::stopped(stop_rx)));
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/tidescale";
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!((req.method(), req.uri().path()), (&http::Method::GET, path));
        send.send_response(reply(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
        ));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::POST);
        let created = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "tidescale", "namespace": "ops", "resourceVersion": "1"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
        send.send_response(reply(StatusCode::CREATED, created));
        rx.wait_for(|l| *l).await.unwrap();
        let led_at = crate::clock::now();
        // Every renewal now fails.
        let failing = tokio::spawn(async move {
            while let Some((_, send)) = handle.next_request().await {
                send.send_response(reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({"kind": "Status", "code": 500}),
                ));
            }
        });
        rx.wait_for(|l| !*l).await.unwrap();
        let held = crate::clock::since(led_at);
        assert!(
            held > Duration::from_secs(10) && held < Duration::from_secs(15),
            "stopped leading after {held:?}"
        );
        stop_tx.send(true).unwrap();
        run.await.unwrap();
        failing.abort();
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("shop", "web", 1), 0);
        assert_eq!(shard_of("shop", "web", 4), shard_of("shop", "web", 4));
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_of("ns", &format!("p{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
