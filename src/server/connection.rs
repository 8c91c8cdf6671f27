//! One accepted connection up to its protocol: read exactly 4 magic bytes
//! under `magic_timeout`, look them up in the registry, and hand over. A
//! TLS ClientHello is terminated here and the real magic read inside TLS,
//! handshake and all under the same `magic_timeout`. An unknown magic gets
//! nsqd's framed `E_BAD_PROTOCOL` and a close. Errors are logged here, in
//! the connection's span, and never reach the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Context;
use super::registry::{Handler, escape_magic};
use super::stats::ActiveGuard;
use crate::protocol::Accepted;
use crate::tls::{Stream, TlsServer};

/// `[u32 size=18][i32 frame type 1 = error]E_BAD_PROTOCOL`.
pub(crate) const BAD_PROTOCOL_FRAME: &[u8] = b"\x00\x00\x00\x12\x00\x00\x00\x01E_BAD_PROTOCOL";

pub(super) async fn handle(tcp: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let id = ctx.broker.next_client_id();
    let span = info_span!("conn", %peer, id);
    async move {
        // The magic read, the TLS handshake and the checks are boxed and
        // freed before the session starts: a spawned task is as large as its
        // future's largest state, and kept inline they would cost every idle
        // connection about 2 KB for the rest of its life.
        let Some((handler, conn)) = Box::pin(admit(tcp, peer, id, &ctx)).await else {
            return;
        };
        let protocol = handler.name().to_owned();
        let _active = ActiveGuard::new(ctx.stats.protocol(&protocol));
        // Each protocol's session is boxed so that a connection holds the
        // state of the protocol it speaks only: inline, this task would be
        // as large as the largest of them, and an idle plugin connection
        // would keep room for the ~10 KB V2 session.
        let result = match handler {
            Handler::V2 => Box::pin(crate::protocol::v2::serve(conn, ctx.env()))
                .await
                .map_err(anyhow::Error::from),
            Handler::Plugin(plugin) => Box::pin(plugin.serve(conn, ctx.env())).await,
            // `admit` never returns it: TLS is only ever the outer layer.
            Handler::Tls => Ok(()),
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

/// Everything before the session: the magic under `magic_timeout` (inside
/// TLS for a ClientHello), its handler, `E_BAD_PROTOCOL` for an unknown one,
/// and `--tls-required` for plugin protocols. `None`: the connection is done.
async fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    ctx: &Context,
) -> Option<(Handler, Accepted)> {
    debug!("TCP: accepted");
    let _ = tcp.set_nodelay(true);
    let mut stream = Stream::Plain(tcp);
    let deadline = Instant::now() + ctx.config.magic_timeout;
    let mut magic = [0u8; 4];
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, stream.read_exact(&mut magic)) => r,
        _ = ctx.shutdown.cancelled() => return None,
    };
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
            debug!(error = %e, "failed to read protocol magic");
            return None;
        }
        Err(_) => {
            ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
            info!(timeout = ?ctx.config.magic_timeout, "no protocol magic in time; closing");
            return None;
        }
    }
    // This connection keeps the handler (and a plugin its instance) it
    // was accepted with, whatever a reload swaps in later.
    let registry = ctx.registry.load();
    let mut handler = registry.get(&magic).cloned();
    if let (Some(Handler::Tls), Some(tls)) = (&handler, registry.tls()) {
        let tcp = stream.take_plain()?;
        let inner = tokio::select! {
            r = tokio::time::timeout_at(deadline, tls_first(tls, tcp, magic)) => r,
            _ = ctx.shutdown.cancelled() => return None,
        };
        match inner {
            Ok(Ok((tls_stream, inner_magic))) => {
                stream = tls_stream;
                magic = inner_magic;
                // No TLS inside TLS.
                handler = registry
                    .get(&magic)
                    .filter(|h| !matches!(h, Handler::Tls))
                    .cloned();
            }
            Ok(Err(e)) => {
                ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
                info!(error = %e, "TLS handshake or inner magic failed; closing");
                return None;
            }
            Err(_) => {
                ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
                info!(timeout = ?ctx.config.magic_timeout,
                    "TLS handshake and magic not done in time; closing");
                return None;
            }
        }
    }
    let Some(handler) = handler.filter(|h| !matches!(h, Handler::Tls)) else {
        ctx.stats.bad_protocol.fetch_add(1, Ordering::Relaxed);
        warn!(magic = %escape_magic(&magic), "bad protocol magic");
        let _ = stream.write_all(BAD_PROTOCOL_FRAME).await;
        let _ = stream.shutdown().await;
        return None;
    };
    // `--tls-required`: V2 enforces it in-band (its clients upgrade with
    // IDENTIFY); a plugin protocol has no upgrade, so a plain connection
    // to one is refused before the guest runs.
    if matches!(handler, Handler::Plugin(_)) && ctx.config.tls_required() != 0 && !stream.is_tls() {
        ctx.stats.magic_failures.fetch_add(1, Ordering::Relaxed);
        info!(protocol = %handler.name(), "TLS required: plain plugin connection refused");
        let _ = stream.shutdown().await;
        return None;
    }
    info!(magic = %escape_magic(&magic), protocol = %handler.name(), "TCP: new client");
    let conn = Accepted {
        stream,
        peer,
        magic,
        id,
    };
    Some((handler, conn))
}

/// Terminates TLS on a connection whose first 4 bytes (`hello`) began a
/// ClientHello, then reads the real magic inside TLS.
async fn tls_first(
    tls: &TlsServer,
    tcp: TcpStream,
    hello: [u8; 4],
) -> std::io::Result<(Stream, [u8; 4])> {
    let mut stream = tls.accept(tcp, Bytes::copy_from_slice(&hello)).await?;
    let mut magic = [0u8; 4];
    stream.read_exact(&mut magic).await?;
    debug!(magic = %escape_magic(&magic), "TLS established; magic read inside it");
    Ok((stream, magic))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::Config;
    use crate::server::{Context, Registry};

    /// What every open connection's task keeps for its whole life, besides
    /// its boxed session: the magic read and the TLS handshake are boxed in
    /// `admit` and freed before the session starts. It was about 2.3 KB
    /// with them inline.
    #[tokio::test]
    async fn a_connection_task_is_small_once_admitted() {
        let ctx: Arc<Context> = Context::new(Config::default(), Registry::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let task = super::handle(tcp, peer, ctx);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 768, "the connection task's future is {size} bytes");
    }

    #[test]
    fn bad_protocol_frame_is_nsqds() {
        let f = super::BAD_PROTOCOL_FRAME;
        assert_eq!(&f[..8], &[0, 0, 0, 0x12, 0, 0, 0, 1]);
        assert_eq!(&f[8..], b"E_BAD_PROTOCOL");
        assert_eq!(f.len() - 4, 0x12);
    }
}
