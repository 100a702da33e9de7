//! API errors of the demo service: every failure is a JSON body with the right status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// What went wrong with a request, mapped one-to-one onto an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key has no value (never stored, deleted, or expired).
    #[error("key not found")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// No route matches the request.
    #[error("no such route")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The request is malformed (bad key, bad JSON, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the service accepts.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not declared as JSON.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The backing store did not answer.
    #[error("store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// Every worker is busy and the wait queue is full.
    #[error("worker queue full")]
    QueueFull {
        /// Worker slots of this replica.
        workers: usize,
        /// Queue capacity of this replica.
        queue: usize,
    },
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::StoreUnavailable(_) | ApiError::QueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::StoreUnavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::NotFound { key } => json!({"error": self.to_string(), "key": key}),
            ApiError::NoRoute { path } => json!({"error": self.to_string(), "path": path}),
            ApiError::StoreUnavailable(e) => {
                json!({"error": self.to_string(), "detail": e.to_string()})
            }
            ApiError::QueueFull { workers, queue } => {
                json!({"error": self.to_string(), "workers": workers, "queue": queue})
            }
            ApiError::PayloadTooLarge { limit } => {
                json!({"error": self.to_string(), "limit": limit})
            }
            ApiError::BadRequest(_) | ApiError::UnsupportedMediaType => {
                json!({"error": self.to_string()})
            }
        };
        (status, Json(body)).into_response()
    }
}
