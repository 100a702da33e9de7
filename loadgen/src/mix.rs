//! The request mix: weighted request kinds turned into concrete requests by a seeded generator.

use bytes::Bytes;
use hyper::{Method, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What is wrong with a mix or a request spec.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// A `--mix` flag could not be parsed.
    #[error("invalid mix entry {text:?}: {why}")]
    Entry {
        /// The flag text as given.
        text: String,
        /// What was wrong with it.
        why: String,
    },
    /// The mix as a whole cannot be used.
    #[error("invalid mix: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// One kind of request the mix can send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestKind {
    /// `GET /`.
    Root,
    /// `GET /kv/{key}` with a key drawn from the key space.
    GetKv,
    /// `PUT /kv/{key}` with a JSON object body whose `value` is `value_bytes` long.
    PutKv {
        /// Length of the generated value string.
        value_bytes: usize,
    },
    /// `GET /load?ms=N`: asks the server to burn N ms of CPU.
    Load {
        /// Milliseconds of work per request.
        ms: u64,
    },
    /// Any method and path; `{key}` is replaced by a key and `{seq}` by the request number.
    Template {
        /// HTTP method, e.g. `GET`.
        method: String,
        /// Path and query, e.g. `/items/{key}?full=1`.
        path: String,
        /// Optional body, with the same placeholders.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
}

/// A weighted entry of a [`Mix`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// Relative weight (share = weight / sum of weights).
    pub weight: u32,
    /// What to send.
    pub request: RequestKind,
}

/// A weighted set of requests over a key space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// The entries; at least one with a positive weight.
    pub entries: Vec<MixEntry>,
    /// Keys are `key-0` .. `key-{keys-1}`.
    #[serde(default = "default_keys")]
    pub keys: u64,
}

fn default_keys() -> u64 {
    1000
}

impl Default for Mix {
    /// `GET /` only.
    fn default() -> Self {
        Self {
            entries: vec![MixEntry {
                weight: 1,
                request: RequestKind::Root,
            }],
            keys: default_keys(),
        }
    }
}

