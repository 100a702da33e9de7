//! The status sink of the cluster: server-side apply of `status` through the status subresource
//! (field manager `tidescale`), and events through `events.k8s.io/v1`.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::events::PolicyEvent;
use super::status::{PolicyRef, StatusSink};
use crate::spec::{ScalingPolicy, ScalingPolicyStatus};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "tidescale";

/// Writes statuses and events to the API server.
#[derive(Clone)]
pub struct KubeStatusSink {
    client: Client,
    reporter: Reporter,
}

impl std::fmt::Debug for KubeStatusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStatusSink").finish_non_exhaustive()
    }
}

impl KubeStatusSink {
    /// A sink through `client`; events name `instance` (the pod) as their reporter.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "tidescale".into(),
            instance,
        };
        Self { reporter, client }
    }
}

/// The apply body: only `status`, so the spec is never touched.
pub fn status_patch(status: &ScalingPolicyStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "ScalingPolicy",
        "status": status,
    })
}

impl StatusSink for KubeStatusSink {
    fn write_status<'a>(
        &'a self,
        policy: &'a PolicyRef,
        status: &'a ScalingPolicyStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let api: Api<ScalingPolicy> =
                Api::namespaced(self.client.clone(), &policy.key.namespace);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch_status(
                &policy.key.name,
                &params,
                &Patch::Apply(status_patch(status)),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }

    fn publish<'a>(
        &'a self,
        policy: &'a PolicyRef,
        event: &'a PolicyEvent,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let reference = ObjectReference {
                api_version: Some("tidescale.io/v1alpha1".into()),
                kind: Some("ScalingPolicy".into()),
                name: Some(policy.key.name.clone()),
                namespace: Some(policy.key.namespace.clone()),
                uid: Some(policy.uid.clone()),
                ..Default::default()
            };
            let ev = Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.clone(),
                note: Some(event.note.clone()),
                action: if event.reason.contains("Rescale") {
                    "Scale".into()
                } else {
                    "Evaluate".into()
                },
                secondary: None,
            };
            // A fresh recorder per event: kube's own cache would fold a new note into the
            // series of an older event with the same reason ("New size: 4 (x2)" for 4 then
            // 6); repeats are already limited by the tracker's EventLimiter.
            Recorder::new(self.client.clone(), self.reporter.clone())
                .publish(&ev, &reference)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::status::PolicyKey;
    use http::{Request, Response};
    use kube::client::Body;

    #[tokio::test]
    async fn a_status_write_is_a_forced_apply_of_the_status_subresource() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let sink = KubeStatusSink::new(Client::new(svc, "default"), None);
        let status = ScalingPolicyStatus {
            observed_generation: Some(2),
            desired_replicas: Some(4),
            ..Default::default()
        };
        let policy = PolicyRef {
            key: PolicyKey {
                namespace: "shop".into(),
                name: "web".into(),
            },
            uid: "u-1".into(),
        };
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            assert_eq!(
                req.uri().path(),
                "/apis/tidescale.io/v1alpha1/namespaces/shop/scalingpolicies/web/status"
            );
            let query = req.uri().query().unwrap_or("");
            let query = query.strip_prefix('&').unwrap_or(query);
            assert_eq!(query, "force=true&fieldManager=tidescale");
            assert_eq!(
                req.headers()[http::header::CONTENT_TYPE],
                "application/apply-patch+yaml"
            );
            let body = req.into_body().collect_bytes().await.unwrap();
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                got,
                serde_json::json!({"apiVersion": "tidescale.io/v1alpha1", "kind": "ScalingPolicy",
                    "status": {"observedGeneration": 2, "desiredReplicas": 4}})
            );
            let reply = serde_json::json!({"apiVersion": "tidescale.io/v1alpha1", "kind": "ScalingPolicy",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                    "metrics": [{"name": "rps", "prometheus": {"query": "x"}, "target": {"type": "Value", "value": 1}}]},
                "status": {"observedGeneration": 2, "desiredReplicas": 4}});
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&reply).unwrap(),
            )));
        });
        sink.write_status(&policy, &status).await.unwrap();
        server.await.unwrap();
    }
}
