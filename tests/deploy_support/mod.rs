//! Helpers for the deployment tests: the tools `scripts/install-kubectl.sh` installs (helm,
//! kubectl, kubernetes-validate) run in isolation from any user config, and multi-document YAML
//! parsed into JSON values.
#![allow(dead_code)] // each test binary uses a part of the helpers

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The chart's directory, relative to the repository.
pub const CHART: &str = "deploy/helm/tidescale";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool under `.tools/` (installed by `scripts/install-kubectl.sh`).
pub fn tool(rel: &str) -> PathBuf {
    let p = repo().join(".tools").join(rel);
    assert!(
        p.is_file(),
        "{} not found: run scripts/install-kubectl.sh",
        p.display()
    );
    p
}

/// Runs `cmd` with `stdin`; returns stdout, or panics with what it printed.
pub fn run_stdin(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `program args…`, which must succeed; returns stdout.
pub fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let (ok, out, err) = run_stdin(&mut cmd, None);
    assert!(ok, "{cmd:?} failed:\n{err}{out}");
    out
}

/// Helm with its cache, config and data in a private directory (no user repositories or
/// plugins), and no kubeconfig unless one is given.
pub struct Helm {
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Default for Helm {
    fn default() -> Self {
        Self::new()
    }
}

impl Helm {
    /// Helm for offline use.
    pub fn new() -> Self {
        Helm {
            home: tempfile::tempdir().unwrap(),
            kubeconfig: None,
        }
    }

    /// Helm talking to the cluster of `kubeconfig`.
    pub fn with_kubeconfig(kubeconfig: &Path) -> Self {
        Helm {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            ..Self::new()
        }
    }

    /// The command with the isolating environment set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool("bin/helm"));
        let h = self.home.path();
        cmd.env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env(
                "KUBECONFIG",
                self.kubeconfig
                    .clone()
                    .unwrap_or_else(|| h.join("no-kubeconfig")),
            )
            .args(args);
        cmd
    }

    /// Runs helm; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        run_stdin(&mut self.command(args), None)
    }

    /// Runs helm, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "helm {args:?} failed:\n{err}{out}");
        out
    }

    /// `helm template tidescale <chart> --namespace tidescale <extra…>`.
    pub fn template(&self, extra: &[&str]) -> String {
        let chart = repo().join(CHART).display().to_string();
        let mut args = vec!["template", "tidescale", &chart, "--namespace", "tidescale"];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

/// `kubectl kustomize DIR` (DIR relative to the repository).
pub fn kubectl_kustomize(dir: &str) -> String {
    run_ok(
        tool("bin/kubectl"),
        &["kustomize", &repo().join(dir).display().to_string()],
    )
}

/// Every document of a multi-document YAML stream, as JSON values (empty documents dropped).
pub fn yaml_docs(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |doc: &mut String| {
        if doc
            .lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let v: Value = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("YAML document does not parse: {e}\n{doc}"));
            if !v.is_null() {
                docs.push(v);
            }
        }
        doc.clear();
    };
    for line in yaml.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    docs
}

/// The object of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} among the documents"))
}

/// Every object of `kind`.
pub fn find_all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `kubernetes-validate --strict` for Kubernetes `version` on `yaml`: must pass, and only the
/// `foreign` kinds (defined by CRDs, so without a bundled schema) may be skipped with a warning.
pub fn validate(what: &str, yaml: &str, version: &str, foreign: &[&str]) {
    let mut cmd = Command::new(tool("venv/bin/kubernetes-validate"));
    cmd.args(["-k", version, "--strict", "-"]);
    let (ok, out, err) = run_stdin(&mut cmd, Some(yaml));
    let text = format!("{out}{err}");
    assert!(ok, "{what} does not validate for {version}:\n{text}");
    for line in text.lines().filter(|l| !l.starts_with("INFO")) {
        let allowed = line.starts_with("WARN")
            && foreign
                .iter()
                .any(|k| line.contains(&format!("for kind {k} with")));
        assert!(allowed, "{what} on {version}: {line}");
    }
    let passed = text.lines().filter(|l| l.contains("passed for")).count();
    assert!(
        passed > 0,
        "{what} on {version}: nothing validated:\n{text}"
    );
}
