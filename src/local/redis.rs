//! A private redis-server on a loopback port for the demo, when one is installed.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A redis-server child process, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    _child: Child,
}

impl PrivateRedis {
    /// Starts one on a free loopback port if `redis-server` is on PATH (`Ok(None)` if not),
    /// without persistence, and waits until it answers PING.
    pub async fn start() -> std::io::Result<Option<Self>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = match Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let redis = Self {
            port,
            _child: child,
        };
        for _ in 0..200 {
            if redis.ping().await {
                return Ok(Some(redis));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(std::io::Error::other(format!(
            "redis-server on port {port} did not answer within 5 s"
        )))
    }

    async fn ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
                .await
                .is_ok_and(|r| r.is_ok())
            && &buf == b"+PONG\r\n"
    }

    /// The URL replicas use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
