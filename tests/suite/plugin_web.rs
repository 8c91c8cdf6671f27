//! The WEB plugin (plugins/web) against the in-process gateway, configured
//! from the `web` entry of the default gateway.yaml: raw HTTP for the status
//! codes, the slow-loris timeout and SSE (events in order, no consumer left
//! behind), the `websockets` library for the WebSocket vocabulary and its
//! close codes, pynsq both ways, headless Chromium on the console page
//! (`tests/clients/web_scenarios.py`), 1,000 idle WebSockets, and `GET ` on
//! the TCP port beside V2, LINE, STOMP and RESP.

use crate::common;

use std::time::{Duration, Instant};

use common::clients::{self, describe, expect_success, unique_topic};
use common::plugins::shipped_plugin;
use common::v2::V2Client;
use common::{STEP, TestServer, eventually};
use nsq_gateway::plugin::PluginConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hard limit on one client process.
const HARD_TIMEOUT: Duration = Duration::from_secs(90);

/// The shipped `web` entry with `config:` overrides.
fn web_plugin(overrides: &[(&str, &str)]) -> PluginConfig {
    let mut p = shipped_plugin("web");
    for (k, v) in overrides {
        p.config.insert((*k).to_string(), (*v).to_string());
    }
    p
}

async fn server(overrides: &[(&str, &str)]) -> TestServer {
    TestServer::builder()
        .plugin(web_plugin(overrides))
        .start()
        .await
}

/// Sends `request` and reads until the server closes; the whole response.
async fn http(server: &TestServer, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.tcp_addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
}

