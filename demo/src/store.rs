//! Where values and the hit counter live: Redis (shared by replicas) or in this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{self, Instant};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{Map, Value};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused, timed out or dropped the connection.
    #[error("redis at {url}: {source}")]
    Redis {
        /// The Redis URL (without credentials).
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// A stored value could not be decoded (written by something else).
    #[error("stored value for {key:?} is not a JSON object")]
    Corrupt {
        /// The key whose value is unreadable.
        key: String,
    },
    /// The Redis URL itself is unusable.
    #[error("invalid redis url {url:?}: {source}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
}

/// A stored object and the seconds it has left to live.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The object as stored; shared with the in-process store, so reading a value copies
    /// nothing.
    pub object: Arc<Map<String, Value>>,
    /// Remaining time to live, whole seconds.
    pub ttl_secs: u64,
}

/// The service's store: one of two backends with the same semantics.
#[derive(Clone)]
pub enum Store {
    /// Redis through a reconnecting connection manager.
    Redis(RedisStore),
    /// A map in this process (per replica, lost on exit).
    Memory(MemoryStore),
}

impl Store {
    /// A Redis store; connects lazily, so the service starts (not ready) while Redis is down.
    pub fn redis(url: &str) -> Result<Self, StoreError> {
        RedisStore::new(url).map(Store::Redis)
    }

    /// An in-process store.
    pub fn memory() -> Self {
        Store::Memory(MemoryStore::default())
    }

    /// A short name of the backend for logs and `/`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "memory",
        }
    }

    /// Stores `object` under `key` for `ttl`, replacing any previous value.
    pub async fn put(
        &self,
        key: &str,
        object: &Map<String, Value>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Redis(r) => r.put(key, object, ttl).await,
            Store::Memory(m) => {
                m.put(key, object, ttl).await;
                Ok(())
            }
        }
    }

    /// The object under `key` and its remaining TTL, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        match self {
            Store::Redis(r) => r.get(key).await,
            Store::Memory(m) => Ok(m.get(key).await),
        }
    }

    /// Removes `key`; true when something was removed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Store::Redis(r) => r.delete(key).await,
            Store::Memory(m) => Ok(m.delete(key).await),
        }
    }

    /// Adds one to the hit counter and returns the new count.
    pub async fn hit(&self) -> Result<u64, StoreError> {
        match self {
            Store::Redis(r) => r.hit().await,
            Store::Memory(m) => Ok(m.hits.fetch_add(1, Ordering::Relaxed) + 1),
        }
    }

    /// Whether the store answers right now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Redis(r) => r.ping().await,
            Store::Memory(_) => Ok(()),
        }
    }
}

const KEY_PREFIX: &str = "kv:";
const HITS_KEY: &str = "hits";

/// Redis backend: values are JSON strings with `EX` expiry, so Redis itself enforces the TTL.
#[derive(Clone)]
pub struct RedisStore {
    url: String,
    conn: ConnectionManager,
}

impl RedisStore {
    fn new(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|source| StoreError::BadUrl {
            url: shown.clone(),
            source,
        })?;
        // Short timeouts and few retries: a request must fail fast with 503 while Redis is
        // away, and the manager reconnects by itself on a later request when it returns.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|source| {
            StoreError::BadUrl {
                url: shown.clone(),
                source,
            }
        })?;
        Ok(Self { url: shown, conn })
    }

    fn err(&self, source: redis::RedisError) -> StoreError {
        StoreError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    async fn put(
        &self,
        key: &str,
        object: &Map<String, Value>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(object).expect("a JSON map always serializes");
        let mut conn = self.conn.clone();
        let _: () = conn
            .set_ex(format!("{KEY_PREFIX}{key}"), text, ttl.as_secs().max(1))
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let mut conn = self.conn.clone();
        let full = format!("{KEY_PREFIX}{key}");
        // GET and TTL in one round trip, so the pair is consistent.
        let (text, ttl): (Option<String>, i64) = redis::pipe()
            .get(&full)
            .ttl(&full)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let Some(text) = text else { return Ok(None) };
        let object = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                });
            }
        };
        Ok(Some(Entry {
            object: Arc::new(object),
            ttl_secs: ttl.max(0) as u64,
        }))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn
            .del(format!("{KEY_PREFIX}{key}"))
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    async fn hit(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        conn.incr(HITS_KEY, 1u64).await.map_err(|e| self.err(e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Drops any `user:password@` part so credentials never reach logs or responses.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// In-process backend with the same TTL semantics as Redis (expired keys are invisible).
///
/// A plain (not async) mutex: it is never held across an await, and taking and releasing it
/// costs a fraction of what the async mutex's semaphore does on every `GET`.
#[derive(Clone, Default)]
pub struct MemoryStore {
    values: Arc<Mutex<MemoryValues>>,
    hits: Arc<AtomicU64>,
}

#[derive(Default)]
struct MemoryValues {
    map: HashMap<String, (Arc<Map<String, Value>>, Instant)>,
    writes_since_sweep: usize,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryValues> {
        // A panic while holding the lock leaves the map consistent (every change is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn put(&self, key: &str, object: &Map<String, Value>, ttl: Duration) {
        let now = clock::now();
        let object = Arc::new(object.clone());
        let mut values = self.lock();
        values.map.insert(key.to_string(), (object, now + ttl));
        // Sweep expired keys now and then, so memory stays bounded by live keys.
        values.writes_since_sweep += 1;
        if values.writes_since_sweep >= 1024 {
            values.writes_since_sweep = 0;
            values.map.retain(|_, (_, expires)| *expires > now);
        }
    }

    async fn get(&self, key: &str) -> Option<Entry> {
        let now = clock::now();
        let mut values = self.lock();
        match values.map.get(key) {
            Some((object, expires)) if *expires > now => Some(Entry {
                object: Arc::clone(object),
                ttl_secs: expires.duration_since(now).as_secs(),
            }),
            Some(_) => {
                values.map.remove(key);
                None
            }
            None => None,
        }
    }

    async fn delete(&self, key: &str) -> bool {
        let now = clock::now();
        let mut values = self.lock();
        matches!(values.map.remove(key), Some((_, expires)) if expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn memory_store_expires_like_redis() {
        let s = Store::memory();
        s.put(
            "a",
            &obj(serde_json::json!({"x": 1})),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let e = s.get("a").await.unwrap().unwrap();
        assert_eq!(e.ttl_secs, 10);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(s.get("a").await.unwrap().unwrap().ttl_secs, 6);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(s.get("a").await.unwrap(), None);
        assert!(!s.delete("a").await.unwrap());
    }

    #[tokio::test]
    async fn memory_hits_count_up() {
        let s = Store::memory();
        assert_eq!(s.hit().await.unwrap(), 1);
        assert_eq!(s.hit().await.unwrap(), 2);
    }

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact("redis://:secret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
