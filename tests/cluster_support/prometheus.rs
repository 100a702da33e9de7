//! A real Prometheus server (the `prometheus` binary `scripts/install-deps.sh` installs),
//! listening on the host side of the cluster's veth pair so the adapter inside the namespace
//! can query it, scraping the test's exposition page every 500 ms.

use std::time::Duration;

use tidescale::clock;

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    /// `http://<host ip>:<port>`.
    pub url: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `host_ip` scraping `target_url` (an `http://host:port/metrics` URL).
    pub async fn start(host_ip: &str, target_url: &str) -> Self {
        let bin = which("prometheus")
            .unwrap_or_else(|| panic!("prometheus not found on PATH: run scripts/install-deps.sh"));
        let hostport = target_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 500ms, evaluation_interval: 500ms}}\n\
                 scrape_configs:\n\
                 - job_name: test\n  static_configs: [{{targets: ['{hostport}']}}]\n"
            ),
        )
        .unwrap();
        // A free port on the host-side address: bind, note it, release it.
        let port = std::net::TcpListener::bind(format!("{host_ip}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://{host_ip}:{port}");
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={host_ip}:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let deadline = clock::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                clock::now() < deadline,
                "prometheus not ready within 60 s: {}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Prometheus {
            url,
            _child: child,
            _dir: dir,
        }
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
