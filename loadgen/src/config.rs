//! Run configuration: target, load, mix and bounds, validated once with every problem listed.

use std::net::IpAddr;
use std::time::Duration;

use hyper::Uri;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::mix::Mix;
use crate::schedule::Schedule;

/// Longest run a single invocation may ask for.
pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);

/// Why a run configuration was rejected; lists every problem at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid run configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// How requests are paced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Open loop: requests leave at the schedule's times whether or not earlier ones answered.
    Schedule(Schedule),
    /// Closed loop at maximum rate: `concurrency` workers each send back to back for `duration`.
    /// Latency is then measured from the actual send, as in wrk or oha.
    Max {
        /// How long to run.
        duration: HumanDuration,
    },
}

impl Load {
    /// How long the load lasts, in seconds.
    pub fn duration_secs(&self) -> f64 {
        match self {
            Load::Schedule(s) => s.duration_secs(),
            Load::Max { duration } => duration.as_secs_f64(),
        }
    }
}

/// Everything one run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Base URL, `http://host:port[/prefix]`; request paths are appended to it.
    pub url: String,
    /// The pacing.
    pub load: Load,
    /// What to send.
    pub mix: Mix,
    /// In-flight cap (open loop) or number of workers (max rate).
    pub concurrency: usize,
    /// Per-request timeout, from the moment the request is sent.
    pub timeout: HumanDuration,
    /// Hard cap on requests sent; the run stops when it is reached.
    pub max_requests: u64,
    /// Seed of the request mix.
    pub seed: u64,
    /// Allow a target that is not a loopback address.
    pub allow_remote: bool,
}

impl RunConfig {
    /// An open-loop run of `schedule` against `url` sending `GET /`, with defaults elsewhere.
    pub fn new(url: impl Into<String>, load: Load) -> Self {
        Self {
            url: url.into(),
            load,
            mix: Mix::default(),
            concurrency: 1000,
            timeout: HumanDuration::from_secs(5),
            max_requests: 10_000_000,
            seed: 0,
            allow_remote: false,
        }
    }

    /// Checks everything and returns the parsed base URI, or every problem found.
    pub fn validate(&self) -> Result<Uri, ConfigError> {
        let mut problems = Vec::new();
        let uri = match check_url(&self.url, self.allow_remote) {
            Ok(uri) => Some(uri),
            Err(p) => {
                problems.push(p);
                None
            }
        };
        match &self.load {
            Load::Schedule(s) => {
                if let Err(e) = s.validate() {
                    problems.push(e.to_string());
                }
            }
            Load::Max { duration } => {
                if duration.0.is_zero() {
                    problems.push("duration must be above 0".to_string());
                }
            }
        }
        if self.load.duration_secs() > MAX_RUN.as_secs_f64() {
            problems.push(format!(
                "the run lasts {:.0} s, above the {} s limit",
                self.load.duration_secs(),
                MAX_RUN.as_secs()
            ));
        }
        if let Err(e) = self.mix.validate() {
            problems.push(e.to_string());
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_string());
        }
        if self.timeout.0.is_zero() {
            problems.push("timeout must be above 0".to_string());
        }
        if self.max_requests == 0 {
            problems.push("max requests must be at least 1".to_string());
        }
        match (uri, problems.is_empty()) {
            (Some(uri), true) => Ok(uri),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// Parses `url` and enforces the loopback rule unless `allow_remote`.
fn check_url(url: &str, allow_remote: bool) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "bad URL {url:?}: scheme {other:?} is not supported (use http://)"
            ));
        }
        None => return Err(format!("bad URL {url:?}: expected http://host:port")),
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("bad URL {url:?}: no host"))?;
    if !allow_remote && !is_loopback(host) {
        return Err(format!(
            "{host} is not a loopback address; pass --allow-remote to load a remote target"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "bad URL {url:?}: the base URL cannot carry a query"
        ));
    }
    Ok(uri)
}

/// `localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule() {
        for ok in ["localhost", "127.0.0.1", "127.8.9.1", "[::1]"] {
            assert!(is_loopback(ok), "{ok}");
        }
        for no in ["example.com", "10.0.0.1", "[2001:db8::1]"] {
            assert!(!is_loopback(no), "{no}");
        }
        assert!(
            check_url("http://10.0.0.1:80", false)
                .unwrap_err()
                .contains("--allow-remote")
        );
        assert!(check_url("http://10.0.0.1:80", true).is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut c = RunConfig::new(
            "https://127.0.0.1:1",
            Load::Schedule(Schedule::constant(-1.0, HumanDuration::from_secs(1))),
        );
        c.concurrency = 0;
        c.timeout = HumanDuration::from_secs(0);
        let msg = c.validate().unwrap_err().to_string();
        for needle in ["scheme", "rps must be", "concurrency", "timeout"] {
            assert!(msg.contains(needle), "{needle} missing in {msg}");
        }
    }
}
