//! Shared helpers for the integration tests: the one way to start the
//! gateway in-process on port 0 (`TestServer::builder()`, registering plugins
//! exactly as `main` does through `server::build_registry`, then `app::run`),
//! the one V2 test client (`v2`), plugin configs and the LINE client
//! (`plugins`), waiting on state (`wait`), child processes (`binary`) and the
//! real third-party clients (`clients`, `scenarios`).

pub mod binary;
pub mod clients;
pub mod plugins;
pub mod scenarios;
pub mod v2;
pub mod wait;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use nsq_gateway::app::{self, Listeners};
use nsq_gateway::broker::Broker;
use nsq_gateway::config::Config;
use nsq_gateway::plugin::{Plugin, PluginConfig};
use nsq_gateway::server::{self, Context};

pub use v2::{
    mpub_cmd, parse_msg, pub_cmd, read_frame_skip_heartbeats, read_frame_within, read_to_close,
    v2_round_trip,
};
pub use wait::eventually;

/// Generous bound for any single network step or wait in these tests: long
/// enough for a loaded CI machine, and only ever reached when a test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// A gateway running inside the test process.
pub struct TestServer {
    pub tcp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ctx: Arc<Context>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Defaults suitable for tests: loopback, port 0, quick shutdown.
pub fn test_config() -> Config {
    Config {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// What a `TestServer` starts with: `test_config()` unless `config` replaces
/// it, plus any `plugin`s.
pub struct Builder {
    config: Config,
    plugins: Vec<PluginConfig>,
}

impl Builder {
    /// Starts from `config` (its addresses are ignored: port 0 on loopback
    /// is used). Plugins it lists are kept.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// Adds a plugin to the config's list.
    pub fn plugin(mut self, plugin: PluginConfig) -> Builder {
        self.plugins.push(plugin);
        self
    }

    /// Adds plugins to the config's list.
    pub fn plugins(mut self, plugins: impl IntoIterator<Item = PluginConfig>) -> Builder {
        self.plugins.extend(plugins);
        self
    }

    pub async fn start(self) -> TestServer {
        self.try_start().await.expect("gateway starts")
    }

    /// Starts the gateway. A `data_path` left at the default `.` is replaced
    /// by a fresh temporary directory, so tests never share or leave state.
    pub async fn try_start(self) -> anyhow::Result<TestServer> {
        // Logs (plugin traps name the plugin, the peer and the guest's
        // stderr) show with `cargo test -- --nocapture`; RUST_LOG filters.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut config = self.config;
        config.plugins.extend(self.plugins);
        if config.data_path == std::path::Path::new(".") {
            config.data_path = temp_data_dir();
        }
        let registry = server::build_registry(&config)?;
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let tcp_addr = tcp.local_addr()?;
        let http_addr = http.local_addr()?;
        let ctx = Context::open(config, registry)?;
        let handle = tokio::spawn(app::run(
            Listeners {
                tcp,
                http: Some(http),
            },
            ctx.clone(),
        ));
        Ok(TestServer {
            tcp_addr,
            http_addr,
            ctx,
            handle: Some(handle),
        })
    }
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder {
            config: test_config(),
            plugins: Vec::new(),
        }
    }

    /// `builder().config(config).start()`.
    pub async fn start(config: Config) -> TestServer {
        Self::builder().config(config).start().await
    }

    pub fn broker(&self) -> &Broker {
        &self.ctx.broker
    }

    /// The loaded plugin called `name`.
    pub fn plugin(&self, name: &str) -> Arc<Plugin> {
        self.ctx
            .registry
            .load()
            .plugins()
            .into_iter()
            .find(|p| p.name() == name)
            .expect("plugin loaded by the test")
    }

    /// Cancels the shutdown token and waits for `run` to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.ctx.shutdown.cancel();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    /// A TCP connection that has sent the V2 magic.
    pub async fn v2(&self) -> TcpStream {
        self.v2_client().await.stream
    }

    /// A `V2Client` connected to this gateway.
    pub async fn v2_client(&self) -> v2::V2Client {
        v2::V2Client::connect(self.tcp_addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

/// A new empty directory under the system temp dir.
pub fn temp_data_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "nsq-gateway-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp data dir");
    d
}
