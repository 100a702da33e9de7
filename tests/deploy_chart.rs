//! The Helm chart, the kustomize manifests and the demo's manifests, offline: `helm lint
//! --strict`, every render (defaults, each mode, every option) through kubernetes-validate for
//! Kubernetes 1.33, 1.35 and 1.37, the shipped copies (CRD, alert rules) equal to their
//! sources, the kustomize base equal to the chart's default render, and the properties the
//! Deployments must have (replicas, leader election, probes, hardening, drain budget).
//!
//! The tools come from `scripts/install-kubectl.sh` (`.tools/bin`, `.tools/venv`).

mod deploy_support;

use deploy_support::{
    CHART, Helm, find, find_all, kubectl_kustomize, repo, run_ok, validate, yaml_docs,
};
use serde_json::Value;

const VERSIONS: [&str; 3] = ["1.33.0", "1.35.0", "1.37.0"];

/// Kinds defined by other projects' CRDs (cert-manager, prometheus-operator, ours): the
/// validator has no schema for them. Ours is checked by the API server in the cluster tests and
/// by `tidescale check`.
const FOREIGN_KINDS: [&str; 5] = [
    "Certificate",
    "Issuer",
    "ServiceMonitor",
    "PrometheusRule",
    "ScalingPolicy",
];

