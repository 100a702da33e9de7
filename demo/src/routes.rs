//! The HTTP routes of the demo service: the key-value API, load endpoints and probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::store::StoreError;
use crate::{AppState, clock, cpu};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest body accepted by `PUT /kv/{key}`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most CPU one `/load` request may ask for.
pub const MAX_LOAD_MS: u64 = 1_000;
/// Longest one `/work` request may hold a worker slot.
pub const MAX_WORK_MS: u64 = 10_000;

/// Counts a failed store operation and turns it into the 503 it is answered with.
fn store_failed(state: &AppState, op: &'static str, e: StoreError) -> ApiError {
    state.metrics.store_error(op);
    ApiError::StoreUnavailable(e)
}

/// `GET /`: counts a hit in the store.
pub async fn index(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let hits = state
        .store
        .hit()
        .await
        .map_err(|e| store_failed(&state, "hit", e))?;
    Ok(Json(json!({"service": "demo-service", "hits": hits})))
}

fn key_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| ApiError::BadRequest(format!("bad key: {e}")))?;
    if key.is_empty() {
        return Err(ApiError::BadRequest("empty key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "key is {} bytes, longer than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "key contains control characters".into(),
        ));
    }
    Ok(key)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// `PUT /kv/{*key}`: stores a JSON object with `last_updated` and `ttl`, replacing any value.
pub async fn put_kv(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Map<String, Value>>), ApiError> {
    let key = key_from(path)?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            }
        } else {
            ApiError::BadRequest(format!("could not read body: {e}"))
        }
    })?;
    let mut object = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            return Err(ApiError::BadRequest(format!(
                "body must be a JSON object, got {}",
                json_kind(&other)
            )));
        }
        Err(e) => return Err(ApiError::BadRequest(format!("body is not valid JSON: {e}"))),
    };
    object.insert("last_updated".into(), json!(clock::unix_seconds()));
    object.insert("ttl".into(), json!(state.ttl.as_secs()));
    state
        .store
        .put(&key, &object, state.ttl)
        .await
        .map_err(|e| store_failed(&state, "put", e))?;
    Ok((StatusCode::CREATED, Json(object)))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A stored object with its `ttl` field set to the time it has left, written straight from the
/// shared stored object: the same JSON as setting `ttl` in a copy of the map (keys in the map's
/// sorted order), without copying it.
pub struct WithTtl {
    /// The object as stored.
    pub object: Arc<Map<String, Value>>,
    /// Remaining time to live, whole seconds.
    pub ttl: u64,
}

impl Serialize for WithTtl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let replaces = self.object.contains_key("ttl");
        let len = self.object.len() + usize::from(!replaces);
        let mut map = serializer.serialize_map(Some(len))?;
        let mut ttl_written = false;
        for (key, value) in self.object.iter() {
            if !ttl_written && key.as_str() >= "ttl" {
                map.serialize_entry("ttl", &self.ttl)?;
                ttl_written = true;
                if key == "ttl" {
                    continue;
                }
            }
            map.serialize_entry(key, value)?;
        }
        if !ttl_written {
            map.serialize_entry("ttl", &self.ttl)?;
        }
        map.end()
    }
}

/// `GET /kv/{*key}`: the object with its remaining `ttl`, or 404.
pub async fn get_kv(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<WithTtl>, ApiError> {
    let key = key_from(path)?;
    match state
        .store
        .get(&key)
        .await
        .map_err(|e| store_failed(&state, "get", e))?
    {
        Some(entry) => Ok(Json(WithTtl {
            object: entry.object,
            ttl: entry.ttl_secs,
        })),
        None => Err(ApiError::NotFound { key }),
    }
}

/// `DELETE /kv/{*key}`: 204 when removed, 404 when there was nothing.
pub async fn delete_kv(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = key_from(path)?;
    if state
        .store
        .delete(&key)
        .await
        .map_err(|e| store_failed(&state, "delete", e))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound { key })
    }
}

/// Query of `/load` and `/work`.
#[derive(Debug, Deserialize)]
pub struct MsQuery {
    /// Milliseconds of CPU (`/load`) or of holding a slot (`/work`); default 100.
    #[serde(default = "default_ms")]
    pub ms: u64,
}

fn default_ms() -> u64 {
    100
}

fn ms_from(q: Result<Query<MsQuery>, QueryRejection>, max: u64) -> Result<u64, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
    if q.ms > max {
        return Err(ApiError::BadRequest(format!(
            "ms={} is over the limit of {max}",
            q.ms
        )));
    }
    Ok(q.ms)
}

/// `GET /load?ms=N`: burns about N ms of CPU on a blocking thread.
pub async fn load(q: Result<Query<MsQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let ms = ms_from(q, MAX_LOAD_MS)?;
    let (checksum, used) =
        tokio::task::spawn_blocking(move || cpu::burn(Duration::from_millis(ms)))
            .await
            .map_err(|e| ApiError::BadRequest(format!("load task failed: {e}")))?;
    Ok(Json(
        json!({"ms": ms, "cpu_ms": used.as_secs_f64() * 1e3, "checksum": checksum}),
    ))
}

/// `GET /work?ms=N`: holds a worker slot for N ms without using CPU.
pub async fn work(
    State(state): State<Arc<AppState>>,
    q: Result<Query<MsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let ms = ms_from(q, MAX_WORK_MS)?;
    state.workers.work(Duration::from_millis(ms)).await?;
    Ok(Json(json!({"ms": ms})))
}

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the server is not draining.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "store": state.store.kind()})).into_response(),
        Err(e) => {
            state.metrics.store_error("ping");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "store unavailable", "detail": e.to_string()})),
            )
                .into_response()
        }
    }
}

/// Any path no route matches: a JSON 404.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute {
        path: uri.path().to_string(),
    }
}

/// A known path with a method it does not serve: a JSON 405.
pub async fn wrong_method(uri: Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "method not allowed", "path": uri.path()})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writing `ttl` on the fly gives the bytes that setting it in a copy of the map gives,
    /// wherever `ttl` falls among the keys and whether or not the object had one.
    #[test]
    fn ttl_written_in_place_matches_a_copy_with_ttl_set() {
        for object in [
            json!({"v": 1, "last_updated": 5, "ttl": 9}),
            json!({"a": [1, 2], "zz": {"ttl": 3}}),
            json!({"ttl": 1}),
            json!({}),
            json!({"tt": 1, "ttl0": 2, "u": null}),
        ] {
            let map = object.as_object().unwrap().clone();
            let mut copy = map.clone();
            copy.insert("ttl".into(), json!(42));
            let written = WithTtl {
                object: Arc::new(map),
                ttl: 42,
            };
            assert_eq!(
                serde_json::to_string(&written).unwrap(),
                serde_json::to_string(&copy).unwrap()
            );
        }
    }
}
