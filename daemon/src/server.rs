//! Hosts the HTTP service on a listener we bound ourselves, with every limit
//! explicit: header-read timeout, a connection cap, and a graceful shutdown
//! that has a deadline, past which open connections are cut. (warp's own
//! `serve` sets no timer, so hyper's header timeout would be off, and its
//! graceful shutdown waits forever; see PITFALLS.md.) The request timeout is
//! the service's own (`api::build`), so that its 503 is recorded like any
//! other failure.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::{self, Response};

/// The limits the server enforces.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub connections_max: usize,
    pub grace: Duration,
}

/// How the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out; `connections` were still open and were cut.
    DeadlinePassed { connections: usize },
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and lets open connections finish for at most `limits.grace`. When it
/// returns, every connection is closed and has dropped its clone of `app`.
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
    // Each connection's task, so the ones that outlive the grace can be cut.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished tasks leave the set here, so it holds at most the open ones.
        while connections.try_join_next().is_some() {}
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
        let service = hyper::service::service_fn(move |req| {
            let handled = app(req);
            async move { Ok::<Response, Infallible>(handled.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            // Errors here are client-side (reset, header timeout); nothing to do.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_ok();
    let open = limits.connections_max - permits.available_permits();
    // Past the grace, cut what is left: a connection that lived on would keep
    // the app, and with it the store, from closing cleanly.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    if drained { Stopped::Drained } else { Stopped::DeadlinePassed { connections: open } }
}
