//! One accepted connection up to its protocol: read exactly 4 magic bytes
//! under `magic_timeout`, look them up in the registry, and hand over. An
//! unknown magic gets nsqd's framed `E_BAD_PROTOCOL` and a close. Errors are
//! logged here, in the connection's span, and never reach the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Context;
use super::registry::{Handler, escape_magic};
use super::stats::ActiveGuard;
use crate::protocol::Accepted;

/// `[u32 size=18][i32 frame type 1 = error]E_BAD_PROTOCOL`.
pub(crate) const BAD_PROTOCOL_FRAME: &[u8] = b"\x00\x00\x00\x12\x00\x00\x00\x01E_BAD_PROTOCOL";

pub(super) async fn handle(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let id = ctx.broker.next_client_id();
    let span = info_span!("conn", %peer, id);
    async move {
        debug!("TCP: accepted");
        let _ = stream.set_nodelay(true);
        let mut magic = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(ctx.config.magic_timeout, stream.read_exact(&mut magic)) => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "failed to read protocol magic");
                return;
            }
            Err(_) => {
                ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
                info!(timeout = ?ctx.config.magic_timeout, "no protocol magic in time; closing");
                return;
            }
        }
        let Some(handler) = ctx.registry.get(&magic).cloned() else {
            ctx.stats.bad_protocol.fetch_add(1, Ordering::Relaxed);
            warn!(magic = %escape_magic(&magic), "bad protocol magic");
            let _ = stream.write_all(BAD_PROTOCOL_FRAME).await;
            let _ = stream.shutdown().await;
            return;
        };
        let protocol = handler.name().to_owned();
        info!(magic = %escape_magic(&magic), %protocol, "TCP: new client");
        let _active = ActiveGuard::new(ctx.stats.protocol(&protocol));
        let conn = Accepted {
            stream,
            peer,
            magic,
            id,
        };
        // Each protocol's session is boxed so that a connection holds the
        // state of the protocol it speaks only: inline, this task would be
        // as large as the largest of them (a future is as large as its
        // largest state), and an idle plugin connection would keep room for
        // the ~10 KB V2 session.
        let result = match handler {
            Handler::V2 => Box::pin(crate::protocol::v2::serve(conn, ctx.env()))
                .await
                .map_err(anyhow::Error::from),
            Handler::Plugin(plugin) => Box::pin(plugin.serve(conn, ctx.env())).await,
        };
        match result {
            Ok(()) if ctx.shutdown.is_cancelled() => {
                info!(%protocol, reason = "shutting down", "client left")
            }
            Ok(()) => info!(%protocol, reason = "connection closed", "client left"),
            Err(e) => info!(%protocol, reason = %format!("{e:#}"), "client left"),
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn bad_protocol_frame_is_nsqds() {
        let f = super::BAD_PROTOCOL_FRAME;
        assert_eq!(&f[..8], &[0, 0, 0, 0x12, 0, 0, 0, 1]);
        assert_eq!(&f[8..], b"E_BAD_PROTOCOL");
        assert_eq!(f.len() - 4, 0x12);
    }
}
