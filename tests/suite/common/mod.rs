//! Shared helpers for the integration tests: start the gateway in-process on
//! port 0 (exactly as `main` does, through `server::build_registry` and
//! `app::run`), shut it down, and speak raw V2 frames.
#![allow(dead_code)]

pub mod binary;
pub mod clients;
pub mod scenarios;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use nsq_gateway::app::{self, Listeners};
use nsq_gateway::broker::Broker;
use nsq_gateway::config::Config;
use nsq_gateway::server::{self, Context};

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

/// Starts a gateway with `config` (its addresses are ignored: port 0 on
/// loopback is used).
pub async fn start_server(config: Config) -> TestServer {
    TestServer::start(config).await
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::try_start(config).await.expect("gateway starts")
    }

    /// Starts a gateway. A `data_path` left at the default `.` is replaced by
    /// a fresh temporary directory, so tests never share or leave state.
    pub async fn try_start(mut config: Config) -> anyhow::Result<TestServer> {
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

    pub fn broker(&self) -> &Broker {
        &self.ctx.broker
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
        let mut s = TcpStream::connect(self.tcp_addr).await.expect("connect");
        s.write_all(b"  V2").await.expect("magic");
        s
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

/// One V2 frame: `(frame type, data)`.
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    let size = s.read_u32().await?;
    assert!((4..=16 << 20).contains(&size), "frame size {size}");
    let kind = s.read_u32().await?;
    let mut data = vec![0u8; size as usize - 4];
    s.read_exact(&mut data).await?;
    Ok((kind, data))
}

/// Reads frames until one that is not a `_heartbeat_` response.
pub async fn read_frame_skip_heartbeats(s: &mut TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    loop {
        let f = read_frame(s).await?;
        if !(f.0 == 0 && f.1 == b"_heartbeat_") {
            return Ok(f);
        }
    }
}

/// Like `read_frame` with a deadline.
pub async fn read_frame_within(s: &mut TcpStream, d: Duration) -> (u32, Vec<u8>) {
    tokio::time::timeout(d, read_frame_skip_heartbeats(s))
        .await
        .expect("frame in time")
        .expect("frame")
}

/// `PUB <topic>\n[u32 len][body]`.
pub fn pub_cmd(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("PUB {topic}\n").into_bytes();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// `MPUB <topic>\n[u32 size][u32 count]([u32 len][body])*`.
pub fn mpub_cmd(topic: &str, bodies: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = 4 + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
    let mut v = format!("MPUB {topic}\n").into_bytes();
    v.extend_from_slice(&(size as u32).to_be_bytes());
    v.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
    for b in bodies {
        v.extend_from_slice(&(b.len() as u32).to_be_bytes());
        v.extend_from_slice(b);
    }
    v
}

/// A decoded message frame body.
pub struct Msg {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: [u8; 16],
    pub body: Vec<u8>,
}

/// Parses the data of a message frame (type 2).
pub fn parse_msg(data: &[u8]) -> Msg {
    assert!(data.len() >= 26, "message frame too short");
    Msg {
        timestamp: i64::from_be_bytes(data[0..8].try_into().expect("8 bytes")),
        attempts: u16::from_be_bytes(data[8..10].try_into().expect("2 bytes")),
        id: data[10..26].try_into().expect("16 bytes"),
        body: data[26..].to_vec(),
    }
}

/// Reads until the peer closes; returns what arrived. Panics after `d`.
pub async fn read_to_close(s: &mut TcpStream, d: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(d, s.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .ok();
    all
}

/// A fresh V2 publisher PUBs `body` to `topic` (answered `OK`), and a fresh
/// V2 consumer on channel `ch` receives it, each step within 10 s.
pub async fn v2_round_trip(addr: &str, topic: &str, body: &[u8]) {
    let within = Duration::from_secs(10);
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("  V2SUB {topic} ch\nRDY 1\n").as_bytes())
        .await
        .expect("sub");
    let mut p = TcpStream::connect(addr).await.expect("connect");
    p.write_all(b"  V2").await.expect("magic");
    p.write_all(&pub_cmd(topic, body)).await.expect("pub");
    let (_, data) = tokio::time::timeout(within, read_frame_skip_heartbeats(&mut p))
        .await
        .expect("PUB answered in time")
        .expect("frame");
    assert_eq!(data, b"OK");
    loop {
        let (ft, data) = tokio::time::timeout(within, read_frame_skip_heartbeats(&mut c))
            .await
            .expect("message in time")
            .expect("frame");
        if ft == 2 {
            assert_eq!(parse_msg(&data).body, body);
            return;
        }
    }
}
