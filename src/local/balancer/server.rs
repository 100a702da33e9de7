//! The balancer's listener: each accepted connection served by hyper straight into the proxy, without a router between them.
//!
//! A router costs a path match and per-request extensions (the peer address, the original
//! URI) on every proxied request; the balancer has one route of its own and knows the peer
//! from the accept.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use super::{Balancer, handle};

/// How long a failed accept (out of file descriptors, say) waits before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the requests under way at shutdown may take to finish: as long as a replica's
/// own shutdown grace.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the balancer on `listener` until `shutdown` resolves, then lets the requests under
/// way finish (for at most ten seconds).
pub async fn serve(
    listener: tokio::net::TcpListener,
    balancer: Arc<Balancer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "balancer: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // As a proxy's keep-alive connections usually are: small responses leave at once.
        let _ = stream.set_nodelay(true);
        let balancer = balancer.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let balancer = balancer.clone();
            async move { Ok::<_, Infallible>(handle(&balancer, peer, req.map(Body::new)).await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("balancer: requests still under way after {DRAIN:?}; closing");
    }
    Ok(())
}
