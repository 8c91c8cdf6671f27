//! The TCP server: the shared `Context`, the accept loop (connection limit,
//! backoff on transient errors), the magic read under a timeout and registry
//! dispatch. `app::run` starts it beside the HTTP API.

mod accept;
mod connection;
pub mod registry;
pub mod reload;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::broker::Broker;
use crate::config::Config;

pub use registry::{Handler, MAGIC_V2, Registry, build_registry, escape_magic};
pub use reload::{PluginSetStatus, RegistryCell, reload_plugins};
pub use stats::{ProtocolStats, ServerStats};

/// What every connection and the HTTP API share.
pub struct Context {
    pub broker: Broker,
    pub config: Arc<Config>,
    /// Cancelled on SIGINT/SIGTERM: the accept loop stops and sessions end.
    pub shutdown: CancellationToken,
    pub stats: Arc<ServerStats>,
    /// Magic → handler; swapped whole by a plugin reload (`reload`).
    pub registry: RegistryCell,
    /// The config file a reload re-reads (set by `main`; tests set it).
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    /// The loaded plugin set and the last refused reload, for `/stats`.
    pub plugin_set: std::sync::Mutex<PluginSetStatus>,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The TCP address actually bound (set by `run`; differs from the
    /// configured one when that asked for port 0). `/info` reports it.
    pub tcp_addr: std::sync::OnceLock<SocketAddr>,
    /// The HTTPS address actually bound, when HTTPS is served (set by
    /// `app::run`): plain HTTP's `TLS_REQUIRED` answer names its port.
    pub https_addr: std::sync::OnceLock<SocketAddr>,
    /// nsqlookupd registration; started by `run` once the ports are known.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The auth servers, if configured (see `crate::auth`).
    pub auth: Option<Arc<crate::auth::AuthConfig>>,
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
            auth: self.auth.clone(),
            tls: self.registry.load().tls().cloned(),
        }
    }

    fn with_broker(config: Config, registry: Registry, broker: Broker) -> Arc<Context> {
        let shutdown = CancellationToken::new();
        let cluster = crate::cluster::Cluster::new(
            broker.clone(),
            config.nsqlookupd_tcp_addresses.clone(),
            shutdown.clone(),
        );
        let plugin_set = PluginSetStatus {
            plugins: reload::origins(&config.plugins),
            ..PluginSetStatus::default()
        };
        Arc::new(Context {
            auth: crate::auth::AuthConfig::from_config(&config),
            config_path: std::sync::OnceLock::new(),
            plugin_set: std::sync::Mutex::new(plugin_set),
            reload_lock: tokio::sync::Mutex::new(()),
            broker,
            cluster,
            config: Arc::new(config),
            shutdown,
            stats: Arc::new(ServerStats::default()),
            registry: RegistryCell::new(registry),
            tcp_addr: std::sync::OnceLock::new(),
            https_addr: std::sync::OnceLock::new(),
        })
    }
}

/// Accepts TCP connections until `ctx.shutdown` is cancelled, each session
/// a task on `tracker` (which the caller drains).
pub async fn serve(tcp: TcpListener, ctx: Arc<Context>, tracker: &TaskTracker) {
    if let Ok(addr) = tcp.local_addr() {
        info!(%addr, "TCP: listening");
        let _ = ctx.tcp_addr.set(addr);
    }
    accept::accept_loop(tcp, ctx, tracker).await;
}
