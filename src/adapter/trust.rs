//! Trust roots for client certificates: from flags (files), or from the
//! `kube-system/extension-apiserver-authentication` ConfigMap kube-apiserver maintains (R3.8).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::tls::{TlsError, read_certs};

/// The ConfigMap's namespace and name.
pub const CONFIGMAP: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

/// CA bundles and the front-proxy name list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrustRoots {
    /// Signs ordinary client certificates.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
    /// Signs the front proxy's certificate.
    pub requestheader_ca: Option<Vec<CertificateDer<'static>>>,
    /// CNs allowed for the front proxy (empty: any).
    pub allowed_names: Vec<String>,
}

/// Why the trust roots could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A CA file was unreadable.
    #[error(transparent)]
    File(#[from] TlsError),
    /// A ConfigMap key held something unusable.
    #[error("{}/{} key {key}: {why}", CONFIGMAP.0, CONFIGMAP.1)]
    Key {
        /// The key.
        key: String,
        /// What was wrong.
        why: String,
    },
    /// The ConfigMap could not be read (a Forbidden error means the
    /// `extension-apiserver-authentication-reader` RoleBinding is missing).
    #[error("cannot read kube-system/extension-apiserver-authentication: {0}")]
    Fetch(String),
}

fn pem_bundle(key: &str, text: &str) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Key {
            key: key.into(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TrustError::Key {
            key: key.into(),
            why: "no certificate in the bundle".into(),
        });
    }
    Ok(certs)
}

fn json_list(key: &str, text: Option<&String>) -> Result<Vec<String>, TrustError> {
    match text.map(|t| t.trim()) {
        None | Some("") => Ok(vec![]),
        Some(t) => serde_json::from_str(t).map_err(|e| TrustError::Key {
            key: key.into(),
            why: format!("not a JSON string array: {e}"),
        }),
    }
}

/// Reads the ConfigMap's `data` (R3.9: list values are JSON arrays stored as strings; an empty
/// or missing key means "not configured").
pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<TrustRoots, TrustError> {
    let bundle = |k: &str| -> Result<Option<Vec<CertificateDer<'static>>>, TrustError> {
        match data.get(k).filter(|v| !v.trim().is_empty()) {
            Some(v) => pem_bundle(k, v).map(Some),
            None => Ok(None),
        }
    };
    for (key, default) in [
        ("requestheader-username-headers", "x-remote-user"),
        ("requestheader-group-headers", "x-remote-group"),
        ("requestheader-extra-headers-prefix", "x-remote-extra-"),
    ] {
        let names = json_list(key, data.get(key))?;
        if names.iter().any(|n| !n.eq_ignore_ascii_case(default)) {
            tracing::warn!(key, ?names, "only the default {default} header is read");
        }
    }
    Ok(TrustRoots {
        client_ca: bundle("client-ca-file")?,
        requestheader_ca: bundle("requestheader-client-ca-file")?,
        allowed_names: json_list(
            "requestheader-allowed-names",
            data.get("requestheader-allowed-names"),
        )?,
    })
}

/// Reads the ConfigMap through `client`.
pub async fn fetch(client: kube::Client) -> Result<TrustRoots, TrustError> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, CONFIGMAP.0);
    let cm = api
        .get(CONFIGMAP.1)
        .await
        .map_err(|e| TrustError::Fetch(e.to_string()))?;
    from_configmap_data(&cm.data.unwrap_or_default())
}

