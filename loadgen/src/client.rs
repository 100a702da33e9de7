//! The HTTP client: HTTP/1.1 keep-alive connections we own, one request with a timeout, errors
//! sorted by class.
//!
//! Connections are plain `hyper::client::conn::http1` senders handed from request to request
//! (see [`ConnectionPool`]), so the per-request path has no pool lock and no URI re-parsing.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::mix::PreparedRequest;
use crate::record::{ErrorClass, Outcome};

/// One open keep-alive connection, ready for its next request.
pub type Connection = SendRequest<Full<Bytes>>;

/// Where connections go: host, port and the `Host` header value.
#[derive(Clone, Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    header: HeaderValue,
}

impl Endpoint {
    /// The endpoint of an `http://host[:port]` base URI (port 80 by default).
    pub fn from_base(base: &Uri) -> Self {
        let host = base.host().unwrap_or("127.0.0.1");
        let header = base.authority().map_or(host, |a| a.as_str());
        Self {
            // Bracketed IPv6 literals lose their brackets for the socket address lookup.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: base.port_u16().unwrap_or(80),
            header: HeaderValue::from_str(header)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
        }
    }

    /// Opens a new connection and spawns its driver task.
    pub async fn connect(&self) -> Result<Connection, ErrorClass> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| classify(&e))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            // The connection's end is seen by the sender as an error on its next use.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Idle connections owned by one task (the dispatcher); request tasks give them back through a
/// channel, so reuse takes no lock. It also counts open connections so that their number stays
/// under a limit.
#[derive(Debug)]
pub struct ConnectionPool {
    idle: Vec<Connection>,
    returned: mpsc::UnboundedReceiver<Connection>,
    returner: ConnectionReturn,
    limit: usize,
}

/// The request tasks' handle for giving a connection back (or reporting it gone).
#[derive(Clone, Debug)]
pub struct ConnectionReturn {
    sender: mpsc::UnboundedSender<Connection>,
    open: Arc<AtomicUsize>,
}

impl ConnectionReturn {
    /// Returns a still-usable connection, or records that a connection was lost.
    pub fn give_back(&self, conn: Option<Connection>) {
        match conn {
            Some(conn) if !conn.is_closed() => {
                if self.sender.send(conn).is_err() {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                }
            }
            _ => {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// What the pool can offer a request right now.
#[derive(Debug)]
pub enum Lease {
    /// An idle open connection.
    Idle(Connection),
    /// No idle connection, but the request may open a new one (already counted as open).
    Open,
    /// The connection limit is reached; wait for a connection to come back.
    Wait,
}

impl ConnectionPool {
    /// A pool that lets at most `limit` connections be open at once.
    pub fn new(limit: usize) -> Self {
        let (sender, returned) = mpsc::unbounded_channel();
        Self {
            idle: Vec::new(),
            returned,
            returner: ConnectionReturn {
                sender,
                open: Arc::new(AtomicUsize::new(0)),
            },
            limit: limit.max(1),
        }
    }

    /// An idle connection, or leave to open one, or `Wait`.
    pub fn lease(&mut self) -> Lease {
        while let Ok(conn) = self.returned.try_recv() {
            self.idle.push(conn);
        }
        while let Some(conn) = self.idle.pop() {
            if !conn.is_closed() {
                return Lease::Idle(conn);
            }
            self.returner.open.fetch_sub(1, Ordering::AcqRel);
        }
        let open = &self.returner.open;
        if open.load(Ordering::Acquire) < self.limit {
            open.fetch_add(1, Ordering::AcqRel);
            Lease::Open
        } else {
            Lease::Wait
        }
    }

    /// Waits until a connection comes back and keeps it idle.
    pub async fn wait_for_return(&mut self) {
        if let Some(conn) = self.returned.recv().await {
            self.idle.push(conn);
        }
    }

    /// Connections open now (idle or busy).
    pub fn open(&self) -> usize {
        self.returner.open.load(Ordering::Acquire)
    }

    /// The handle request tasks use to give connections back.
    pub fn returner(&self) -> ConnectionReturn {
        self.returner.clone()
    }
}

/// Sends one request on `conn` (or on a new connection), reads the whole body, and classifies
/// the result. Returns the connection when it can carry another request.
pub async fn send(
    endpoint: &Endpoint,
    conn: Option<Connection>,
    request: PreparedRequest,
    timeout: Duration,
) -> (Outcome, Option<Connection>) {
    let has_body = !request.body.is_empty();
    let mut req = Request::new(Full::new(request.body));
    *req.method_mut() = request.method;
    *req.uri_mut() = request.uri;
    req.headers_mut().insert(HOST, endpoint.header.clone());
    if has_body {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let exchange = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => endpoint.connect().await?,
        };
        conn.ready().await.map_err(|e| classify(&e))?;
        let response = conn.send_request(req).await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        // Drain frame by frame: nothing is buffered and the connection is free afterwards.
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| classify(&e))?;
        }
        Ok::<(u16, Connection), ErrorClass>((status, conn))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, conn))) => {
            let reusable = !conn.is_closed();
            (Outcome::Status(status), reusable.then_some(conn))
        }
        Ok(Err(class)) => (Outcome::Failed(class), None),
        Err(_) => (Outcome::Failed(ErrorClass::Timeout), None),
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
        current = e.source();
    }
    if saw_io {
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

    #[test]
    fn endpoint_keeps_the_host_header() {
        let e = Endpoint::from_base(&"http://localhost:8080/api".parse().unwrap());
        assert_eq!((e.host.as_str(), e.port), ("localhost", 8080));
        assert_eq!(e.header, "localhost:8080");
        let v6 = Endpoint::from_base(&"http://[::1]/".parse().unwrap());
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 80));
        assert_eq!(v6.header, "[::1]");
    }
}
