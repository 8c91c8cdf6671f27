//! Shared helpers for the plugin tests: start the real server on port 0 with
//! a set of plugins built by build.rs, and tiny raw-bytes clients for V2 and
//! LINE, so each scenario is written once and run over any pair of protocols.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nsq_gateway::app::Listeners;
use nsq_gateway::config::Config;
use nsq_gateway::plugin::{Plugin, PluginConfig, PluginLimits, load_plugins};
use nsq_gateway::server::{Context, Handler, Registry};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Generous bound for any single network step in these tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Path of a guest built by build.rs (`target/plugins/<name>.wasm`).
pub fn component(name: &str) -> PathBuf {
    PathBuf::from(env!("NSQ_GATEWAY_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

/// Test plugins keep the pooling allocator small (many engines run in one
/// test process, each reserving slots for `max_connections`).
pub fn small_limits() -> PluginLimits {
    PluginLimits {
        max_connections: 64,
        ..PluginLimits::default()
    }
}

pub fn plugin(name: &str, file: &str, magic: &str, limits: PluginLimits) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        component: component(file),
        magics: vec![magic.into()],
        config: BTreeMap::new(),
        limits,
        override_v2: false,
    }
}

pub fn line_plugin() -> PluginConfig {
    plugin("line", "line", "LINE", small_limits())
}

/// A running gateway: its TCP address, context and loaded plugins.
pub struct Server {
    pub addr: SocketAddr,
    pub ctx: Arc<Context>,
    pub plugins: Vec<Arc<Plugin>>,
}

impl Server {
    pub fn plugin(&self, name: &str) -> &Arc<Plugin> {
        self.plugins
            .iter()
            .find(|p| p.name() == name)
            .expect("plugin loaded by the test")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

pub async fn start(plugins: Vec<PluginConfig>) -> Server {
    // Logs (plugin traps name the plugin, the peer and the guest's stderr)
    // show with `cargo test -- --nocapture`; RUST_LOG filters them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = Config {
        plugins,
        ..Config::default()
    };
    let loaded = load_plugins(&config.plugins).expect("plugins load");
    let mut registry = Registry::new();
    let mut arcs = Vec::new();
    for (magics, p) in loaded {
        for m in magics {
            registry
                .register(m, Handler::Plugin(p.clone()), false)
                .expect("register");
        }
        arcs.push(p);
    }
    let ctx = Context::new(config, registry);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let run_ctx = ctx.clone();
    tokio::spawn(
        async move { nsq_gateway::app::run(Listeners { tcp, http: None }, run_ctx).await },
    );
    Server {
        addr,
        ctx,
        plugins: arcs,
    }
}

/// A line-oriented client (LINE and the echo test plugins).
pub struct LineClient {
    pub reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: tokio::net::tcp::OwnedWriteHalf,
}

impl LineClient {
    pub async fn connect(addr: SocketAddr, magic: &[u8; 4]) -> LineClient {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, mut w) = s.into_split();
        w.write_all(magic).await.expect("magic");
        LineClient {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Connects to LINE and consumes the greeting.
    pub async fn line(addr: SocketAddr) -> LineClient {
        let mut c = Self::connect(addr, b"LINE").await;
        let hello = c.read_line().await;
        assert!(hello.starts_with("OK LINE"), "greeting: {hello:?}");
        c
    }

    pub async fn send(&mut self, line: &str) {
        // One write, so chunk-per-message test guests see one chunk.
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await.expect("write");
    }

    /// Next line without its newline; "" at EOF.
    pub async fn read_line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(STEP, self.reader.read_line(&mut s))
            .await
            .expect("line in time")
            .expect("read");
        s.trim_end_matches(['\r', '\n']).to_string()
    }

    pub async fn request(&mut self, line: &str) -> String {
        self.send(line).await;
        self.read_line().await
    }

    /// True if the server closed the connection (EOF or reset) within STEP.
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(STEP, self.reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A raw V2 client speaking just enough of the protocol for the scenarios.
pub struct V2Client {
    pub stream: TcpStream,
}

/// A V2 frame: (type, payload).
pub type Frame = (u32, Vec<u8>);

impl V2Client {
    pub async fn connect(addr: SocketAddr) -> V2Client {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"  V2").await.expect("magic");
        V2Client { stream }
    }

    pub async fn frame(&mut self) -> Frame {
        loop {
            let read = async {
                let size = self.stream.read_u32().await?;
                let kind = self.stream.read_u32().await?;
                let mut data = vec![0u8; size.saturating_sub(4) as usize];
                self.stream.read_exact(&mut data).await?;
                Ok::<_, std::io::Error>((kind, data))
            };
            let (kind, data) = tokio::time::timeout(STEP, read)
                .await
                .expect("frame in time")
                .expect("frame");
            if kind == 0 && data == b"_heartbeat_" {
                self.stream.write_all(b"NOP\n").await.expect("nop");
                continue;
            }
            return (kind, data);
        }
    }

    pub async fn expect_ok(&mut self) {
        let (kind, data) = self.frame().await;
        assert_eq!(
            (kind, String::from_utf8_lossy(&data).into_owned()),
            (0, "OK".into())
        );
    }

    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        let mut cmd = format!("PUB {topic}\n").into_bytes();
        cmd.extend_from_slice(&(body.len() as u32).to_be_bytes());
        cmd.extend_from_slice(body);
        self.stream.write_all(&cmd).await.expect("pub");
        self.expect_ok().await;
    }

    pub async fn subscribe(&mut self, topic: &str, channel: &str) {
        self.stream
            .write_all(format!("SUB {topic} {channel}\n").as_bytes())
            .await
            .expect("sub");
        self.expect_ok().await;
    }

    pub async fn ready(&mut self, n: u32) {
        self.stream
            .write_all(format!("RDY {n}\n").as_bytes())
            .await
            .expect("rdy");
    }

    /// Next message: (id, attempts, body).
    pub async fn message(&mut self) -> (String, u16, Vec<u8>) {
        let (kind, data) = self.frame().await;
        assert_eq!(
            kind,
            2,
            "expected a message frame, got {kind}: {:?}",
            String::from_utf8_lossy(&data)
        );
        let attempts = u16::from_be_bytes([data[8], data[9]]);
        let id = String::from_utf8_lossy(&data[10..26]).into_owned();
        (id, attempts, data[26..].to_vec())
    }

    pub async fn finish(&mut self, id: &str) {
        self.stream
            .write_all(format!("FIN {id}\n").as_bytes())
            .await
            .expect("fin");
    }
}
