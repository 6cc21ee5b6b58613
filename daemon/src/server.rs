//! Hosts the HTTP service on a listener we bound ourselves, with every limit
//! explicit: header-read timeout, request timeout, a connection cap, and a
//! graceful shutdown that has a deadline. (warp's own `serve` sets no timer,
//! so hyper's header timeout would be off, and its graceful shutdown waits
//! forever; see PITFALLS.md.)

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{self, Response};

/// The limits the server enforces.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub connections_max: usize,
    pub grace: Duration,
}

/// How the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out; `connections` were still open and are cut.
    DeadlinePassed { connections: usize },
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and lets open connections finish for at most `limits.grace`.
pub async fn run<A>(
    listener: TcpListener,
    app: A,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> Stopped
where
    A: Fn(http::Request<Incoming>) -> api::BoxFuture + Send + Sync + 'static,
{
    let app = Arc::new(app);
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // At the cap we stop accepting; further clients wait in the kernel backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: report, back off briefly, keep serving.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<Response, Infallible>(api::with_request_id(req, request_timeout, &*app).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are client-side (reset, header timeout); nothing to do.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    match tokio::time::timeout(limits.grace, graceful.shutdown()).await {
        Ok(()) => Stopped::Drained,
        Err(_) => {
            Stopped::DeadlinePassed { connections: limits.connections_max - permits.available_permits() }
        }
    }
}
