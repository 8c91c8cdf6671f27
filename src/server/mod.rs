//! The TCP server: the accept loop (connection limit, backoff on transient
//! errors), the magic read under a timeout, registry dispatch, and graceful
//! shutdown. `main` binds the listeners; `run` serves what it is handed, so
//! tests bind port 0 and cancel the shutdown token themselves.

mod accept;
mod connection;
pub mod registry;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::Config;

pub use registry::{Handler, MAGIC_V2, Registry, build_registry, escape_magic};
pub use stats::{ProtocolStats, ServerStats};

/// What every connection and the HTTP API share.
pub struct Context {
    pub broker: Broker,
    pub config: Arc<Config>,
    /// Cancelled on SIGINT/SIGTERM: the accept loop stops and sessions end.
    pub shutdown: CancellationToken,
    pub stats: Arc<ServerStats>,
    pub registry: Arc<Registry>,
    /// The TCP address actually bound (set by `run`; differs from the
    /// configured one when that asked for port 0). `/info` reports it.
    pub tcp_addr: std::sync::OnceLock<SocketAddr>,
    /// nsqlookupd registration; started by `run` once the ports are known.
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl Context {
    /// A context with a fresh memory-only broker (nothing read from or
    /// written to `data_path`): for tests and benches.
    pub fn new(config: Config, registry: Registry) -> Arc<Context> {
        let broker = Broker::new(config.broker_options());
        Self::with_broker(config, registry, broker)
    }

    /// A context with a durable broker under `config.data_path`, restoring
    /// what a previous run left there. This is what `main` uses.
    pub fn open(config: Config, registry: Registry) -> anyhow::Result<Arc<Context>> {
        let broker = Broker::open(config.broker_options())?;
        Ok(Self::with_broker(config, registry, broker))
    }

    /// What a protocol gets to serve a connection (see `protocol::Env`).
    pub fn env(&self) -> crate::protocol::Env {
        crate::protocol::Env {
            broker: self.broker.clone(),
            config: self.config.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn with_broker(config: Config, registry: Registry, broker: Broker) -> Arc<Context> {
        let shutdown = CancellationToken::new();
        let cluster = crate::cluster::Cluster::new(
            broker.clone(),
            config.nsqlookupd_tcp_addresses.clone(),
            shutdown.clone(),
        );
        Arc::new(Context {
            broker,
            cluster,
            config: Arc::new(config),
            shutdown,
            stats: Arc::new(ServerStats::default()),
            registry: Arc::new(registry),
            tcp_addr: std::sync::OnceLock::new(),
        })
    }
}

/// The listeners `main` bound.
pub struct Listeners {
    pub tcp: TcpListener,
    pub http: Option<TcpListener>,
}

/// Serves until `ctx.shutdown` is cancelled, then waits up to
/// `shutdown_timeout` for sessions to end and writes the in-memory messages
/// of durable topics and channels to disk.
pub async fn run(listeners: Listeners, ctx: Arc<Context>) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    tracker.spawn(ctx.broker.clone().run_scanner(ctx.shutdown.clone()));
    let tcp_port = listeners.tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let http_port = listeners
        .http
        .as_ref()
        .and_then(|h| h.local_addr().ok())
        .map_or(0, |a| a.port());
    ctx.cluster.start(crate::cluster::PeerInfo {
        broadcast_address: ctx.config.broadcast_address.clone(),
        hostname: crate::http::hostname(),
        tcp_port: match ctx.config.broadcast_tcp_port {
            0 => tcp_port,
            p => p,
        },
        http_port: match ctx.config.broadcast_http_port {
            0 => http_port,
            p => p,
        },
        version: crate::http::VERSION.to_owned(),
    });
    if let Some(http) = listeners.http {
        let ctx = ctx.clone();
        tracker.spawn(async move {
            if let Err(e) = crate::http::serve(http, ctx).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    if let Ok(addr) = listeners.tcp.local_addr() {
        info!(%addr, "TCP: listening");
        let _ = ctx.tcp_addr.set(addr);
    }
    accept::accept_loop(listeners.tcp, ctx.clone(), &tracker).await;
    tracker.close();
    let deadline = ctx.config.shutdown_timeout;
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
    ctx.broker.persist();
    Ok(())
}
