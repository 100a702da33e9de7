//! Keep-alive HTTP/1 connections from the balancer to one backend, written and read inside the proxied request's own task: an idle list per backend, a connection back on it once its response body has been read.
//!
//! A general HTTP client drives each connection from a task of its own and hands requests,
//! responses and body chunks across channels: four task wake-ups per proxied request on top
//! of the socket's. A proxy answering one request at a time per connection needs none of
//! that, so the request's task writes the request and parses the response head itself, and
//! the response body reads the rest straight off the socket as the client takes it.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod body;

pub(super) use body::Returning;
use body::{Chunk, Framing};

/// Connections kept idle per backend; more are closed when their response ends.
const MAX_IDLE: usize = 256;
/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest response head accepted, and its most header fields.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Free space kept in a connection's read buffer before each read.
const READ_SPACE: usize = 8 * 1024;
/// Request bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;

/// Why a request did not get a response.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: the backend is down or not listening (safe to retry).
    Refused(String),
    /// The connection failed while the request was under way.
    Failed(String),
}

/// The request to send: the client's, already stripped of hop-by-hop fields.
#[derive(Debug)]
pub(super) struct Outgoing<'a> {
    pub method: &'a Method,
    pub path: &'a PathAndQuery,
    /// The backend's `host:port`.
    pub host: &'a HeaderValue,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

/// The idle connections to one backend.
#[derive(Debug)]
pub(super) struct Upstream {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

/// One connection and the bytes read from it that no response has taken yet.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    out: Vec<u8>,
}

/// A response head, with how its body is delimited and whether the connection stays open.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reusable: bool,
}

/// How an exchange on a connection failed.
enum Exchange {
    /// The connection was closed or reset before any byte of a response came back; `written`
    /// says whether the request had been handed to the socket.
    Closed { written: bool, cause: String },
    /// Anything else: a malformed response, or a close in the middle of one.
    Failed(String),
}

impl Upstream {
    /// No connections yet to `addr`.
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` on an idle connection, or on a new one. A kept-alive connection that the
    /// backend closed as it was picked sends the request again on another one: always when
    /// the request never reached the socket, and for idempotent methods when it did.
    pub async fn send(
        self: &Arc<Self>,
        req: &Outgoing<'_>,
    ) -> Result<hyper::Response<Returning>, SendError> {
        loop {
            let (mut conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match conn.exchange(req).await {
                Ok(head) => {
                    let body = Returning::new(conn, self.clone(), head.framing, head.reusable);
                    let mut resp = hyper::Response::new(body);
                    *resp.status_mut() = head.status;
                    *resp.headers_mut() = head.headers;
                    return Ok(resp);
                }
                Err(Exchange::Closed { written, .. })
                    if reused && (!written || super::is_idempotent(req.method)) => {}
                Err(Exchange::Closed { cause, .. } | Exchange::Failed(cause)) => {
                    return Err(SendError::Failed(format!("{}: {cause}", self.addr)));
                }
            }
        }
    }

    /// The most recently used idle connection that the backend has not closed.
    fn take_idle(&self) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().expect("idle list poisoned").pop()?;
            if conn.is_quiet() {
                return Some(conn);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let refused = |e: String| SendError::Refused(format!("{}: {e}", self.addr));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| refused("connect timed out".into()))?
            .map_err(|e| refused(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| refused(e.to_string()))?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_SPACE),
            out: Vec::with_capacity(512),
        })
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().expect("idle list poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

impl Conn {
    /// Whether nothing has arrived on this idle connection: on an idle connection anything
    /// readable is the backend's close (or bytes no request asked for), so it is not reused.
    fn is_quiet(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` is the backend's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_SPACE);
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    /// Writes `req` and reads the response head; the body stays on the connection.
    async fn exchange(&mut self, req: &Outgoing<'_>) -> Result<Head, Exchange> {
        let closed = |written: bool| {
            move |e: io::Error| Exchange::Closed {
                written,
                cause: e.to_string(),
            }
        };
        encode_head(&mut self.out, req);
        let inline = req.body.len() <= INLINE_BODY;
        if inline {
            self.out.extend_from_slice(&req.body);
        }
        self.stream
            .write_all(&self.out)
            .await
            .map_err(closed(false))?;
        if !inline {
            self.stream
                .write_all(&req.body)
                .await
                .map_err(closed(true))?;
        }
        loop {
            if let Some(head) = self.parse_head(req.method)? {
                return Ok(head);
            }
            let n = std::future::poll_fn(|cx| self.poll_fill(cx))
                .await
                .map_err(|e| match self.buf.is_empty() {
                    true => closed(true)(e),
                    false => Exchange::Failed(e.to_string()),
                })?;
            if n == 0 {
                let cause = "the backend closed the connection".to_string();
                return Err(match self.buf.is_empty() {
                    true => Exchange::Closed {
                        written: true,
                        cause,
                    },
                    false => Exchange::Failed(format!("{cause} in a response head")),
                });
            }
        }
    }

    /// The response head at the front of the buffer once it is complete (interim 1xx
    /// responses skipped), with its body's framing and whether the connection stays open.
    fn parse_head(&mut self, method: &Method) -> Result<Option<Head>, Exchange> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut fields);
            let len = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(Exchange::Failed("response head too large".into()));
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Exchange::Failed(format!("bad response head: {e}"))),
            };
            let code = parsed.code.unwrap_or_default();
            let status = StatusCode::from_u16(code)
                .map_err(|_| Exchange::Failed(format!("bad status {code}")))?;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(Exchange::Failed("protocol upgrades are not proxied".into()));
            }
            let http10 = parsed.version == Some(0);
            let mut headers = HeaderMap::with_capacity(parsed.headers.len());
            for field in parsed.headers.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes());
                let value = HeaderValue::from_bytes(field.value);
                let (Ok(name), Ok(value)) = (name, value) else {
                    return Err(Exchange::Failed(format!("bad header {:?}", field.name)));
                };
                headers.append(name, value);
            }
            self.buf.advance(len);
            if status.is_informational() {
                continue;
            }
            let framing = framing(method, status, &headers).map_err(Exchange::Failed)?;
            if headers.contains_key(header::TRANSFER_ENCODING) {
                // A length sent beside a transfer coding is not the body's (RFC 9112 §6.3).
                headers.remove(header::CONTENT_LENGTH);
            }
            let reusable = framing != Framing::Close && keeps_alive(http10, &headers);
            return Ok(Some(Head {
                status,
                headers,
                framing,
                reusable,
            }));
        }
    }
}

/// Writes the request line and header fields of `req` into `out`.
fn encode_head(out: &mut Vec<u8>, req: &Outgoing<'_>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(req.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in req.headers {
        // The body was read whole, so its length is known and nothing waits for a 100.
        if matches!(
            *name,
            header::HOST | header::CONTENT_LENGTH | header::EXPECT
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let carries_body = matches!(*req.method, Method::POST | Method::PUT | Method::PATCH);
    if carries_body || !req.body.is_empty() {
        let _ = write!(out, "content-length: {}\r\n", req.body.len());
    }
    out.extend_from_slice(b"\r\n");
}

/// How the body after a response head is delimited (RFC 9112 §6.3).
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, String> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    if let Some(te) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default();
        return Ok(match last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            true => Framing::Chunked(Chunk::Size),
            false => Framing::Close,
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("bad content-length {value:?}"))?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting content-length values".into());
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Whether the backend keeps the connection open after this response.
fn keeps_alive(http10: bool, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    match http10 {
        true => has("keep-alive"),
        false => !has("close"),
    }
}

#[cfg(test)]
mod tests;
