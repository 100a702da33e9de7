//! The HTTP client: a keep-alive hyper pool, one request with a timeout, errors sorted by class.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::mix::PreparedRequest;
use crate::record::{ErrorClass, Outcome};

/// The pooled HTTP/1.1 client every request goes through (cheap to clone).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds a keep-alive client that keeps up to `max_idle` idle connections to the target.
pub fn build(max_idle: usize, connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// Sends one request, reads the whole body, and classifies the result; never panics or fails.
pub async fn send(client: &HttpClient, request: PreparedRequest, timeout: Duration) -> Outcome {
    let has_body = !request.body.is_empty();
    let mut req = Request::new(Full::new(request.body));
    *req.method_mut() = request.method;
    *req.uri_mut() = request.uri;
    if has_body {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let exchange = async {
        let response = client.request(req).await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        // Drain frame by frame: nothing is buffered, the connection goes back to the pool.
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| classify(&e))?;
        }
        Ok::<u16, ErrorClass>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(class)) => Outcome::Failed(class),
        Err(_) => Outcome::Failed(ErrorClass::Timeout),
    }
}

/// Walks an error's source chain for the most telling cause.
pub fn classify(error: &(dyn StdError + 'static)) -> ErrorClass {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut saw_io = false;
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorClass::Refused,
                std::io::ErrorKind::TimedOut => return ErrorClass::Timeout,
                _ => saw_io = true,
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return ErrorClass::Timeout;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                saw_io = true;
            }
        }
        if e.to_string().contains("connect timeout") {
            return ErrorClass::Timeout;
        }
        current = e.source();
    }
    let connect_failure = error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect());
    if saw_io || connect_failure {
        ErrorClass::Io
    } else {
        ErrorClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_classes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no");
        assert_eq!(classify(&refused), ErrorClass::Refused);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&reset), ErrorClass::Io);
        let timed = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(classify(&timed), ErrorClass::Timeout);
        let fmt = std::fmt::Error;
        assert_eq!(classify(&fmt), ErrorClass::Other);
    }
}
