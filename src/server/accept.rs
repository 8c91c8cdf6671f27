//! The accept loop, as nsqd's `TCPServer`: a permit from the connection limit
//! is taken before accepting, transient errors (EMFILE, ENFILE, ECONNABORTED,
//! ...) are logged and retried with backoff and never end the server, and
//! each connection gets its own task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::Context;
use super::connection;

const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(super) async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, tracker: &TaskTracker) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut backoff = BACKOFF_START;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = ctx.shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_START;
                let ctx = ctx.clone();
                tracker.spawn(async move {
                    connection::handle(stream, peer, ctx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                ctx.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, retry_in = ?backoff, "temporary accept() failure");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = ctx.shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "TCP: closing");
    }
}
