//! What the chart's tests on the real control plane share: a release of the chart that
//! uninstalls itself (and checks that nothing is left), the CRD's readiness, and a kubeconfig with
//! a service account's token.
#![allow(dead_code)] // each test binary uses a part of it

use std::path::Path;
use std::time::Duration;

use crate::cluster_support::{Cluster, Deadline, condition};
use crate::deploy_support;
use crate::deploy_support::{CHART, Helm, repo};
use serde_json::Value;
use tidescale::clock;

/// The APIServices the chart owns; the other cluster tests register the same names.
pub const APISERVICES: [&str; 3] = [
    "v1beta1.custom.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.external.metrics.k8s.io",
];

/// A release of the chart named `tidescale` in its own namespace.
pub struct Release {
    /// The release's namespace.
    pub ns: String,
    /// Helm, pointed at the local control plane.
    pub helm: Helm,
    /// Set once `helm uninstall` ran; otherwise dropping the release (a failed test)
    /// uninstalls it, so no APIService of ours outlives the test.
    uninstalled: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.uninstalled {
            let _ = self
                .helm
                .run(&["uninstall", "tidescale", "--namespace", &self.ns, "--wait"]);
        }
    }
}

impl Release {
    /// Installs the chart with `args` (e.g. `--set mode=adapter`) and waits for the Deployment.
    pub async fn install(c: &Cluster, mode: &str, args: &[&str]) -> Release {
        let ns = c.namespace(&format!("deploy-{mode}")).await;
        let helm = Helm::with_kubeconfig(&c.kubeconfig);
        let chart = repo().join(CHART).display().to_string();
        let mode_arg = format!("mode={mode}");
        let mut cmd = vec![
            "install",
            "tidescale",
            &chart,
            "--namespace",
            &ns,
            "--set",
            &mode_arg,
            "--wait=legacy",
            "--timeout=3m",
            // The other cluster tests register their adapter under the same APIService names
            // with kubectl and leave them: the release takes them over (and its uninstall
            // removes them; the next adapter test applies its own again). The tests run one at
            // a time, so no adapter of theirs is running meanwhile. Their fields belong to
            // kubectl's field manager, so the apply forces them over.
            "--take-ownership",
            "--force-conflicts",
        ];
        cmd.extend_from_slice(args);
        // Other tests apply the CRD with kubectl (perhaps a newer one); Helm would fight them
        // for its fields. When it is there, leave it to them.
        let (crd_there, _, _) = c
            .kubectl(&["get", "crd", "scalingpolicies.tidescale.io"])
            .await;
        if crd_there {
            cmd.push("--skip-crds");
        }
        let (ok, out, err) = helm.run(&cmd);
        let release = Release {
            ns,
            helm,
            uninstalled: false,
        };
        assert!(
            ok && out.contains("STATUS: deployed"),
            "helm install: {err}{out}"
        );
        let d = c
            .kubectl_json(&[
                "-n",
                &release.ns,
                "get",
                "deployment",
                "tidescale",
                "-o",
                "json",
            ])
            .await;
        assert_eq!(d["status"]["readyReplicas"], 2, "{}", d["status"]);
        release
    }

    pub fn sa(&self) -> String {
        format!("system:serviceaccount:{}:tidescale", self.ns)
    }

    /// `helm uninstall`, then nothing of the release may be left, in its namespace, in
    /// kube-system or cluster-wide.
    pub async fn uninstall_leaves_nothing(mut self, c: &Cluster) {
        self.helm
            .ok(&["uninstall", "tidescale", "--namespace", &self.ns, "--wait"]);
        self.uninstalled = true;
        let sel = "app.kubernetes.io/instance=tidescale";
        let kinds = "deployments,services,serviceaccounts,configmaps,secrets,roles,rolebindings,\
                     poddisruptionbudgets,networkpolicies,leases";
        let end = clock::now() + Duration::from_secs(60);
        loop {
            let mut left = String::new();
            for (ns, what) in [(self.ns.as_str(), kinds), ("kube-system", "rolebindings")] {
                left += &c
                    .kubectl_ok(&["-n", ns, "get", what, "-l", sel, "-o", "name"])
                    .await;
            }
            left += &c
                .kubectl_ok(&[
                    "get",
                    "clusterroles,clusterrolebindings,apiservices",
                    "-l",
                    sel,
                    "-o",
                    "name",
                ])
                .await;
            if left.trim().is_empty() {
                break;
            }
            assert!(
                clock::now() < end,
                "left behind 60 s after helm uninstall:\n{left}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        orphans_belong_to_the_deleted_deployment(c, &self.ns).await;
        c.kubectl_ok(&["delete", "namespace", &self.ns, "--wait=false"])
            .await;
    }
}

/// ReplicaSets and pods are not Helm's: the garbage collector removes them after their
/// Deployment, and this control plane runs no garbage collector. Each one left must be owned,
/// through its ReplicaSet, by the deleted Deployment; the test then removes them as the
/// collector would.
pub async fn orphans_belong_to_the_deleted_deployment(c: &Cluster, ns: &str) {
    let owner = |v: &Value| {
        format!(
            "{}/{}",
            v["metadata"]["ownerReferences"][0]["kind"]
                .as_str()
                .unwrap_or("none"),
            v["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .unwrap_or("none")
        )
    };
    let rs = c
        .kubectl_json(&["-n", ns, "get", "replicasets", "-o", "json"])
        .await;
    let mut names = vec![];
    for r in rs["items"].as_array().unwrap() {
        assert_eq!(owner(r), "Deployment/tidescale", "{}", r["metadata"]);
        names.push(r["metadata"]["name"].as_str().unwrap().to_string());
    }
    let pods = c
        .kubectl_json(&["-n", ns, "get", "pods", "-o", "json"])
        .await;
    for p in pods["items"].as_array().unwrap() {
        let o = owner(p);
        assert!(
            names.iter().any(|n| o == format!("ReplicaSet/{n}")),
            "pod not from the release: {o}"
        );
    }
    c.kubectl_ok(&[
        "-n",
        ns,
        "delete",
        "replicasets,pods",
        "--all",
        "--wait=false",
    ])
    .await;
}

pub async fn crd_established(c: &Cluster) {
    let deadline = Deadline::new("the ScalingPolicy CRD Established", 60);
    loop {
        let crd = c
            .kubectl_json(&["get", "crd", "scalingpolicies.tidescale.io", "-o", "json"])
            .await;
        if condition(&crd, "Established")["status"] == "True" {
            return;
        }
        deadline.tick().await;
    }
}

/// A variable of `scripts/cluster.sh env`.
pub fn cluster_env(name: &str) -> String {
    let out = std::process::Command::new(repo().join("scripts/cluster.sh"))
        .arg("env")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("scripts/cluster.sh env printed no {name}"))
        .to_string()
}

/// A kubeconfig for `ns/sa` with a fresh token, as the pod's mounted token would be.
pub async fn service_account_kubeconfig(c: &Cluster, ns: &str, sa: &str, dir: &Path) -> String {
    let token = c
        .kubectl_ok(&["-n", ns, "create", "token", sa, "--duration=1h"])
        .await;
    let ca = std::fs::read(c.pki("ca.crt")).unwrap();
    let ca64 = deploy_support::run_stdin(
        std::process::Command::new("base64").arg("-w0"),
        Some(std::str::from_utf8(&ca).unwrap()),
    )
    .1;
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca64}\nusers:\n- name: {sa}\n  user:\n    token: {}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: {sa}}}\ncurrent-context: c\n",
            c.api_base(),
            token.trim()
        ),
    )
    .unwrap();
    path.display().to_string()
}
