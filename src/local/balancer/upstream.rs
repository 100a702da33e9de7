//! Keep-alive HTTP/1 connections from the balancer to one backend: an idle list per backend, a connection back on it once its response body has been read.
//!
//! The general-purpose pooled client looks its pool up by scheme and authority on every
//! request and spawns a task per response to put the connection back; a balancer knows its
//! backend before it sends and can hand the connection back from the response body itself.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// Connections kept idle per backend; more are closed when their response ends.
const MAX_IDLE: usize = 256;
/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a request did not get a response.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: the backend is down or not listening (safe to retry).
    Refused(String),
    /// The connection failed while the request was under way.
    Failed(String),
}

type Sender = SendRequest<Full<Bytes>>;

/// The idle connections to one backend.
#[derive(Debug)]
pub(super) struct Upstream {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
}

impl Upstream {
    /// No connections yet to `addr`.
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` on an idle connection, or on a new one; a request that an idle connection
    /// closed before writing it goes out again on another.
    pub async fn send(
        self: &Arc<Self>,
        mut req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Returning>, SendError> {
        loop {
            let (mut sender, reused) = match self.take_idle().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let home = Some((sender, self.clone()));
                    return Ok(resp.map(|body| Returning { body, home }));
                }
                Err(mut e) => match e.take_message() {
                    // The server closed a kept-alive connection as we picked it: never sent.
                    Some(back) if reused => req = back,
                    _ => return Err(SendError::Failed(e.into_error().to_string())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open.
    async fn take_idle(&self) -> Option<Sender> {
        loop {
            let mut sender = self.idle.lock().expect("idle list poisoned").pop()?;
            // A connection put back at the end of its body may still be finishing that
            // response; it is ready within the same turn of its connection task.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, SendError> {
        let refused = |e: String| SendError::Refused(format!("{}: {e}", self.addr));
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await
                .map_err(|_| refused("connect timed out".into()))?
                .map_err(|e| refused(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| refused(e.to_string()))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| refused(e.to_string()))?;
        // The connection runs until the backend or the last sender closes it; its errors
        // reach the request that was under way.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn put_back(&self, sender: Sender) {
        let mut idle = self.idle.lock().expect("idle list poisoned");
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }
}

/// A response body that puts its connection back on the idle list once it has been read to
/// the end (a body dropped before its end closes the connection: its rest was never read).
#[derive(Debug)]
pub(super) struct Returning {
    body: Incoming,
    home: Option<(Sender, Arc<Upstream>)>,
}

impl Returning {
    fn give_back(&mut self) {
        if let Some((sender, upstream)) = self.home.take() {
            upstream.put_back(sender);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend on loopback that answers `hello` and counts the connections it accepted;
    /// with `close_after_one`, it closes each connection after its first response.
    async fn backend(close_after_one: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from("hello"))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(!close_after_one)
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, accepted)
    }

    fn get() -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = "/".parse().unwrap();
        req.headers_mut()
            .insert(hyper::header::HOST, "backend".parse().unwrap());
        req
    }

    async fn body_of(resp: hyper::Response<Returning>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_read_response_puts_its_connection_back() {
        let (addr, accepted) = backend(false).await;
        let up = Upstream::new(addr);
        for _ in 0..20 {
            let resp = up.send(get()).await.unwrap();
            assert_eq!(body_of(resp).await, "hello");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
        // Two at once need two connections; both go back.
        let (a, b) = tokio::join!(up.send(get()), up.send(get()));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            (body_of(a).await, body_of(b).await),
            ("hello".into(), "hello".into())
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(up.idle.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (addr, accepted) = backend(false).await;
        let up = Upstream::new(addr);
        let resp = up.send(get()).await.unwrap();
        // Five bytes announced, none read: the connection is not reusable.
        assert!(!resp.body().is_end_stream());
        drop(resp);
        assert!(up.idle.lock().unwrap().is_empty());
        assert_eq!(body_of(up.send(get()).await.unwrap()).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_backend_that_closes_its_connections_still_answers_every_request() {
        let (addr, accepted) = backend(true).await;
        let up = Upstream::new(addr);
        for _ in 0..5 {
            assert_eq!(body_of(up.send(get()).await.unwrap()).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn nobody_listening_is_refused() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let up = Upstream::new(addr);
        match up.send(get()).await {
            Err(SendError::Refused(e)) => assert!(e.contains(&addr.to_string()), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
