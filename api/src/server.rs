//! Serving the API on bounded connections ([`crate::listener`]) with
//! hyper's own protections switched on — they need a timer, which
//! `axum::serve` does not give them: a client must send a request's headers
//! within `header_read_timeout` of starting it. On `stop`, the server stops
//! accepting, lets every connection finish the request in flight, and
//! returns once they have.

use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use crate::listener::BoundedListener;

/// Serves `app` until `stop`, then drains.
pub async fn serve(
    mut listener: BoundedListener,
    app: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (io, addr) = tokio::select! {
            conn = Listener::accept(&mut listener) => conn,
            () = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