fn values(name: &str) -> String {
    repo()
        .join(CHART)
        .join("ci")
        .join(name)
        .display()
        .to_string()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn helm_lint_strict_passes_for_defaults_and_every_values_file() {
    let helm = Helm::new();
    helm.ok(&[
        "lint",
        "--strict",
        &repo().join(CHART).display().to_string(),
    ]);
    for v in [
        "all-options-values.yaml",
        "adapter-values.yaml",
        "scaler-values.yaml",
    ] {
        helm.ok(&[
            "lint",
            "--strict",
            &repo().join(CHART).display().to_string(),
            "-f",
            &values(v),
        ]);
    }
}

#[test]
fn every_render_validates_on_1_33_1_35_and_1_37() {
    let helm = Helm::new();
    let renders = [
        ("defaults", helm.template(&["--include-crds"])),
        (
            "all options",
            helm.template(&["--include-crds", "-f", &values("all-options-values.yaml")]),
        ),
        (
            "adapter",
            helm.template(&["-f", &values("adapter-values.yaml")]),
        ),
        (
            "scaler",
            helm.template(&["-f", &values("scaler-values.yaml")]),
        ),
    ];
    for (name, yaml) in &renders {
        for v in VERSIONS {
            validate(name, yaml, v, &FOREIGN_KINDS);
        }
    }
}

#[test]
fn each_mode_renders_exactly_its_parts() {
    let helm = Helm::new();
    let both = yaml_docs(&helm.template(&[]));
    let adapter = yaml_docs(&helm.template(&["-f", &values("adapter-values.yaml")]));
    let scaler = yaml_docs(&helm.template(&["-f", &values("scaler-values.yaml")]));
    let expected_both = [
        "APIService/v1beta1.custom.metrics.k8s.io",
        "APIService/v1beta1.external.metrics.k8s.io",
        "APIService/v1beta2.custom.metrics.k8s.io",
        "ClusterRole/tidescale-adapter-resources",
        "ClusterRole/tidescale-custom-metrics-reader",
        "ClusterRole/tidescale-external-metrics-reader",
        "ClusterRole/tidescale-metrics-scraper",
        "ClusterRole/tidescale-scaler",
        "ClusterRoleBinding/tidescale-adapter-resources",
        "ClusterRoleBinding/tidescale-auth-delegator",
        "ClusterRoleBinding/tidescale-hpa-custom-metrics",
        "ClusterRoleBinding/tidescale-hpa-external-metrics",
        "ClusterRoleBinding/tidescale-scaler",
        "ConfigMap/tidescale-adapter",
        "Deployment/tidescale",
        "PodDisruptionBudget/tidescale",
        "Role/tidescale-leader-election",
        "RoleBinding/tidescale-auth-reader",
        "RoleBinding/tidescale-leader-election",
        "Secret/tidescale-tls",
        "Service/tidescale",
        "ServiceAccount/tidescale",
    ];
    assert_eq!(kinds(&both), expected_both);
    let scaler_kinds = kinds(&scaler);
    assert!(
        scaler_kinds
            .iter()
            .all(|k| !k.starts_with("APIService/") && !k.starts_with("Secret/")),
        "{scaler_kinds:?}"
    );
    assert!(scaler_kinds.contains(&"Role/tidescale-leader-election".to_string()));
    let adapter_kinds = kinds(&adapter);
    assert!(
        adapter_kinds
            .iter()
            .all(|k| !k.contains("scaler") && !k.contains("leader-election")),
        "{adapter_kinds:?}"
    );
    // A user-provided certificate: no Secret from the chart, their CA in every caBundle.
    assert!(!adapter_kinds.iter().any(|k| k.starts_with("Secret/")));
    let provided = std::fs::read_to_string(values("adapter-values.yaml")).unwrap();
    for api in find_all(&adapter, "APIService") {
        let pem = base64_decode(api["spec"]["caBundle"].as_str().unwrap());
        let first = String::from_utf8(pem)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        assert!(provided.contains(&first), "{first}");
    }
    let args = |docs: &[Value]| -> Vec<String> {
        find(docs, "Deployment", "tidescale")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let a = args(&adapter);
    assert_eq!(a[0], "adapter", "{a:?}");
    assert!(a.contains(&"--tls-cert-file=/var/run/tidescale/tls/tls.crt".into()));
    let s = args(&scaler);
    assert_eq!(s[0], "run", "{s:?}");
    assert!(
        !s.iter()
            .any(|x| x.starts_with("--adapter-") || x.starts_with("--tls-"))
    );
    let b = args(&both);
    assert_eq!(b[0], "run", "{b:?}");
    for flag in [
        "--leader-elect=true",
        "--lease-name=tidescale",
        "--lease-namespace=tidescale",
        "--adapter-config=/etc/tidescale/adapter.yaml",
        "--adapter-listen=0.0.0.0:6443",
        "--metrics-listen=0.0.0.0:8080",
    ] {
        assert!(b.contains(&flag.to_string()), "{flag} missing: {b:?}");
    }
    for argv in [&a, &s, &b] {
        the_binary_accepts(argv);
    }
}

/// The real binary parses `argv` and its settings hold: with no cluster to reach it stops at the
/// Kubernetes client (exit 1), not at a usage error (exit 2) or a settings problem.
fn the_binary_accepts(argv: &[String]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args(argv)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{argv:?}: {err}");
    assert!(
        err.contains("tidescale: kubernetes client:"),
        "{argv:?} stopped before the cluster: {err}"
    );
}

#[test]
fn generated_certificate_signs_the_service_name_and_is_the_ca_bundle() {
    let helm = Helm::new();
    let docs = yaml_docs(&helm.template(&[]));
    let secret = find(&docs, "Secret", "tidescale-tls");
    let ca = secret["data"]["ca.crt"].as_str().unwrap();
    for api in find_all(&docs, "APIService") {
        assert_eq!(api["spec"]["caBundle"].as_str().unwrap(), ca);
        assert_eq!(api["spec"]["service"]["name"], "tidescale");
    }
    let dir = tempfile::tempdir().unwrap();
    let decode = |b64: &str, name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, base64_decode(b64)).unwrap();
        p.display().to_string()
    };
    let ca_file = decode(ca, "ca.crt");
    let crt = decode(secret["data"]["tls.crt"].as_str().unwrap(), "tls.crt");
    let out = run_ok("openssl", &["verify", "-CAfile", &ca_file, &crt]);
    assert!(out.contains(": OK"), "{out}");
    let text = run_ok(
        "openssl",
        &["x509", "-in", &crt, "-noout", "-ext", "subjectAltName"],
    );
    assert!(text.contains("DNS:tidescale.tidescale.svc"), "{text}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = alphabet.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[test]
fn shipped_copies_equal_their_sources() {
    let read = |p: &str| std::fs::read(repo().join(p)).unwrap();
    assert!(
        read("deploy/helm/tidescale/crds/scalingpolicies.tidescale.io.yaml")
            == read("deploy/crds/scalingpolicies.tidescale.io.yaml"),
        "the chart's CRD differs from deploy/crds/: copy it over"
    );
    assert!(
        read("deploy/helm/tidescale/files/alerts.yaml") == read("dashboards/alerts.yaml"),
        "the chart's alert rules differ from dashboards/alerts.yaml: copy it over"
    );
    // The PrometheusRule carries exactly those groups.
    let docs = yaml_docs(&Helm::new().template(&["--set", "prometheusRule.enabled=true"]));
    let rule = find(&docs, "PrometheusRule", "tidescale");
    let alerts = yaml_docs(&String::from_utf8(read("dashboards/alerts.yaml")).unwrap());
    assert_eq!(rule["spec"]["groups"], alerts[0]["groups"]);
}

/// Integral floats as integers: kustomize writes `65535.0` as `65535`, the same number.
fn canonical_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && !n.is_i64()) {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(canonical_numbers),
        Value::Object(o) => o.values_mut().for_each(canonical_numbers),
        _ => {}
    }
}

