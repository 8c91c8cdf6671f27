//! Wire protocols and the seam between them and the server. The server
//! reads a connection's magic and hands each protocol the same two things:
//! the `Accepted` connection and an `Env` of what a protocol may use (the
//! broker, the settings, the shutdown signal, the auth servers), never the server's own
//! state. V2 is served natively here; plugins live in `crate::plugin`, and
//! both serve `(Accepted, Env)` with the same shape.

pub mod v2;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::AuthConfig;
use crate::broker::Broker;
use crate::config::Config;

/// The magic of NSQ's TCP protocol V2.
pub const MAGIC_V2: [u8; 4] = *b"  V2";

/// A connection whose magic has been read, handed to its protocol.
pub struct Accepted {
    /// The socket, or TLS over it when the connection began with a
    /// ClientHello (the magic was then read inside TLS).
    pub stream: crate::tls::Stream,
    pub peer: SocketAddr,
    pub magic: [u8; 4],
    /// Unique client id (shown in stats and logs).
    pub id: u64,
}

/// What a protocol may use while it serves a connection.
#[derive(Clone)]
pub struct Env {
    /// The topic/channel core every protocol shares.
    pub broker: Broker,
    /// The settings (read-only): limits, timeouts, negotiation bounds.
    pub config: Arc<Config>,
    /// Cancelled on SIGINT/SIGTERM: sessions end.
    pub shutdown: CancellationToken,
    /// The auth servers, when `--auth-http-address` is set: every protocol
    /// then authorizes its clients' publishes and subscriptions.
    pub auth: Option<Arc<AuthConfig>>,
    /// The server's TLS configuration, when `tls_cert`/`tls_key` are set:
    /// V2 upgrades with it on IDENTIFY `tls_v1`.
    pub tls: Option<Arc<crate::tls::TlsServer>>,
}
