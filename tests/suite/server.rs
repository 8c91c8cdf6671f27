//! Server-level tests against `app::run` on port 0 and against the real
//! binary: magic dispatch, E_BAD_PROTOCOL, short reads, stalled clients, the
//! connection limit, floods of bad connections, config errors, an address in
//! use, and graceful shutdown on SIGTERM.

use crate::common;

use std::io::Read;
use std::net::TcpListener as StdListener;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::binary::{BIN, Gateway, free_port, get_json};
use common::wait::eventually_blocking;
use common::{
    STEP, TestServer, eventually, pub_cmd, read_frame_within, read_to_close, test_config,
};

const BAD_PROTOCOL: &[u8] = b"\x00\x00\x00\x12\x00\x00\x00\x01E_BAD_PROTOCOL";

#[tokio::test]
async fn unknown_magic_gets_exact_bad_protocol_frame_and_close() {
    let srv = TestServer::start(test_config()).await;
    for magic in [&b"  V1"[..], b"GET ", b"\x00\x00\x00\x00", b"\xff\xfe\r\n"] {
        let mut s = TcpStream::connect(srv.tcp_addr).await.expect("connect");
        s.write_all(magic).await.expect("write");
        let got = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert_eq!(got, BAD_PROTOCOL, "magic {magic:?}");
    }
    assert_eq!(srv.ctx.stats.bad_protocol.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn v2_magic_is_served() {
    let srv = TestServer::start(test_config()).await;
    let mut s = srv.v2().await;
    s.write_all(b"NOP\n").await.expect("nop");
    s.write_all(&pub_cmd("t", b"hello")).await.expect("pub");
    let (kind, data) = read_frame_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
}

#[tokio::test]
async fn short_read_then_close_is_harmless() {
    let srv = TestServer::start(test_config()).await;
    for n in 0..4 {
        let mut s = TcpStream::connect(srv.tcp_addr).await.expect("connect");
        s.write_all(&b"  V2"[..n]).await.expect("write");
        drop(s);
    }
    eventually(STEP, "short reads counted", async || {
        (srv.ctx.stats.magic_failures.load(Ordering::Relaxed) >= 4).then_some(())
    })
    .await;
    let mut s = srv.v2().await;
    s.write_all(&pub_cmd("t", b"x")).await.expect("pub");
    assert_eq!(
        read_frame_within(&mut s, Duration::from_secs(5)).await.1,
        b"OK"
    );
}

#[tokio::test]
async fn client_stalled_before_magic_is_dropped_after_timeout() {
    let mut cfg = test_config();
    cfg.magic_timeout = Duration::from_millis(300);
    let srv = TestServer::start(cfg).await;
    let mut s = TcpStream::connect(srv.tcp_addr).await.expect("connect");
    s.write_all(b"  ").await.expect("write");
    let start = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_empty(), "a stalled client gets nothing but a close");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
}

#[tokio::test]
async fn floods_of_garbage_and_stalled_clients_do_not_delay_v2() {
    let srv = TestServer::start(test_config()).await;
    let addr = srv.tcp_addr;
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"  ").await.expect("write");
        stalled.push(s);
    }
    let garbage: Vec<_> = (0..1000u32)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let _ = s.write_all(&i.to_be_bytes()).await;
                let mut buf = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
                buf
            })
        })
        .collect();
    // While the flood is in progress, a V2 client is answered at once.
    let start = Instant::now();
    let mut s = srv.v2().await;
    s.write_all(&pub_cmd("t", b"x")).await.expect("pub");
    assert_eq!(
        read_frame_within(&mut s, Duration::from_secs(2)).await.1,
        b"OK"
    );
    let latency = start.elapsed();
    for g in garbage {
        let got = g.await.expect("task");
        // `  V2` as a big-endian u32 is 0x20205632, far above 1000, so no
        // garbage client can have hit the V2 magic.
        assert_eq!(got, BAD_PROTOCOL);
    }
    assert!(
        latency < Duration::from_secs(1),
        "V2 answer took {latency:?}"
    );
    assert_eq!(srv.ctx.stats.bad_protocol.load(Ordering::Relaxed), 1000);
    drop(stalled);
}