/// The path of the first difference between `a` and `b`, if any.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// The generated key material differs on every render: compare everything else.
fn without_generated_certificates(mut docs: Vec<Value>) -> Vec<Value> {
    for d in &mut docs {
        canonical_numbers(d);
        if d["kind"] == "Secret" && d["type"] == "kubernetes.io/tls" {
            d["data"] = Value::String("<generated>".into());
        }
        if d["kind"] == "APIService" {
            d["spec"]["caBundle"] = Value::String("<generated>".into());
        }
    }
    docs.sort_by_key(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]));
    docs
}

#[test]
fn kustomize_base_equals_the_default_render() {
    let render = Helm::new().template(&["--include-crds"]);
    let base = kubectl_kustomize("deploy/manifests/base");
    let (r, b) = (
        without_generated_certificates(yaml_docs(&render)),
        without_generated_certificates(yaml_docs(&base)),
    );
    assert_eq!(r.len(), b.len(), "object counts differ");
    for (x, y) in r.iter().zip(&b) {
        if let Some(diff) = first_difference(x, y, "") {
            panic!(
                "deploy/manifests/base differs from the chart's default render for {}/{} at \
                 {diff}: run deploy/manifests/render.sh",
                x["kind"], x["metadata"]["name"]
            );
        }
    }
    // The overlay builds and validates: cert-manager replaces the placeholder material.
    let overlay = kubectl_kustomize("deploy/manifests/overlays/cert-manager");
    for v in VERSIONS {
        validate("cert-manager overlay", &overlay, v, &FOREIGN_KINDS);
    }
    let docs = yaml_docs(&overlay);
    assert!(find_all(&docs, "Secret").is_empty());
    for api in find_all(&docs, "APIService") {
        assert!(api["spec"]["caBundle"].is_null(), "{api}");
        assert_eq!(
            api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "tidescale/tidescale"
        );
    }
}

#[test]
fn the_deployment_is_hardened_and_highly_available() {
    let docs = yaml_docs(&Helm::new().template(&[]));
    let d = find(&docs, "Deployment", "tidescale");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(spread.len(), 2);
    let pdb = find(&docs, "PodDisruptionBudget", "tidescale");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn demo_manifests_validate_and_drain_within_their_grace_period() {
    for dir in [
        "deploy/demo",
        "deploy/demo/blue-green",
        "deploy/demo/canary",
    ] {
        let yaml = kubectl_kustomize(dir);
        for v in VERSIONS {
            validate(dir, &yaml, v, &FOREIGN_KINDS);
        }
    }
    let docs = yaml_docs(&kubectl_kustomize("deploy/demo"));
    let d = find(&docs, "Deployment", "demo-service");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let config = &find(&docs, "ConfigMap", "demo-service")["data"];
    let num = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .unwrap();
    let drain = num(&config["DRAIN_DELAY_MS"]) / 1000.0 + num(&config["SHUTDOWN_GRACE_SECONDS"]);
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    assert!(
        pre_stop + drain < grace,
        "preStop {pre_stop} s + drain {drain} s must fit in terminationGracePeriodSeconds {grace}"
    );
    for arg in [
        "--drain-delay-ms=$(DRAIN_DELAY_MS)",
        "--shutdown-grace=$(SHUTDOWN_GRACE_SECONDS)",
    ] {
        assert!(
            c["args"].as_array().unwrap().iter().any(|a| a == arg),
            "{arg}"
        );
    }
    // The ScalingPolicy passes tidescale's own validation.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("check")
        .arg(repo().join("deploy/demo/scalingpolicy.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfiles_are_multi_stage_non_root_and_match_the_manifests() {
    let rust_version = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap();
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    let chart = yaml_docs(&Helm::new().template(&[]));
    let demo = yaml_docs(&kubectl_kustomize("deploy/demo"));
    let cases = [
        (
            "Dockerfile",
            "tidescale",
            find(&chart, "Deployment", "tidescale"),
        ),
        (
            "demo/Dockerfile",
            "demo-service",
            find(&demo, "Deployment", "demo-service"),
        ),
    ];
    for (file, bin, deployment) in cases {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(froms.len(), 2, "{file}: a build stage and a runtime stage");
        let builder = froms[0].split_whitespace().nth(1).unwrap();
        let tag = builder
            .trim_start_matches("rust:")
            .split('-')
            .next()
            .unwrap();
        assert!(
            minor(tag) >= minor(&rust_version),
            "{file}: {builder} older than {rust_version}"
        );
        assert!(
            froms[1].contains("distroless") && froms[1].contains("nonroot"),
            "{file}"
        );
        assert!(
            text.contains(&format!("--bin {bin}")),
            "{file} builds {bin}"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{file}"
        );
        // The image's user is the one the manifests run as.
        let user = text
            .lines()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(user),
            "{file}"
        );
    }
}
