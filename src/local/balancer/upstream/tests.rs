//! The upstream connections against real backends on loopback: hyper's server, and a raw socket server for the wire cases hyper would not produce.

use super::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

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

/// What the raw backend does with one request.
enum Reply {
    /// Writes these bytes and reads the next request.
    Send(&'static [u8]),
    /// Writes these bytes and closes the connection.
    SendAndClose(&'static [u8]),
    /// Closes the connection without answering.
    Close,
}

/// A raw backend: `script(connection, request)` says what to do with each request (both
/// counted from 0); it records every request it read, as text.
async fn raw_backend(script: fn(usize, usize) -> Reply) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut conn_no = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            let this = conn_no;
            conn_no += 1;
            tokio::spawn(async move {
                for req_no in 0.. {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(request);
                    match script(this, req_no) {
                        Reply::Send(bytes) => stream.write_all(bytes).await.unwrap(),
                        Reply::SendAndClose(bytes) => {
                            stream.write_all(bytes).await.unwrap();
                            return;
                        }
                        Reply::Close => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// One request off `stream` (head and `content-length` body), or `None` at its close.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(head + &String::from_utf8(body).unwrap())
}

static HOST: HeaderValue = HeaderValue::from_static("backend:80");

fn request<'a>(method: &'a Method, path: &'a PathAndQuery, headers: &'a HeaderMap) -> Outgoing<'a> {
    Outgoing {
        method,
        path,
        host: &HOST,
        headers,
        body: Bytes::new(),
    }
}

async fn get(up: &Arc<Upstream>) -> Result<hyper::Response<Returning>, SendError> {
    let path = PathAndQuery::from_static("/");
    up.send(&request(&Method::GET, &path, &HeaderMap::new()))
        .await
}

async fn body_of(resp: hyper::Response<Returning>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn idle(up: &Upstream) -> usize {
    up.idle.lock().unwrap().len()
}

#[tokio::test]
async fn a_read_response_puts_its_connection_back() {
    let (addr, accepted) = backend(false).await;
    let up = Upstream::new(addr);
    for _ in 0..20 {
        assert_eq!(body_of(get(&up).await.unwrap()).await, "hello");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
    // Two at once need two connections; both go back.
    let (a, b) = tokio::join!(get(&up), get(&up));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (body_of(a).await, body_of(b).await),
        ("hello".into(), "hello".into())
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(idle(&up), 2);
}

#[tokio::test]
async fn a_body_dropped_unread_closes_its_connection() {
    let (addr, accepted) =
        raw_backend(|_, _| Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"))
            .await;
    let up = Upstream::new(addr);
    let resp = get(&up).await.unwrap();
    // Ten bytes announced, five sent, none read: the connection is not reusable.
    assert!(!resp.body().is_end_stream());
    drop(resp);
    assert_eq!(idle(&up), 0);
    drop(get(&up).await.unwrap());
    assert_eq!(accepted.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_backend_that_closes_its_connections_still_answers_every_request() {
    let (addr, accepted) = backend(true).await;
    let up = Upstream::new(addr);
    for _ in 0..5 {
        assert_eq!(body_of(get(&up).await.unwrap()).await, "hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    assert_eq!(idle(&up), 0, "`connection: close` answers are not kept");
}

#[tokio::test]
async fn nobody_listening_is_refused() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = Upstream::new(addr);
    match get(&up).await {
        Err(SendError::Refused(e)) => assert!(e.contains(&addr.to_string()), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_request_goes_out_with_the_backends_host_and_its_body_length() {
    let (addr, seen) =
        raw_backend(|_, _| Reply::Send(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")).await;
    let up = Upstream::new(addr);
    let path = PathAndQuery::from_static("/kv/a?x=1");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
    let mut req = request(&Method::PUT, &path, &headers);
    req.body = Bytes::from_static(b"{\"v\":1}");
    let resp = up.send(&req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.body().is_end_stream());
    assert_eq!(
        idle(&up),
        1,
        "an empty body gives the connection back at once"
    );
    assert_eq!(
        seen.lock().unwrap()[0],
        "PUT /kv/a?x=1 HTTP/1.1\r\nhost: backend:80\r\ncontent-type: application/json\r\n\
         content-length: 7\r\n\r\n{\"v\":1}"
    );
}

#[tokio::test]
async fn a_chunked_response_is_decoded_and_its_connection_kept() {
    let (addr, seen) = raw_backend(|_, _| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\n\
              5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        )
    })
    .await;
    let up = Upstream::new(addr);
    for _ in 0..3 {
        let resp = get(&up).await.unwrap();
        assert!(!resp.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(body_of(resp).await, "hello, world");
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(idle(&up), 1, "three requests on one connection");
}

#[tokio::test]
async fn a_body_without_length_runs_to_the_close() {
    let (addr, _) =
        raw_backend(|_, _| Reply::SendAndClose(b"HTTP/1.0 200 OK\r\n\r\nall of it")).await;
    let up = Upstream::new(addr);
    assert_eq!(body_of(get(&up).await.unwrap()).await, "all of it");
    assert_eq!(idle(&up), 0);
}

#[tokio::test]
async fn head_and_interim_responses_carry_no_body() {
    let (addr, seen) = raw_backend(|_, _| {
        Reply::Send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    })
    .await;
    let up = Upstream::new(addr);
    let path = PathAndQuery::from_static("/");
    for _ in 0..2 {
        let resp = up
            .send(&request(&Method::HEAD, &path, &HeaderMap::new()))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "5");
        assert!(body_of(resp).await.is_empty());
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(idle(&up), 1);
}

#[tokio::test]
async fn a_large_body_streams_over_many_reads_and_keeps_its_connection() {
    static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut w = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
        w.extend((0..1_048_576u32).map(|i| (i % 251) as u8));
        w
    });
    let (addr, _) = raw_backend(|_, _| Reply::Send(&BIG)).await;
    let up = Upstream::new(addr);
    for _ in 0..2 {
        let body = body_of(get(&up).await.unwrap()).await;
        assert_eq!(body.len(), 1_048_576);
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
    assert_eq!(idle(&up), 1);
}

#[tokio::test]
async fn a_kept_alive_connection_the_backend_closed_costs_no_failure() {
    let (addr, seen) =
        raw_backend(|_, _| Reply::SendAndClose(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
            .await;
    let up = Upstream::new(addr);
    assert_eq!(body_of(get(&up).await.unwrap()).await, "ok");
    assert_eq!(idle(&up), 1, "the response said nothing of closing");
    // Let the close reach the socket: the idle connection is then seen to be closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(body_of(get(&up).await.unwrap()).await, "ok");
    assert_eq!(seen.lock().unwrap().len(), 2, "each request sent once");
}

#[tokio::test]
async fn a_close_after_the_request_was_written_retries_only_idempotent_methods() {
    // Each connection answers its first request and closes on its second without answering:
    // the keep-alive race in which a backend closes just as a request arrives.
    let script = |_, req| match req {
        0 => Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        _ => Reply::Close,
    };
    let (addr, seen) = raw_backend(script).await;
    let up = Upstream::new(addr);
    assert_eq!(body_of(get(&up).await.unwrap()).await, "ok");
    assert_eq!(body_of(get(&up).await.unwrap()).await, "ok", "GET again");
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "sent twice: once lost, once answered"
    );

    let path = PathAndQuery::from_static("/");
    let headers = HeaderMap::new();
    match up.send(&request(&Method::POST, &path, &headers)).await {
        Err(SendError::Failed(e)) => assert!(e.contains("closed"), "{e}"),
        other => panic!("a POST the backend may have seen is not sent twice: {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn malformed_responses_fail_without_reuse() {
    let (addr, _) =
        raw_backend(|_, _| Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n")).await;
    let up = Upstream::new(addr);
    match get(&up).await {
        Err(SendError::Failed(e)) => assert!(e.contains("content-length"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(idle(&up), 0);
}
