//! Plugin configurations for the guests build.rs compiles into
//! `target/plugins/`, and a line-oriented client for LINE and the echo test
//! guests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use nsq_gateway::plugin::{PluginConfig, PluginLimits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::STEP;

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

/// Guest `file` registered as `name` for one `magic`.
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

/// The `name` entry of the shipped gateway.yaml, its component path made
/// absolute and its connection cap small enough for a test process.
pub fn shipped_plugin(name: &str) -> PluginConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("gateway.yaml")).expect("gateway.yaml");
    let config = nsq_gateway::config::Config::from_yaml(&text, "gateway.yaml").expect("parses");
    let mut p = config
        .plugins
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("gateway.yaml has a `{name}` plugin"));
    p.component = root.join(&p.component);
    p.limits.max_connections = 64;
    p
}

/// The LINE plugin with `small_limits`.
pub fn line_plugin() -> PluginConfig {
    plugin("line", "line", "LINE", small_limits())
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
