//! The application: given the bound listeners and a `Context`, start the
//! broker's timers, nsqlookupd registration, the statsd push (when
//! configured), the HTTP API and the TCP server side by side, and on
//! shutdown wait for all of them before writing the in-memory messages to
//! disk. With TLS configured it also binds and serves `https_address`.
//! `main` binds and calls `run`; tests bind
//! port 0 and cancel the shutdown token themselves.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::PeerInfo;
use crate::server::Context;

/// The listeners `main` bound. Without `http`, only TCP is served.
pub struct Listeners {
    pub tcp: TcpListener,
    pub http: Option<TcpListener>,
}

/// Serves until `ctx.shutdown` is cancelled, then waits up to
/// `shutdown_timeout` for sessions and HTTP requests to end and writes the
/// in-memory messages of durable topics and channels to disk.
pub async fn run(listeners: Listeners, ctx: Arc<Context>) -> anyhow::Result<()> {
    // Bound first, so a busy port fails startup before anything runs.
    let https = match (
        ctx.registry.load().tls().cloned(),
        ctx.config.https_address.as_str(),
    ) {
        (Some(tls), addr) if !addr.is_empty() => {
            let https = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen ({addr}) failed"))?;
            if let Ok(a) = https.local_addr() {
                let _ = ctx.https_addr.set(a);
            }
            Some((https, tls))
        }
        _ => None,
    };
    let tracker = TaskTracker::new();
    tracker.spawn(ctx.broker.clone().run_scanner(ctx.shutdown.clone()));
    let port = |l: &TcpListener| l.local_addr().map_or(0, |a| a.port());
    let tcp_port = port(&listeners.tcp);
    let http_port = listeners.http.as_ref().map_or(0, port);
    let broadcast_http_port = match ctx.config.broadcast_http_port {
        0 => http_port,
        p => p,
    };
    if !ctx.config.statsd_address.is_empty() {
        tracker.spawn(crate::statsd::run(ctx.clone(), broadcast_http_port));
    }
    ctx.cluster.start(PeerInfo {
        broadcast_address: ctx.config.broadcast_address.clone(),
        hostname: crate::http::hostname(),
        tcp_port: match ctx.config.broadcast_tcp_port {
            0 => tcp_port,
            p => p,
        },
        http_port: broadcast_http_port,
        version: crate::http::VERSION.to_owned(),
    });
    if let Some((https, tls)) = https {
        let ctx = ctx.clone();
        tracker.spawn(async move {
            if let Err(e) = crate::http::serve_tls(https, tls, ctx).await {
                tracing::error!(error = %e, "HTTPS server failed");
            }
        });
    }
    if let Some(http) = listeners.http {
        let ctx = ctx.clone();
        tracker.spawn(async move {
            if let Err(e) = crate::http::serve(http, ctx).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    crate::server::serve(listeners.tcp, ctx.clone(), &tracker).await;
    tracker.close();
    let deadline = ctx.config.shutdown_timeout;
    info!(
        open = tracker.len(),
        ?deadline,
        "waiting for sessions, HTTP requests and nsqlookupd to finish"
    );
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tracker.len(),
            ?deadline,
            "shutdown deadline passed with sessions still open; exiting anyway"
        );
    } else {
        info!("all sessions closed");
    }
    // Sessions have ended and their consumers have put back what was in
    // flight: write every in-memory message to disk.
    info!("writing in-memory messages and metadata to disk");
    ctx.broker.persist();
    info!("shutdown complete");
    Ok(())
}