impl Mix {
    /// Parses a `--mix` flag: `WEIGHT:SPEC` where SPEC is `root`, `get-kv`, `put-kv[=BYTES]`,
    /// `load=MS` or `METHOD PATH` (e.g. `3:GET /items/{key}`).
    pub fn parse_entry(text: &str) -> Result<MixEntry, MixError> {
        let fail = |why: &str| MixError::Entry {
            text: text.to_string(),
            why: why.to_string(),
        };
        let (weight, spec) = text
            .split_once(':')
            .ok_or_else(|| fail("expected WEIGHT:SPEC, e.g. 80:get-kv"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| fail("the weight must be a whole number"))?;
        let spec = spec.trim();
        let (name, arg) = spec.split_once('=').unwrap_or((spec, ""));
        let request = match name {
            "root" if arg.is_empty() => RequestKind::Root,
            "get-kv" if arg.is_empty() => RequestKind::GetKv,
            "put-kv" => RequestKind::PutKv {
                value_bytes: if arg.is_empty() {
                    32
                } else {
                    arg.parse()
                        .map_err(|_| fail("put-kv=BYTES needs a number"))?
                },
            },
            "load" => RequestKind::Load {
                ms: arg.parse().map_err(|_| fail("load=MS needs a number"))?,
            },
            _ => match spec.split_once(' ') {
                Some((method, path)) if path.trim_start().starts_with('/') => {
                    RequestKind::Template {
                        method: method.to_string(),
                        path: path.trim().to_string(),
                        body: None,
                    }
                }
                _ => {
                    return Err(fail(
                        "unknown request (use root, get-kv, put-kv[=BYTES], load=MS or 'METHOD /path')",
                    ));
                }
            },
        };
        Ok(MixEntry { weight, request })
    }

    /// Checks the mix and reports all problems at once.
    pub fn validate(&self) -> Result<(), MixError> {
        let mut problems = Vec::new();
        if self.entries.iter().all(|e| e.weight == 0) {
            problems.push("the mix needs at least one entry with a weight above 0".to_string());
        }
        if self.keys == 0 {
            problems.push("the key space must hold at least 1 key".to_string());
        }
        for entry in &self.entries {
            if let RequestKind::Template { method, path, .. } = &entry.request {
                if Method::from_bytes(method.as_bytes()).is_err() {
                    problems.push(format!("{method:?} is not an HTTP method"));
                }
                let probe = path.replace("{key}", "k").replace("{seq}", "0");
                if !probe.starts_with('/')
                    || probe.parse::<hyper::http::uri::PathAndQuery>().is_err()
                {
                    problems.push(format!("{path:?} is not a valid path"));
                }
            }
            if let RequestKind::Load { ms } = entry.request
                && ms > 60_000
            {
                problems.push(format!("load ms={ms} is above 60000"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MixError::Invalid(problems))
        }
    }
}

/// A ready-to-send request.
#[derive(Clone, Debug)]
pub struct PreparedRequest {
    /// Index of the mix entry it came from.
    pub entry: usize,
    /// The method.
    pub method: Method,
    /// The absolute URI.
    pub uri: Uri,
    /// The body (empty for GET).
    pub body: Bytes,
}

/// Turns a [`Mix`] into requests; the same seed gives the same sequence.
#[derive(Debug)]
pub struct RequestGenerator {
    entries: Vec<Compiled>,
    cumulative: Vec<u64>,
    total: u64,
    keys: u64,
    base: BaseUrl,
    rng: SmallRng,
    seq: u64,
}

#[derive(Debug)]
enum Compiled {
    /// Same request every time: the URI is built once and cloned (cheap, reference counted).
    Fixed(Method, Uri, Bytes),
    Dynamic(Method, RequestKind),
}

/// Scheme, authority and path prefix of the target.
#[derive(Clone, Debug)]
struct BaseUrl {
    scheme: hyper::http::uri::Scheme,
    authority: hyper::http::uri::Authority,
    prefix: String,
}

impl BaseUrl {
    fn uri(&self, path: &str) -> Uri {
        let mut full = String::with_capacity(self.prefix.len() + path.len());
        full.push_str(&self.prefix);
        full.push_str(path);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(full)
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"))
    }
}

impl RequestGenerator {
    /// Builds a generator for `mix` against `base` (an `http://host:port[/prefix]` URI).
    ///
    /// The mix must have passed [`Mix::validate`].
    pub fn new(mix: &Mix, base: &Uri, seed: u64) -> Self {
        let base = BaseUrl {
            scheme: base
                .scheme()
                .cloned()
                .unwrap_or(hyper::http::uri::Scheme::HTTP),
            authority: base
                .authority()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::Authority::from_static("127.0.0.1")),
            prefix: base.path().trim_end_matches('/').to_string(),
        };
        let mut cumulative = Vec::with_capacity(mix.entries.len());
        let mut total = 0u64;
        let entries = mix
            .entries
            .iter()
            .map(|e| {
                total += u64::from(e.weight);
                cumulative.push(total);
                compile(&e.request, &base)
            })
            .collect();
        Self {
            entries,
            cumulative,
            total,
            keys: mix.keys.max(1),
            base,
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
        }
    }

    /// The next request of the sequence.
    pub fn next_request(&mut self) -> PreparedRequest {
        self.seq += 1;
        let pick = self.rng.random_range(0..self.total.max(1));
        let entry = self.cumulative.partition_point(|&c| c <= pick);
        let entry = entry.min(self.entries.len() - 1);
        match &self.entries[entry] {
            Compiled::Fixed(method, uri, body) => PreparedRequest {
                entry,
                method: method.clone(),
                uri: uri.clone(),
                body: body.clone(),
            },
            Compiled::Dynamic(method, kind) => {
                let key = self.rng.random_range(0..self.keys);
                let (path, body) = match kind {
                    RequestKind::GetKv => (format!("/kv/key-{key}"), Bytes::new()),
                    RequestKind::PutKv { value_bytes } => {
                        let value: String = (0..*value_bytes)
                            .map(|_| char::from(b'a' + self.rng.random_range(0..26u8)))
                            .collect();
                        (
                            format!("/kv/key-{key}"),
                            Bytes::from(format!(r#"{{"value":"{value}","seq":{}}}"#, self.seq)),
                        )
                    }
                    RequestKind::Template { path, body, .. } => {
                        let fill = |s: &str| {
                            s.replace("{key}", &format!("key-{key}"))
                                .replace("{seq}", &self.seq.to_string())
                        };
                        (
                            fill(path),
                            body.as_deref().map(fill).unwrap_or_default().into(),
                        )
                    }
                    RequestKind::Root | RequestKind::Load { .. } => ("/".to_string(), Bytes::new()),
                };
                PreparedRequest {
                    entry,
                    method: method.clone(),
                    uri: self.base.uri(&path),
                    body,
                }
            }
        }
    }
}

fn compile(kind: &RequestKind, base: &BaseUrl) -> Compiled {
    match kind {
        RequestKind::Root => Compiled::Fixed(Method::GET, base.uri("/"), Bytes::new()),
        RequestKind::Load { ms } => Compiled::Fixed(
            Method::GET,
            base.uri(&format!("/load?ms={ms}")),
            Bytes::new(),
        ),
        RequestKind::GetKv => Compiled::Dynamic(Method::GET, kind.clone()),
        RequestKind::PutKv { .. } => Compiled::Dynamic(Method::PUT, kind.clone()),
        RequestKind::Template { method, path, body } => {
            let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
            let templated = path.contains('{') || body.as_deref().is_some_and(|b| b.contains('{'));
            if templated {
                Compiled::Dynamic(method, kind.clone())
            } else {
                let body = body.clone().map(Bytes::from).unwrap_or_default();
                Compiled::Fixed(method, base.uri(path), body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> Mix {
        Mix {
            entries: vec![
                Mix::parse_entry("70:get-kv").unwrap(),
                Mix::parse_entry("20:put-kv=8").unwrap(),
                Mix::parse_entry("10:GET /items/{key}?n={seq}").unwrap(),
            ],
            keys: 50,
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let base: Uri = "http://127.0.0.1:9/api/".parse().unwrap();
        let take = |seed| {
            let mut g = RequestGenerator::new(&mix(), &base, seed);
            (0..200)
                .map(|_| {
                    let r = g.next_request();
                    format!("{} {} {:?}", r.method, r.uri, r.body)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        assert!(take(7)[0].contains("http://127.0.0.1:9/api/"));
    }

    #[test]
    fn weights_are_respected() {
        let base: Uri = "http://127.0.0.1:9".parse().unwrap();
        let mut g = RequestGenerator::new(&mix(), &base, 1);
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            counts[g.next_request().entry] += 1;
        }
        assert!((6700..7300).contains(&counts[0]), "{counts:?}");
        assert!((1700..2300).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn put_has_json_body_and_template_fills_placeholders() {
        let base: Uri = "http://127.0.0.1:9".parse().unwrap();
        let mut g = RequestGenerator::new(&mix(), &base, 3);
        let reqs: Vec<_> = (0..100).map(|_| g.next_request()).collect();
        let put = reqs.iter().find(|r| r.method == Method::PUT).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(v["value"].as_str().unwrap().len(), 8);
        assert!(put.uri.path().starts_with("/kv/key-"));
        let t = reqs.iter().find(|r| r.entry == 2).unwrap();
        assert!(
            t.uri.path().starts_with("/items/key-") && t.uri.query().unwrap().starts_with("n=")
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        for bad in ["get-kv", "x:get-kv", "1:fly", "1:load=abc"] {
            assert!(Mix::parse_entry(bad).is_err(), "{bad}");
        }
        let m = Mix {
            entries: vec![MixEntry {
                weight: 0,
                request: RequestKind::Template {
                    method: "G T".into(),
                    path: "nope".into(),
                    body: None,
                },
            }],
            keys: 0,
        };
        let msg = m.validate().unwrap_err().to_string();
        assert!(msg.contains("weight") && msg.contains("key space") && msg.contains("method"));
    }
}
