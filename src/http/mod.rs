//! The nsqd 1.3-compatible HTTP API and Prometheus `/metrics`, served by axum
//! on the same broker core as V2 and the plugins. `serve` runs the router on a
//! listener `main` bound; `router` builds it so tests can call it without a
//! socket.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::server::Context;

/// Serves the HTTP API on `listener` until `ctx.shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<Context>) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP: listening");
    }
    let shutdown = ctx.shutdown.clone().cancelled_owned();
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The HTTP API's routes over `ctx`.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/ping", get(|| async { "OK" }))
        .with_state(ctx)
}