/// Where the trust roots come from: the CA files given as flags and, for whatever they do not
/// give, the ConfigMap. Read again periodically so that rotated bundles take effect (R3.8).
#[derive(Clone)]
pub struct TrustSource {
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--requestheader-client-ca-file`.
    pub requestheader_ca_file: Option<PathBuf>,
    /// `--requestheader-allowed-names`.
    pub allowed_names: Vec<String>,
    /// The cluster whose ConfigMap fills in the rest; `None`: the files only.
    pub cluster: Option<kube::Client>,
}

impl TrustSource {
    /// Reads the files and (if there is a cluster) the ConfigMap, and merges them.
    pub async fn load(&self) -> Result<TrustRoots, TrustError> {
        let from_cluster = match &self.cluster {
            Some(c) => Some(fetch(c.clone()).await?),
            None => None,
        };
        merge(
            self.client_ca_file.as_deref(),
            self.requestheader_ca_file.as_deref(),
            &self.allowed_names,
            from_cluster,
        )
    }
}

/// Trust roots from flags; anything a flag does not give is taken from `from_cluster`.
pub fn merge(
    client_ca_file: Option<&Path>,
    requestheader_ca_file: Option<&Path>,
    allowed_names: &[String],
    from_cluster: Option<TrustRoots>,
) -> Result<TrustRoots, TrustError> {
    let cluster = from_cluster.unwrap_or_default();
    let requestheader_ca = match requestheader_ca_file {
        Some(f) => Some(read_certs(f)?),
        None => cluster.requestheader_ca,
    };
    Ok(TrustRoots {
        client_ca: match client_ca_file {
            Some(f) => Some(read_certs(f)?),
            None => cluster.client_ca,
        },
        allowed_names: if requestheader_ca_file.is_some() || !allowed_names.is_empty() {
            allowed_names.to_vec()
        } else {
            cluster.allowed_names
        },
        requestheader_ca,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    #[tokio::test]
    async fn reads_the_extension_apiserver_authentication_configmap() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let pem = ca_pem();
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {"client-ca-file": pem, "requestheader-client-ca-file": pem,
                "requestheader-allowed-names": "[\"front-proxy-client\"]",
                "requestheader-username-headers": "[\"X-Remote-User\"]"}});
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                req.uri().path(),
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
            );
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        });
        let roots = fetch(kube::Client::new(svc, "default")).await.unwrap();
        server.await.unwrap();
        assert_eq!(roots.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(roots.client_ca.unwrap().len(), 1);
        assert!(roots.requestheader_ca.is_some());
    }

    #[tokio::test]
    async fn a_trust_source_reads_the_configmap_again_on_each_load_and_flags_win() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let rotations = [ca_pem(), ca_pem()];
        let answers = rotations.clone();
        let server = tokio::spawn(async move {
            for pem in answers {
                let (_, send) = handle.next_request().await.unwrap();
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIGMAP.1, "namespace": CONFIGMAP.0},
                    "data": {"client-ca-file": pem, "requestheader-client-ca-file": pem}});
                send.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let front_proxy = dir.path().join("front-proxy-ca.pem");
        std::fs::write(&front_proxy, ca_pem()).unwrap();
        let source = TrustSource {
            client_ca_file: None,
            requestheader_ca_file: Some(front_proxy.clone()),
            allowed_names: vec![],
            cluster: Some(kube::Client::new(svc, "default")),
        };
        let first = source.load().await.unwrap();
        let second = source.load().await.unwrap();
        server.await.unwrap();
        let pem_of = |r: &TrustRoots| r.client_ca.clone().unwrap();
        assert_eq!(pem_of(&first), pem_bundle("a", &rotations[0]).unwrap());
        assert_eq!(pem_of(&second), pem_bundle("b", &rotations[1]).unwrap());
        // The flag's file, not the ConfigMap, gives the front-proxy CA both times.
        let from_file = Some(read_certs(&front_proxy).unwrap());
        assert_eq!(
            (first.requestheader_ca, second.requestheader_ca),
            (from_file.clone(), from_file)
        );
    }

    #[test]
    fn empty_keys_mean_not_configured_and_bad_ones_are_named() {
        let data = BTreeMap::from([
            ("requestheader-allowed-names".to_string(), "[]".to_string()),
            ("client-ca-file".to_string(), "".to_string()),
        ]);
        assert_eq!(from_configmap_data(&data).unwrap(), TrustRoots::default());
        let bad = BTreeMap::from([(
            "requestheader-allowed-names".to_string(),
            "front-proxy-client".to_string(),
        )]);
        assert!(
            from_configmap_data(&bad)
                .unwrap_err()
                .to_string()
                .contains("requestheader-allowed-names")
        );
        let bad = BTreeMap::from([("client-ca-file".to_string(), "not a pem".to_string())]);
        assert!(
            from_configmap_data(&bad)
                .unwrap_err()
                .to_string()
                .contains("client-ca-file")
        );
    }
}