async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(STEP, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "no close within {STEP:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads until `needle` has arrived; everything read.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        let n = tokio::time::timeout(STEP, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!("{needle:?} in time; got {:?}", String::from_utf8_lossy(buf))
            })
            .expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn page_and_error_statuses() {
    let server = server(&[]).await;
    let page = http(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<title>nsq-gateway console</title>"));
    for (request, status) in [
        (&b"GET /nope HTTP/1.1\r\n\r\n"[..], "404 Not Found"),
        (
            b"POST /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "405 Method Not Allowed",
        ),
        (b"HEAD / HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
        (b"GET / HTTP/1.1 junk\r\n\r\n", "400 Bad Request"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request"),
        (b"GET /sse HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (
            b"GET /sse?topic=bad%20name HTTP/1.1\r\n\r\n",
            "400 Bad Request",
        ),
    ] {
        let r = http(&server, request).await;
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{}: {r}",
            String::from_utf8_lossy(request)
        );
        assert!(r.contains("Content-Type: text/plain"), "{r}");
    }
    // Headers past 8 KiB: 400 and a close, without waiting for the blank line.
    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n", 300).flatten());
    let r = http(&server, &big).await;
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    // A page on another site may not open a WebSocket here.
    let foreign = UPGRADE.replace("\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n");
    let r = http(&server, foreign.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn slow_loris_is_dropped_at_the_header_timeout() {
    let server = server(&[("header_timeout_ms", "400")]).await;
    let mut s = TcpStream::connect(server.tcp_addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    // One header byte every 50 ms: never a whole head.
    let mut closed_after = None;
    for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
    {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            let got = String::from_utf8_lossy(&buf[..r.unwrap_or(0)]).into_owned();
            assert!(
                got.is_empty() || got.starts_with("HTTP/1.1 408 Request Timeout"),
                "{got}"
            );
            closed_after = Some(start.elapsed());
            break;
        }
        assert!(start.elapsed() < STEP, "never dropped");
    }
    let after = closed_after.expect("dropped");
    println!("slow-loris dropped after {after:?} (header_timeout_ms 400)");
    assert!(after >= Duration::from_millis(390), "{after:?}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn websocket_with_the_websockets_library() {
    let server = server(&[("max_frame_bytes", "65536")]).await;
    let out = clients::run_python(
        "web_scenarios.py",
        vec![
            "ws".into(),
            "--addr".into(),
            server.tcp_addr.to_string(),
            "--topic".into(),
            unique_topic("web_ws"),
            "--max-frame".into(),
            "65536".into(),
        ],
        HARD_TIMEOUT,
    )
    .await;
    let v = expect_success(&out);
    println!("websockets: {v}");
    assert_eq!(v["oversized_close"], 1009);
    assert_eq!(v["close"][0], 1000);
    assert_eq!(v["manual_attempts"], serde_json::json!([1, 2]));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn sse_events_in_order_and_no_consumer_left_behind() {
    let server = server(&[]).await;
    let topic = unique_topic("web_sse");
    for channel in ["named", ""] {
        let mut s = TcpStream::connect(server.tcp_addr).await.expect("connect");
        let query = if channel.is_empty() {
            format!("topic={topic}")
        } else {
            format!("topic={topic}&channel={channel}")
        };
        s.write_all(format!("GET /sse?{query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, ": keep-alive\n\n").await;
        let head = String::from_utf8_lossy(&buf).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"),
            "{head}"
        );
        buf.clear();
        let mut v2 = V2Client::connect(server.tcp_addr).await;
        for i in 0..20 {
            v2.publish(&topic, format!("event {i}\nline two").as_bytes())
                .await;
        }
        read_until(&mut s, &mut buf, "data: event 19\ndata: line two\n\n").await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 20, "{text}");
        for (i, e) in events.iter().enumerate() {
            let lines: Vec<&str> = e.lines().collect();
            assert!(lines[0].starts_with("id: ") && lines[0].len() == 20, "{e}");
            assert_eq!(
                &lines[1..],
                [format!("data: event {i}"), "data: line two".into()]
            );
        }
        let channels = server.broker().stats(Some(&topic))[0].channels.clone();
        let ch = channels
            .iter()
            .find(|c| {
                if channel.is_empty() {
                    c.channel_name.ends_with("#ephemeral")
                } else {
                    c.channel_name == channel
                }
            })
            .expect("the stream's channel");
        assert_eq!(ch.client_count, 1);
        let name = ch.channel_name.clone();
        drop(s);
        eventually(STEP, "the stream's consumer to leave", async || {
            let stats = server.broker().stats(Some(&topic));
            let c = stats[0].channels.iter().find(|c| c.channel_name == name);
            match c {
                None => Some(()),
                Some(c) if c.client_count == 0 && c.in_flight_count == 0 => Some(()),
                Some(_) => None,
            }
        })
        .await;
        let gone = server.broker().stats(Some(&topic))[0]
            .channels
            .iter()
            .all(|c| c.channel_name != name);
        assert_eq!(
            gone,
            channel.is_empty(),
            "an ephemeral channel goes with its consumer"
        );
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pynsq_to_websocket_and_back() {
    let server = server(&[]).await;
    let out = clients::run_python(
        "web_scenarios.py",
        vec![
            "cross".into(),
            "--addr".into(),
            server.tcp_addr.to_string(),
            "--topic".into(),
            unique_topic("web_cross"),
        ],
        HARD_TIMEOUT,
    )
    .await;
    let v = expect_success(&out);
    println!("cross: {v}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn console_in_headless_chromium() {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
    }
    let server = server(&[]).await;
    let shot = clients::repo_root().join("target").join("web-console.png");
    let out = clients::run_python(
        "web_scenarios.py",
        vec![
            "browser".into(),
            "--addr".into(),
            server.tcp_addr.to_string(),
            "--topic".into(),
            unique_topic("web_page"),
            "--count".into(),
            "100".into(),
            "--screenshot".into(),
            shot.display().to_string(),
        ],
        HARD_TIMEOUT,
    )
    .await;
    let v = expect_success(&out);
    println!("browser: {v}");
    assert!(
        v["first_within_s"].as_f64().expect("first") < 1.0,
        "{}",
        describe(&out)
    );
    assert_eq!(
        v["console_errors"],
        serde_json::json!([]),
        "the page logged errors"
    );
    assert!(shot.exists());
    server.shutdown().await.expect("shutdown");
}

/// The upgrade on a fresh connection, answered 101.
async fn open_idle_socket(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(UPGRADE.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, "\r\n\r\n").await;
    assert!(
        buf.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_websockets_and_the_other_protocols() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
    let mut web = web_plugin(&[]);
    web.limits.max_connections = 1100;
    let server = TestServer::builder()
        .plugins([
            web,
            shipped_plugin("line"),
            shipped_plugin("stomp"),
            shipped_plugin("resp"),
        ])
        .start()
        .await;
    let before = rss_kib();
    let mut sockets = Vec::with_capacity(1000);
    for _ in 0..1000 {
        sockets.push(open_idle_socket(server.tcp_addr).await);
    }
    let after = rss_kib();
    println!(
        "1,000 idle WebSockets: test process RSS +{} KiB ({:.1} KiB each, client and server side)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / 1000.0
    );
    // Each still answers: a masked ping on the first and the last.
    for i in [0, 999] {
        let s = &mut sockets[i];
        s.write_all(&[0x89, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
            .await
            .expect("ping");
        let mut pong = [0u8; 4];
        tokio::time::timeout(STEP, s.read_exact(&mut pong))
            .await
            .expect("pong in time")
            .expect("pong");
        assert_eq!(pong, [0x8a, 2, b'h', b'i']);
    }
    // GET is served by the plugin while every other protocol is unaffected.
    let topic = unique_topic("web_mix");
    common::v2_round_trip(&server.tcp_addr.to_string(), &topic, b"v2 ok").await;
    let mut line = common::plugins::LineClient::line(server.tcp_addr).await;
    assert_eq!(line.request(&format!("PUB {topic} from-line")).await, "OK");
    let stomp = http(
        &server,
        b"CONNECT\naccept-version:1.2\nhost:x\n\n\0DISCONNECT\nreceipt:1\n\n\0",
    )
    .await;
    assert!(stomp.starts_with("CONNECTED\n"), "{stomp}");
    let mut resp = TcpStream::connect(server.tcp_addr).await.expect("connect");
    resp.write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .expect("write");
    let mut pong = [0u8; 7];
    resp.read_exact(&mut pong).await.expect("PONG");
    assert_eq!(&pong, b"+PONG\r\n");
    let page = http(&server, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"));
    drop(sockets);
    server.shutdown().await.expect("shutdown");
}
