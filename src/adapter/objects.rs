//! Which pods a `labelSelector` selects, read from the cluster (R1.24), behind a short cache.
//!
//! The HPA averages every item a pods-metric answer carries, so a per-pod source that also
//! knows pods of other workloads must be cut down to the pods the selector really selects.
//! Those are live objects: only the API server knows them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::selector::Selector;

/// How long a pod list is reused for the same namespace and selector.
pub const POD_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long one list may take before the request is answered with an error; the HPA's own
/// request would otherwise wait on a stuck API server.
pub const POD_LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most (namespace, selector) lists kept at once.
pub const POD_CACHE_MAX: usize = 1024;

/// Why the pods of a selector could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodListError {
    /// The API server refused or could not be reached.
    #[error("listing pods in namespace {namespace} with labelSelector {selector:?}: {message}")]
    List {
        /// The namespace asked about.
        namespace: String,
        /// The selector sent (empty: every pod).
        selector: String,
        /// What went wrong.
        message: String,
    },
}

/// The names of the pods a label selector selects.
pub trait PodLister: Send + Sync {
    /// Names of the pods in `namespace` matching the Kubernetes label-selector string
    /// `selector` (empty: every pod of the namespace).
    fn pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> BoxFuture<'_, Result<Arc<BTreeSet<String>>, PodListError>>;
}

type Key = (String, String);

/// A cached list: when it was fetched, and the names.
type Entry = (Instant, Arc<BTreeSet<String>>);

/// Lists pods through the Kubernetes API (`list` on `pods`, metadata only), caching each
/// answer for [`POD_CACHE_TTL`] so HPA requests do not each reach the API server.
pub struct KubePodLister {
    client: kube::Client,
    max_entries: usize,
    cache: Mutex<HashMap<Key, Entry>>,
}

impl KubePodLister {
    /// A lister using `client`; its service account needs `list` on `pods`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            max_entries: POD_CACHE_MAX,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same lister keeping at most `n` (at least 1) cached lists.
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    fn cached(&self, key: &Key) -> Option<Arc<BTreeSet<String>>> {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.get(key)
            .filter(|(at, _)| clock::since(*at) < POD_CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    fn remember(&self, key: Key, names: Arc<BTreeSet<String>>) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= self.max_entries && !c.contains_key(&key) {
            c.retain(|_, (at, _)| clock::since(*at) < POD_CACHE_TTL);
            if c.len() >= self.max_entries
                && let Some(oldest) = c
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                c.remove(&oldest);
            }
        }
        c.insert(key, (clock::now(), names));
    }

    async fn fetch(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<BTreeSet<String>, PodListError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        // An empty selector is left out rather than sent as `labelSelector=`.
        let lp = if selector.is_empty() {
            ListParams::default()
        } else {
            ListParams::default().labels(selector)
        };
        let err = |message: String| PodListError::List {
            namespace: namespace.to_string(),
            selector: selector.to_string(),
            message,
        };
        let list = tokio::time::timeout(POD_LIST_TIMEOUT, api.list_metadata(&lp))
            .await
            .map_err(|_| err(format!("no answer within {POD_LIST_TIMEOUT:?}")))?
            .map_err(|e| err(e.to_string()))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect())
    }
}

impl PodLister for KubePodLister {
    fn pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> BoxFuture<'_, Result<Arc<BTreeSet<String>>, PodListError>> {
        let key = (namespace.to_string(), selector.to_string());
        Box::pin(async move {
            if let Some(hit) = self.cached(&key) {
                return Ok(hit);
            }
            let names = Arc::new(self.fetch(&key.0, &key.1).await?);
            self.remember(key, names.clone());
            Ok(names)
        })
    }
}

/// A fixed set of pods with labels, matched with the adapter's own selector parser; counts
/// calls and can be told to fail.
#[derive(Default)]
pub struct FakePodLister {
    /// `(namespace, pod name, labels)` of every pod.
    pub pods: Vec<(String, String, BTreeMap<String, String>)>,
    /// When set, every call fails with this message.
    pub fail: Option<String>,
    /// Every `(namespace, selector)` asked, in order.
    pub calls: Mutex<Vec<(String, String)>>,
}

