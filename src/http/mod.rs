//! The nsqd 1.3-compatible HTTP API and Prometheus `/metrics`, served by axum
//! on the same broker core as V2 and the plugins. `serve` runs the router on a
//! listener `main` bound; `router` builds it so tests can call it without a
//! socket. Every response follows nsqd: V1 JSON errors, 404 `NOT_FOUND` for
//! an unknown path and 405 `METHOD_NOT_ALLOWED` for a known one. `serve_tls`
//! serves the same routes over TLS (HTTPS); with `tls_required: 2` the plain
//! listener answers nsqd's 403 `TLS_REQUIRED` to everything.

mod admin;
pub mod error;
mod info;
pub use info::hostname;
pub mod metrics;
mod options;
pub(crate) mod params;
mod process;
pub(crate) mod publish;
mod reload;
mod stats;
mod timefmt;
mod tls_listener;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};

use crate::server::Context;
use error::ApiError;
use options::RuntimeOptions;

pub use metrics::to_prometheus_text;
pub use process::ProcessStats;
pub use stats::{plugin_stats, topic_stats};

/// The version reported by `/info` and `/stats`: nsqd's API level, with this
/// gateway's own version as semver build metadata so tools that parse it
/// (nsqadmin) see a 1.3 node.
pub const VERSION: &str = concat!("1.3.0+nsq-gateway.", env!("CARGO_PKG_VERSION"));

/// What the handlers share.
pub struct HttpState {
    pub ctx: Arc<Context>,
    /// The bound HTTP address, when serving a socket (for `/info`).
    http_addr: Option<SocketAddr>,
    /// Whether this is the HTTPS listener (exempt from `tls_required: 2`).
    tls: bool,
    /// Process start, seconds since the epoch (`start_time` in `/stats`).
    start_time: f64,
    /// Options changed by `PUT /config`. Locked only to read or replace a
    /// value, never across `.await`.
    runtime: Mutex<RuntimeOptions>,
}

impl HttpState {
    fn new(ctx: Arc<Context>, http_addr: Option<SocketAddr>, tls: bool) -> Arc<HttpState> {
        let start_time = process::ProcessStats::read()
            .start_time_seconds
            .unwrap_or_else(timefmt::now_seconds)
            .floor();
        Arc::new(HttpState {
            ctx,
            http_addr,
            tls,
            start_time,
            runtime: Mutex::new(RuntimeOptions::default()),
        })
    }

    fn runtime(&self) -> MutexGuard<'_, RuntimeOptions> {
        crate::sync::lock(&self.runtime)
    }
}

/// Serves the HTTP API on `listener` until `ctx.shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<Context>) -> anyhow::Result<()> {
    let addr = listener.local_addr().ok();
    if let Some(addr) = addr {
        tracing::info!(%addr, "HTTP: listening");
    }
    let token = ctx.shutdown.clone();
    let shutdown = async move {
        token.cancelled().await;
        if let Some(addr) = addr {
            tracing::info!(%addr, "HTTP: closing");
        }
    };
    axum::serve(listener, build(HttpState::new(ctx, addr, false)))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Serves the HTTP API over TLS on `listener` until `ctx.shutdown` is
/// cancelled. Handshakes run concurrently, each under a deadline, so a
/// client that stalls one does not hold up the others.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<crate::tls::TlsServer>,
    ctx: Arc<Context>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().ok();
    if let Some(addr) = addr {
        tracing::info!(%addr, "HTTPS: listening");
    }
    let token = ctx.shutdown.clone();
    let shutdown = async move {
        token.cancelled().await;
        if let Some(addr) = addr {
            tracing::info!(%addr, "HTTPS: closing");
        }
    };
    let listener = tls_listener::TlsListener::new(listener, tls.https_config());
    axum::serve(listener, build(HttpState::new(ctx, addr, true)))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The HTTP API's routes over `ctx`.
pub fn router(ctx: Arc<Context>) -> Router {
    build(HttpState::new(ctx, None, false))
}

fn build(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/ping", get(info::ping))
        .route("/info", get(info::info))
        .route("/stats", get(stats::stats))
        .route("/metrics", get(metrics::metrics))
        .route("/pub", post(publish::pub_))
        .route("/mpub", post(publish::mpub))
        .route("/topic/create", post(admin::topic_create))
        .route("/topic/delete", post(admin::topic_delete))
        .route("/topic/empty", post(admin::topic_empty))
        .route("/topic/pause", post(admin::topic_pause))
        .route("/topic/unpause", post(admin::topic_unpause))
        .route("/channel/create", post(admin::channel_create))
        .route("/channel/delete", post(admin::channel_delete))
        .route("/channel/empty", post(admin::channel_empty))
        .route("/channel/pause", post(admin::channel_pause))
        .route("/channel/unpause", post(admin::channel_unpause))
        .route("/plugins/reload", post(reload::reload))
        .route(
            "/config/{opt}",
            get(options::get_option).put(options::put_option),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tls_required,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// nsqd's `--tls-required` on HTTP: at 2 (TCP and HTTP), the plain
/// listener answers every request with 403 and the HTTPS port.
async fn tls_required(
    axum::extract::State(state): axum::extract::State<Arc<HttpState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.tls || state.ctx.config.tls_required() != 2 {
        return next.run(req).await;
    }
    let port = state.ctx.https_addr.get().map_or(0, SocketAddr::port);
    let body = format!(r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#);
    axum::response::Response::builder()
        .status(403)
        .header("X-NSQ-Content-Type", "nsq; version=1.0")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// Logs each request as nsqd does (`200 GET /stats 1.2ms`), at debug level
/// so publishing over HTTP does not flood the log.
async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = tokio::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        status = resp.status().as_u16(),
        %method,
        %uri,
        elapsed = ?started.elapsed(),
        "HTTP request"
    );
    resp
}