/// Active V2 sessions.
fn v2_active(srv: &TestServer) -> u64 {
    srv.ctx
        .stats
        .protocols()
        .iter()
        .find(|p| p.protocol == "V2")
        .map_or(0, |p| p.active)
}

#[tokio::test]
async fn connection_limit_holds_new_clients_until_a_slot_frees() {
    let mut cfg = test_config();
    cfg.max_connections = 2;
    let srv = TestServer::start(cfg).await;
    let a = srv.v2().await;
    let _b = srv.v2().await;
    // Both hold a slot once their sessions have started.
    eventually(STEP, "two V2 sessions", async || {
        (v2_active(&srv) == 2).then_some(())
    })
    .await;
    let mut c = srv.v2().await;
    c.write_all(&pub_cmd("t", b"x")).await.expect("pub");
    let early = tokio::time::timeout(Duration::from_millis(300), c.read_u32()).await;
    assert!(early.is_err(), "third client was served beyond the limit");
    drop(a);
    assert_eq!(
        read_frame_within(&mut c, Duration::from_secs(5)).await.1,
        b"OK"
    );
}

#[tokio::test]
async fn shutdown_ends_sessions_and_run_returns_within_deadline() {
    let mut cfg = test_config();
    cfg.shutdown_timeout = Duration::from_secs(3);
    let srv = TestServer::start(cfg).await;
    // Connections are accepted in order: once the subscriber is registered,
    // the stalled one (connected first) is waiting for its magic.
    let _stalled = TcpStream::connect(srv.tcp_addr).await.expect("connect");
    let mut v2 = srv.v2().await;
    v2.write_all(b"SUB t c\nRDY 1\n").await.expect("sub");
    eventually(STEP, "subscriber registered", async || {
        let stats = srv.broker().stats(Some("t"));
        (stats.first()?.channels.first()?.client_count == 1).then_some(())
    })
    .await;
    let addr = srv.tcp_addr;
    let start = Instant::now();
    srv.shutdown().await.expect("run returns Ok");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    // The session was closed and no new connection is served.
    let _ = read_to_close(&mut v2, Duration::from_secs(2)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

fn write_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with_contents(text)
}

/// A config file with only a fresh temporary `data_path`, so a gateway
/// started by a test never writes into the working directory.
fn empty_config() -> tempfile_path::TempPath {
    let dir = common::temp_data_dir();
    write_config(&format!("data_path: {:?}\n", dir.to_string_lossy()))
}

/// A minimal temporary file that removes itself.
mod tempfile_path {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn with_contents(text: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "nsq-gateway-test-{}-{}.yaml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).expect("write config");
            TempPath(p)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_work() {
    let (code, out, _) = run_bin(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out, _) = run_bin(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--tcp-address",
        "--http-address",
        "--mem-queue-size",
        "--max-rdy-count",
        "--msg-timeout",
        "--config",
    ] {
        assert!(out.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn unknown_config_key_stops_startup_naming_key_place_and_allowed() {
    let cfg = write_config("tcp_address: \"127.0.0.1:0\"\nmem_queue_sise: 10\n");
    let path = cfg.0.to_string_lossy().into_owned();
    let (code, _, err) = run_bin(&["--config", &path]);
    assert_ne!(code, 0);
    assert!(err.contains("mem_queue_sise"), "{err}");
    assert!(err.contains(&path), "names the file: {err}");
    assert!(err.contains("line 2"), "names the place: {err}");
    assert!(
        err.contains("mem_queue_size"),
        "lists what is allowed: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_values_stop_startup() {
    let cfg = write_config("msg_timeout: forever\n");
    let (code, _, err) = run_bin(&["--config", &cfg.0.to_string_lossy()]);
    assert_ne!(code, 0);
    assert!(err.contains("msg_timeout") && err.contains("60s"), "{err}");
    let (code, _, err) = run_bin(&[
        "--max-deflate-level",
        "42",
        "--config",
        &cfg.0.to_string_lossy(),
    ]);
    assert_ne!(code, 0, "{err}");
    let ok = empty_config();
    let (code, _, err) = run_bin(&[
        "--max-deflate-level",
        "42",
        "--config",
        &ok.0.to_string_lossy(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("max_deflate_level") && err.contains("between 1 and 9"),
        "{err}"
    );
    let (code, _, err) = run_bin(&["--config", "/nonexistent/gateway.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/gateway.yaml"), "{err}");
}

#[test]
fn address_in_use_is_one_line_and_nonzero() {
    let taken = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let http = format!("127.0.0.1:{}", free_port());
    let empty = empty_config();
    let (code, _, err) = run_bin(&[
        "--config",
        &empty.0.to_string_lossy(),
        "--tcp-address",
        &addr,
        "--http-address",
        &http,
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&addr) && err.to_lowercase().contains("in use"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The real binary with an empty config file on free loopback ports.
fn gateway(extra: &[&str]) -> Gateway {
    let config = empty_config();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Gateway::spawn(&config.0, &extra, None)
}

/// The `client_count` of `topic`'s channel `channel` in `/stats`.
fn client_count(gw: &Gateway, topic: &str, channel: &str) -> Option<u64> {
    let stats = get_json(&gw.http, "/stats?format=json")?;
    let topic = stats["topics"]
        .as_array()?
        .iter()
        .find(|t| t["topic_name"] == topic)?;
    let channel = topic["channels"]
        .as_array()?
        .iter()
        .find(|c| c["channel_name"] == channel)?;
    channel["client_count"].as_u64()
}

#[test]
fn sigterm_with_clients_connected_exits_zero_within_deadline() {
    use std::io::Write;
    let gw = gateway(&["--shutdown-timeout", "3s"]);
    // Connections are accepted in order: once the subscriber is registered,
    // the stalled one (connected first) is waiting for its magic.
    let _stalled = gw.connect();
    let mut subscriber = gw.connect();
    subscriber
        .write_all(b"  V2SUB t c\nRDY 5\n")
        .expect("write");
    eventually_blocking(STEP, "subscriber registered", || {
        (client_count(&gw, "t", "c")? == 1).then_some(())
    });
    let (status, err, took) = gw.terminate();
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn json_logs_carry_the_peer_of_each_connection() {
    use std::io::Write;
    let gw = gateway(&["--log-format", "json"]);
    let mut s = gw.connect();
    let peer = s.local_addr().expect("local addr").to_string();
    s.write_all(b"JUNK").expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert_eq!(buf, BAD_PROTOCOL);
    let (status, text, _) = gw.terminate();
    assert!(status.success());
    let mut saw_bad_magic = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "bad protocol magic" {
            assert_eq!(v["magic"], "JUNK", "{line}");
            assert_eq!(v["span"]["peer"], peer.as_str(), "{line}");
            saw_bad_magic = true;
        }
    }
    assert!(saw_bad_magic, "no bad-magic log line in: {text}");
}

#[test]
fn put_config_log_level_changes_the_live_level() {
    use std::io::Write;
    let gw = gateway(&["--log-level", "info"]);
    // The first client is fully served (its PUB answered) before the switch,
    // so its connection-start debug line, if any, would already be written.
    let mut first = gw.connect();
    first
        .write_all(b"  V2PUB t\n\x00\x00\x00\x01x")
        .expect("pub");
    let mut ok = [0u8; 10];
    first.read_exact(&mut ok).expect("OK frame");
    assert_eq!(&ok[8..], b"OK");
    let mut h = std::net::TcpStream::connect(&gw.http).expect("http");
    h.write_all(b"PUT /config/log_level HTTP/1.0\r\nContent-Length: 5\r\n\r\ndebug")
        .expect("put");
    let mut resp = String::new();
    let _ = h.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    let mut second = gw.connect();
    second
        .write_all(b"  V2PUB t\n\x00\x00\x00\x01x")
        .expect("pub");
    second.read_exact(&mut ok).expect("OK frame");
    let (_, text, _) = gw.terminate();
    let new_client_lines = text
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("TCP: accepted"))
        .count();
    assert_eq!(
        new_client_lines, 1,
        "debug lines only after the switch:\n{text}"
    );
}