impl FakePodLister {
    /// Adds a pod `name` in `namespace` with `labels`.
    pub fn with_pod(mut self, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Self {
        self.pods.push((
            namespace.to_string(),
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        self
    }

    /// The `(namespace, selector)` pairs asked so far.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl PodLister for FakePodLister {
    fn pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> BoxFuture<'_, Result<Arc<BTreeSet<String>>, PodListError>> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((namespace.to_string(), selector.to_string()));
        let err = |message: String| PodListError::List {
            namespace: namespace.to_string(),
            selector: selector.to_string(),
            message,
        };
        let result = match (&self.fail, Selector::parse(selector)) {
            (Some(why), _) => Err(err(why.clone())),
            (None, Err(e)) => Err(err(e.to_string())),
            (None, Ok(sel)) => Ok(Arc::new(
                self.pods
                    .iter()
                    .filter(|(ns, _, labels)| ns == namespace && sel.matches(labels))
                    .map(|(_, name, _)| name.clone())
                    .collect(),
            )),
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock::Handle;

    fn pod_list(names: &[&str]) -> Vec<u8> {
        let items: Vec<_> = names
            .iter()
            .map(|n| {
                json!({"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata",
                    "metadata":{"name":n,"namespace":"shop"}})
            })
            .collect();
        serde_json::to_vec(
            &json!({"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadataList",
            "metadata":{"resourceVersion":"42"},"items":items}),
        )
        .unwrap()
    }

    /// Answers the next request with `body`/`code` and returns its path and query.
    async fn answer(
        handle: &mut Handle<Request<Body>, Response<Body>>,
        code: StatusCode,
        body: Vec<u8>,
    ) -> (String, Option<String>, Option<String>) {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        let seen = (
            req.uri().path().to_string(),
            // kube 5 builds the query as `?&labelSelector=…`; the API server skips the empty
            // pair, so the leading `&` is dropped here and the rest compared exactly.
            req.uri()
                .query()
                .map(|q| q.strip_prefix('&').unwrap_or(q).to_string()),
            req.headers()
                .get(http::header::ACCEPT)
                .map(|v| v.to_str().unwrap().to_string()),
        );
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(body))
                .unwrap(),
        );
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn kube_lister_sends_the_selector_and_caches_for_the_ttl() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lister = Arc::new(KubePodLister::new(kube::Client::new(svc, "default")));

        let l = lister.clone();
        let first = tokio::spawn(async move { l.pods("shop", "app=web").await });
        let (path, query, accept) =
            answer(&mut handle, StatusCode::OK, pod_list(&["web-1", "web-2"])).await;
        assert_eq!(path, "/api/v1/namespaces/shop/pods");
        assert_eq!(query.as_deref(), Some("labelSelector=app%3Dweb"));
        assert!(
            accept
                .as_deref()
                .unwrap_or("")
                .contains("as=PartialObjectMetadataList"),
            "metadata-only list, got {accept:?}"
        );
        let names = first.await.unwrap().unwrap();
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["web-1", "web-2"]
        );

        // Within the TTL: answered from the cache, no request reaches the mock.
        tokio::time::advance(POD_CACHE_TTL - Duration::from_millis(10)).await;
        let again = tokio::time::timeout(Duration::from_secs(1), lister.pods("shop", "app=web"))
            .await
            .expect("answered from the cache, without waiting on the API server")
            .unwrap();
        assert_eq!(again, names);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), handle.next_request())
                .await
                .is_err(),
            "a cached answer must not reach the API server"
        );

        // Past the TTL: listed again, and the new answer is used.
        tokio::time::advance(Duration::from_millis(20)).await;
        let l = lister.clone();
        let third = tokio::spawn(async move { l.pods("shop", "app=web").await });
        let (path, query, _) = answer(&mut handle, StatusCode::OK, pod_list(&["web-3"])).await;
        assert_eq!(
            (path.as_str(), query.as_deref()),
            (
                "/api/v1/namespaces/shop/pods",
                Some("labelSelector=app%3Dweb")
            )
        );
        let names = third.await.unwrap().unwrap();
        assert_eq!(names.iter().collect::<Vec<_>>(), ["web-3"]);
    }

    #[tokio::test]
    async fn kube_lister_encodes_set_selectors_and_omits_an_empty_one() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lister = Arc::new(KubePodLister::new(kube::Client::new(svc, "default")));
        let l = lister.clone();
        let t = tokio::spawn(async move { l.pods("shop", "app=web,tier in (a,b)").await });
        let (_, query, _) = answer(&mut handle, StatusCode::OK, pod_list(&["a"])).await;
        assert_eq!(
            query.as_deref(),
            Some("labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29")
        );
        t.await.unwrap().unwrap();

        let l = lister.clone();
        let t = tokio::spawn(async move { l.pods("other", "").await });
        let (path, query, _) = answer(&mut handle, StatusCode::OK, pod_list(&[])).await;
        assert_eq!(path, "/api/v1/namespaces/other/pods");
        assert_eq!(
            query.as_deref().unwrap_or(""),
            "",
            "no labelSelector for everything"
        );
        assert!(t.await.unwrap().unwrap().is_empty());
    }

    #[tokio::test]
    async fn kube_lister_failure_names_the_api_error_and_is_not_cached() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lister = Arc::new(KubePodLister::new(kube::Client::new(svc, "default")));
        let forbidden = serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure",
            "message":"pods is forbidden: User \"system:serviceaccount:tidescale:adapter\" cannot list resource \"pods\"",
            "reason":"Forbidden","code":403}))
        .unwrap();
        let l = lister.clone();
        let t = tokio::spawn(async move { l.pods("shop", "app=web").await });
        answer(&mut handle, StatusCode::FORBIDDEN, forbidden).await;
        let err = t.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("namespace shop"), "{err}");
        assert!(err.contains("cannot list resource"), "{err}");

        let l = lister.clone();
        let t = tokio::spawn(async move { l.pods("shop", "app=web").await });
        let (path, _, _) = answer(&mut handle, StatusCode::OK, pod_list(&["web-1"])).await;
        assert_eq!(path, "/api/v1/namespaces/shop/pods", "a failure is retried");
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn kube_lister_cache_is_bounded_and_drops_the_oldest() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lister =
            Arc::new(KubePodLister::new(kube::Client::new(svc, "default")).with_max_entries(2));
        let ask = |sel: &'static str| {
            let l = lister.clone();
            tokio::spawn(async move { l.pods("shop", sel).await })
        };
        for sel in ["a=1", "a=2", "a=3"] {
            let t = ask(sel);
            answer(&mut handle, StatusCode::OK, pod_list(&["p"])).await;
            t.await.unwrap().unwrap();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(lister.cache.lock().unwrap().len(), 2);
        // `a=3` and `a=2` are still cached; `a=1`, the oldest, was dropped and is listed again.
        lister.pods("shop", "a=3").await.unwrap();
        lister.pods("shop", "a=2").await.unwrap();
        let t = ask("a=1");
        let (_, query, _) = answer(&mut handle, StatusCode::OK, pod_list(&["p"])).await;
        assert_eq!(query.as_deref(), Some("labelSelector=a%3D1"));
        t.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn kube_lister_gives_up_on_a_stuck_api_server() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lister = KubePodLister::new(kube::Client::new(svc, "default"));
        let stuck = tokio::spawn(async move {
            // Take the request and never answer it.
            let held = handle.next_request().await;
            tokio::time::sleep(POD_LIST_TIMEOUT * 10).await;
            drop(held);
        });
        let err = lister
            .pods("shop", "app=web")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within 5s"), "{err}");
        stuck.abort();
    }

    #[tokio::test]
    async fn fake_lister_matches_labels_per_namespace() {
        let fake = FakePodLister::default()
            .with_pod("shop", "web-1", &[("app", "web")])
            .with_pod("shop", "api-1", &[("app", "api")])
            .with_pod("other", "web-9", &[("app", "web")]);
        let got = fake.pods("shop", "app=web").await.unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), ["web-1"]);
        assert_eq!(fake.pods("shop", "").await.unwrap().len(), 2);
        assert_eq!(fake.calls().len(), 2);
        let failing = FakePodLister {
            fail: Some("boom".into()),
            ..Default::default()
        };
        assert!(
            failing
                .pods("shop", "")
                .await
                .unwrap_err()
                .to_string()
                .contains("boom")
        );
    }
}
