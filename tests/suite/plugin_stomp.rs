//! The STOMP plugin (plugins/stomp) over raw sockets against the in-process
//! gateway: CONNECT negotiation, SEND/SUBSCRIBE/MESSAGE with NUL-carrying
//! bodies across V2 and STOMP, cumulative and individual ACK, NACK
//! redelivery, transactions, receipts, heart-beats both ways, and every kind
//! of bad input ending in an ERROR frame and a close while the gateway keeps
//! serving others. Real-client tests (stomp.py) are in plugin_stomp_clients.rs.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::plugins::component;
use common::v2::V2Client;
use common::{STEP, TestServer, eventually};
use nsq_gateway::config::Config;
use nsq_gateway::plugin::{PluginConfig, PluginLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `stomp` entry of the repository's gateway.yaml (so the shipped
/// settings are what is tested), with `config` entries overriding it and a
/// connection cap small enough for a test process.
fn stomp_plugin(config: &[(&str, &str)]) -> PluginConfig {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("gateway.yaml")).expect("gateway.yaml");
    let parsed = Config::from_yaml(&text, "gateway.yaml").expect("gateway.yaml parses");
    let mut p = parsed
        .plugins
        .into_iter()
        .find(|p| p.name == "stomp")
        .expect("gateway.yaml has a `stomp` plugin");
    assert_eq!(p.magics, ["CONN", "STOM"]);
    p.component = component("stomp");
    p.limits = PluginLimits {
        max_connections: 64,
        ..p.limits
    };
    for (k, v) in config {
        p.config.insert(k.to_string(), v.to_string());
    }
    p
}

async fn server(config: &[(&str, &str)]) -> TestServer {
    TestServer::builder()
        .plugin(stomp_plugin(config))
        .start()
        .await
}

/// A received server frame.
#[derive(Debug)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds a client frame (headers unescaped, as written).
fn frame(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{command}\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}:{v}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
    out
}

/// A raw STOMP client.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Heart-beat EOLs seen between frames.
    eols: usize,
}

impl Client {
    async fn raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
            eols: 0,
        }
    }

    /// Connects with STOMP 1.2 and `extra` CONNECT headers; returns CONNECTED.
    async fn connect(addr: SocketAddr, extra: &[(&str, &str)]) -> (Client, Frame) {
        let mut c = Client::raw(addr).await;
        let mut headers = vec![("accept-version", "1.2"), ("host", "/")];
        headers.extend_from_slice(extra);
        c.send(&frame("CONNECT", &headers, b"")).await;
        let f = c.frame().await;
        assert_eq!(f.command, "CONNECTED", "{f:?}");
        (c, f)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Parses one frame from `buf` if complete.
    fn parse(&mut self) -> Option<Frame> {
        loop {
            match self.buf.first() {
                Some(b'\n') => {
                    self.buf.remove(0);
                    self.eols += 1;
                }
                Some(b'\r') if self.buf.get(1) == Some(&b'\n') => {
                    self.buf.drain(..2);
                    self.eols += 1;
                }
                _ => break,
            }
        }
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("utf-8 head");
        let mut lines = head.lines();
        let command = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header colon");
                let v = v
                    .replace("\\n", "\n")
                    .replace("\\c", ":")
                    .replace("\\r", "\r")
                    .replace("\\\\", "\\");
                (k.to_string(), v)
            })
            .collect();
        let start = end + 2;
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse::<usize>().expect("content-length"));
        let body_end = match len {
            Some(n) => {
                if self.buf.len() < start + n + 1 {
                    return None;
                }
                assert_eq!(self.buf[start + n], 0, "NUL after body");
                start + n
            }
            None => start + self.buf[start..].iter().position(|&b| b == 0)?,
        };
        let body = self.buf[start..body_end].to_vec();
        self.buf.drain(..=body_end);
        Some(Frame {
            command,
            headers,
            body,
        })
    }

    /// The next frame (heart-beats skipped); panics after STEP.
    async fn frame(&mut self) -> Frame {
        tokio::time::timeout(STEP, self.try_frame())
            .await
            .expect("frame in time")
            .expect("frame before close")
    }

    /// The next frame, or None at EOF.
    async fn try_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.parse() {
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Expects an ERROR whose `message` contains `want`, then a close.
    async fn expect_error(&mut self, want: &str) -> Frame {
        let f = self.frame().await;
        assert_eq!(f.command, "ERROR", "{f:?}");
        let msg = f.header("message").unwrap_or_default();
        assert!(
            msg.contains(want),
            "ERROR message {msg:?} does not contain {want:?}; body {:?}",
            String::from_utf8_lossy(&f.body)
        );
        self.expect_closed().await;
        f
    }

    async fn expect_closed(&mut self) {
        let closed = tokio::time::timeout(STEP, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "server did not close the connection");
    }

    /// Sends `f` with `receipt:<id>` added and waits for its RECEIPT.
    async fn request(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8], id: &str) {
        let mut h = headers.to_vec();
        h.push(("receipt", id));
        self.send(&frame(command, &h, body)).await;
        let f = self.frame().await;
        assert_eq!(f.command, "RECEIPT", "{f:?}");
        assert_eq!(f.header("receipt-id"), Some(id));
    }
}

/// Waits until the channel's stats satisfy `pred`.
async fn wait_channel(
    server: &TestServer,
    topic: &str,
    channel: &str,
    what: &str,
    pred: impl Fn(&nsq_gateway::broker::ChannelStats) -> bool,
) {
    eventually(STEP, what, async || {
        let stats = server.broker().stats(Some(topic));
        let ch = stats
            .iter()
            .flat_map(|t| t.channels.iter())
            .find(|c| c.channel_name == channel)?;
        pred(ch).then_some(())
    })
    .await;
}

#[tokio::test]
async fn connect_negotiates_version_and_heart_beats() {
    let server = server(&[]).await;
    let (_c, f) = Client::connect(server.tcp_addr, &[("heart-beat", "0,0")]).await;
    assert_eq!(f.header("version"), Some("1.2"));
    assert_eq!(f.header("heart-beat"), Some("10000,10000"));
    assert!(
        f.header("server")
            .is_some_and(|s| s.starts_with("nsq-gateway"))
    );
    // STOMP command (magic STOM) and a 1.1-only client.
    let mut c = Client::raw(server.tcp_addr).await;
    c.send(&frame("STOMP", &[("accept-version", "1.0,1.1")], b""))
        .await;
    let f = c.frame().await;
    assert_eq!(f.command, "CONNECTED");
    assert_eq!(f.header("version"), Some("1.1"));
    // A 1.0 client is refused with the versions we speak.
    let mut c = Client::raw(server.tcp_addr).await;
    c.send(&frame("CONNECT", &[], b"")).await;
    let f = c.expect_error("unsupported protocol version").await;
    assert_eq!(f.header("version"), Some("1.1,1.2"));
}

#[tokio::test]
async fn send_and_subscribe_with_nul_bodies_across_v2_and_stomp() {
    let server = server(&[]).await;
    let body = b"a\0b\0\nc:d".to_vec();
    // STOMP -> V2
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.subscribe("s2v", "c").await;
    v2.ready(10).await;
    let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
    let len = body.len().to_string();
    c.request(
        "SEND",
        &[("destination", "/queue/s2v"), ("content-length", &len)],
        &body,
        "r1",
    )
    .await;
    c.request("SEND", &[("destination", "/topic/s2v")], b"plain", "r2")
        .await;
    let (id, attempts, got) = v2.message().await;
    assert_eq!((attempts, got), (1, body.clone()));
    v2.finish(&id).await;
    let (_, _, got) = v2.message().await;
    assert_eq!(got, b"plain");
    // V2 -> STOMP
    c.request(
        "SUBSCRIBE",
        &[("id", "sub-1"), ("destination", "/queue/v2s")],
        b"",
        "r3",
    )
    .await;
    v2.publish("v2s", &body).await;
    let f = c.frame().await;
    assert_eq!(f.command, "MESSAGE");
    assert_eq!(f.body, body);
    assert_eq!(f.header("subscription"), Some("sub-1"));
    assert_eq!(f.header("destination"), Some("/queue/v2s"));
    assert_eq!(f.header("message-id").map(str::len), Some(16));
    assert_eq!(f.header("ack"), None, "auto mode has no ack header");
    // Auto ack: the message is finished without an ACK.
    wait_channel(&server, "v2s", "stomp", "auto ack finishes", |ch| {
        ch.in_flight_count == 0 && ch.depth == 0 && ch.message_count == 1
    })
    .await;
}

#[tokio::test]
async fn client_ack_is_cumulative_and_client_individual_is_not() {
    let server = server(&[]).await;
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    for i in 0..5 {
        v2.publish("cum", format!("m{i}").as_bytes()).await;
        v2.publish("ind", format!("m{i}").as_bytes()).await;
    }
    let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
    c.request(
        "SUBSCRIBE",
        &[
            ("id", "a"),
            ("destination", "/queue/cum"),
            ("ack", "client"),
            ("channel", "cc"),
        ],
        b"",
        "s1",
    )
    .await;
    let mut acks = Vec::new();
    for i in 0..5 {
        let f = c.frame().await;
        assert_eq!(f.body, format!("m{i}").as_bytes());
        acks.push(f.header("ack").expect("ack header").to_string());
    }
    wait_channel(&server, "cum", "cc", "5 in flight", |ch| {
        ch.in_flight_count == 5
    })
    .await;
    c.request("ACK", &[("id", &acks[2])], b"", "a2").await;
    wait_channel(&server, "cum", "cc", "ACK of the 3rd covers 1-3", |ch| {
        ch.in_flight_count == 2
    })
    .await;
    c.request("ACK", &[("id", &acks[4])], b"", "a4").await;
    wait_channel(&server, "cum", "cc", "all acked", |ch| {
        ch.in_flight_count == 0 && ch.depth == 0
    })
    .await;

    c.request(
        "SUBSCRIBE",
        &[
            ("id", "b"),
            ("destination", "/queue/ind"),
            ("ack", "client-individual"),
            ("prefetch-count", "5"),
        ],
        b"",
        "s2",
    )
    .await;
    let mut acks = Vec::new();
    for _ in 0..5 {
        let f = c.frame().await;
        acks.push(f.header("ack").expect("ack header").to_string());
    }
    c.request("ACK", &[("id", &acks[3])], b"", "b3").await;
    wait_channel(&server, "ind", "stomp", "only one acked", |ch| {
        ch.in_flight_count == 4
    })
    .await;
}

#[tokio::test]
async fn nack_redelivers_and_unsubscribe_requeues() {
    let server = server(&[]).await;
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.publish("nack", b"again").await;
    let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
    c.send(&frame(
        "SUBSCRIBE",
        &[
            ("id", "n"),
            ("destination", "/queue/nack"),
            ("ack", "client-individual"),
        ],
        b"",
    ))
    .await;
    let f = c.frame().await;
    assert_eq!(f.header("redelivered"), None);
    assert_eq!(f.header("nsq-attempts"), Some("1"));
    let ack = f.header("ack").expect("ack").to_string();
    c.send(&frame("NACK", &[("id", &ack)], b"")).await;
    let f = c.frame().await;
    assert_eq!(f.body, b"again");
    assert_eq!(f.header("redelivered"), Some("true"));
    assert_eq!(f.header("nsq-attempts"), Some("2"));
    // Leaving it unacknowledged and unsubscribing puts it back.
    c.request("UNSUBSCRIBE", &[("id", "n")], b"", "u").await;
    wait_channel(&server, "nack", "stomp", "requeued on UNSUBSCRIBE", |ch| {
        ch.in_flight_count == 0 && ch.depth == 1
    })
    .await;
}

#[tokio::test]
async fn topic_destinations_fan_out_on_ephemeral_channels() {
    let server = server(&[]).await;
    let (mut a, _) = Client::connect(server.tcp_addr, &[]).await;
    let (mut b, _) = Client::connect(server.tcp_addr, &[]).await;
    for (c, id) in [(&mut a, "x"), (&mut b, "y")] {
        c.request(
            "SUBSCRIBE",
            &[("id", id), ("destination", "/topic/fan")],
            b"",
            "s",
        )
        .await;
    }
    let channels: Vec<String> = server.broker().stats(Some("fan"))[0]
        .channels
        .iter()
        .map(|c| c.channel_name.clone())
        .collect();
    assert_eq!(channels.len(), 2, "{channels:?}");
    assert!(channels.iter().all(|c| c.ends_with("#ephemeral")));
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.publish("fan", b"to all").await;
    assert_eq!(a.frame().await.body, b"to all");
    assert_eq!(b.frame().await.body, b"to all");
    // Queue destinations share one channel: each message goes to one of them.
    for (c, id) in [(&mut a, "qa"), (&mut b, "qb")] {
        c.request(
            "SUBSCRIBE",
            &[("id", id), ("destination", "/queue/shared")],
            b"",
            "q",
        )
        .await;
    }
    for i in 0..4 {
        v2.publish("shared", format!("{i}").as_bytes()).await;
    }
    wait_channel(&server, "shared", "stomp", "4 delivered once", |ch| {
        ch.message_count == 4 && ch.depth == 0 && ch.in_flight_count == 0
    })
    .await;
    // Ephemeral channels go away with their subscribers.
    // MESSAGE frames of /queue/shared may still precede the RECEIPT.
    a.send(&frame("DISCONNECT", &[("receipt", "bye")], b""))
        .await;
    loop {
        let f = a.frame().await;
        if f.command == "RECEIPT" {
            assert_eq!(f.header("receipt-id"), Some("bye"));
            break;
        }
        assert_eq!(f.command, "MESSAGE", "{f:?}");
    }
    a.expect_closed().await;
    drop(b);
    eventually(STEP, "ephemeral channels gone", async || {
        server.broker().stats(Some("fan"))[0]
            .channels
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn transactions_commit_and_abort() {
    let server = server(&[]).await;
    let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
    c.request("BEGIN", &[("transaction", "t1")], b"", "b1")
        .await;
    c.request(
        "SEND",
        &[("destination", "/queue/tx"), ("transaction", "t1")],
        b"dropped",
        "s1",
    )
    .await;
    c.request("ABORT", &[("transaction", "t1")], b"", "a1")
        .await;
    c.request("BEGIN", &[("transaction", "t2")], b"", "b2")
        .await;
    for body in ["one", "two"] {
        c.request(
            "SEND",
            &[("destination", "/queue/tx"), ("transaction", "t2")],
            body.as_bytes(),
            "s",
        )
        .await;
    }
    assert!(server.broker().existing_topic("tx").is_none());
    c.request("COMMIT", &[("transaction", "t2")], b"", "c2")
        .await;
    let stats = server.broker().stats(Some("tx"));
    assert_eq!(stats[0].message_count, 2, "{stats:?}");
    c.send(&frame("COMMIT", &[("transaction", "t2")], b""))
        .await;
    c.expect_error("unknown transaction").await;
}

#[tokio::test]
async fn byte_by_byte_input_behaves_like_one_write() {
    let server = server(&[]).await;
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.subscribe("bytes", "c").await;
    v2.ready(10).await;
    let mut session = frame("STOMP", &[("accept-version", "1.2")], b"");
    session.extend_from_slice(b"\n\r\n");
    session.extend(frame(
        "SEND",
        &[
            ("destination", "/queue/bytes"),
            ("content-length", "3"),
            ("receipt", "r\\c1"),
        ],
        b"x\0y",
    ));
    session.extend(frame("DISCONNECT", &[("receipt", "bye")], b""));
    let mut c = Client::raw(server.tcp_addr).await;
    for b in &session {
        c.send(std::slice::from_ref(b)).await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert_eq!(c.frame().await.command, "CONNECTED");
    let r = c.frame().await;
    assert_eq!(
        (r.command.as_str(), r.header("receipt-id")),
        ("RECEIPT", Some("r:1"))
    );
    let r = c.frame().await;
    assert_eq!(r.header("receipt-id"), Some("bye"));
    c.expect_closed().await;
    let (_, _, body) = v2.message().await;
    assert_eq!(body, b"x\0y");
}

#[tokio::test]
async fn heart_beats_both_ways_and_silent_clients_are_dropped() {
    let server = server(&[("heart_beat", "100,100"), ("heart_beat_grace", "2")]).await;
    // A client that beats every 50 ms stays; the server beats it every 100 ms.
    let (mut alive, f) = Client::connect(server.tcp_addr, &[("heart-beat", "50,100")]).await;
    assert_eq!(f.header("heart-beat"), Some("100,100"));
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        alive.send(b"\n").await;
        let mut chunk = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), alive.stream.read(&mut chunk)).await
        {
            assert!(n > 0, "closed while beating");
            assert!(chunk[..n].iter().all(|&b| b == b'\n'), "only heart-beats");
            alive.eols += n;
        }
    }
    assert!(alive.eols >= 4, "server heart-beats: {}", alive.eols);
    // Still served after 800 ms of heart-beats only.
    alive
        .request("SEND", &[("destination", "/queue/hb")], b"x", "r")
        .await;
    // A client that promised 100 ms and goes silent is dropped after ~200 ms.
    let (mut silent, _) = Client::connect(server.tcp_addr, &[("heart-beat", "100,0")]).await;
    let t = tokio::time::Instant::now();
    silent.expect_error("heart-beat timeout").await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A client that asks for no heart-beats gets none.
    let (mut quiet, f) = Client::connect(server.tcp_addr, &[]).await;
    assert_eq!(f.header("heart-beat"), Some("100,100"));
    let mut chunk = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_millis(400), quiet.stream.read(&mut chunk)).await;
    assert!(r.is_err(), "unexpected bytes: {r:?}");
}

#[tokio::test]
async fn connect_timeout_closes_half_open_clients() {
    let server = server(&[("connect_timeout_ms", "200")]).await;
    let mut c = Client::raw(server.tcp_addr).await;
    c.send(b"CONNECT\naccept-version:1.2\n").await;
    c.expect_error("connect timeout").await;
}

/// Each bad input gets an ERROR naming the problem and a close; the gateway
/// keeps serving a client connected before and one connecting after.
#[tokio::test]
async fn bad_input_gets_an_error_and_a_close() {
    let server = server(&[
        ("max_frame_bytes", "1024"),
        ("max_headers", "8"),
        ("max_header_bytes", "256"),
        ("max_subscriptions", "2"),
    ])
    .await;
    let (mut bystander, _) = Client::connect(server.tcp_addr, &[]).await;
    let long = "v".repeat(300);
    let big = vec![b'x'; 2000];
    let many: Vec<(String, String)> = (0..10).map(|i| (format!("h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sub =
        |id: &'static str| frame("SUBSCRIBE", &[("id", id), ("destination", "/queue/q")], b"");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage command",
            b"\x01\x02\x03garbage\n\n\0".to_vec(),
            "unknown command",
        ),
        (
            "oversized frame",
            frame("SEND", &[("destination", "/queue/q")], &big),
            "frame larger than 1024",
        ),
        (
            "oversized content-length",
            frame(
                "SEND",
                &[("destination", "/queue/q"), ("content-length", "5000")],
                b"",
            ),
            "frame larger than 1024",
        ),
        (
            "too many headers",
            frame("SEND", &many, b"x"),
            "more than 8 headers",
        ),
        (
            "long header",
            frame("SEND", &[("destination", &long)], b"x"),
            "header line longer than 256",
        ),
        (
            "bad escape",
            frame("SEND", &[("destination", "/queue/a\\tb")], b"x"),
            "undefined escape",
        ),
        (
            "no colon",
            b"SEND\nnocolon\n\nx\0".to_vec(),
            "malformed header",
        ),
        (
            "content-length mismatch",
            b"SEND\ncontent-length:1\n\nxy\0".to_vec(),
            "not followed by a NUL",
        ),
        (
            "unknown destination",
            frame("SEND", &[("destination", "/exchange/x")], b"x"),
            "unknown destination",
        ),
        (
            "missing destination",
            frame("SEND", &[], b"x"),
            "missing destination",
        ),
        (
            "invalid topic",
            frame("SEND", &[("destination", "/queue/bad topic!")], b"x"),
            "publish to bad topic! failed",
        ),
        (
            "empty body",
            frame("SEND", &[("destination", "/queue/q")], b""),
            "empty message",
        ),
        (
            "bad ack mode",
            frame(
                "SUBSCRIBE",
                &[("id", "1"), ("destination", "/queue/q"), ("ack", "nope")],
                b"",
            ),
            "invalid ack mode",
        ),
        (
            "missing id",
            frame("SUBSCRIBE", &[("destination", "/queue/q")], b""),
            "missing id",
        ),
        (
            "duplicate id",
            [sub("1"), sub("1")].concat(),
            "duplicate subscription id",
        ),
        (
            "subscription limit",
            [sub("1"), sub("2"), sub("3")].concat(),
            "too many subscriptions",
        ),
        (
            "unknown unsubscribe",
            frame("UNSUBSCRIBE", &[("id", "zz")], b""),
            "unknown subscription",
        ),
        (
            "unknown ack",
            frame("ACK", &[("id", "9.0123456789abcdef")], b""),
            "unknown message",
        ),
        (
            "second CONNECT",
            frame("CONNECT", &[("accept-version", "1.2")], b""),
            "already connected",
        ),
    ];
    for (what, input, want) in cases {
        let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
        c.send(&input).await;
        let f = c.frame().await;
        assert_eq!(f.command, "ERROR", "{what}: {f:?}");
        let msg = f.header("message").unwrap_or_default().to_string();
        assert!(msg.contains(want), "{what}: {msg:?} lacks {want:?}");
        c.expect_closed().await;
    }
    // Before CONNECT, anything else is refused.
    let mut c = Client::raw(server.tcp_addr).await;
    c.send(b"STOMPX\n\n\0").await;
    c.expect_error("unknown command").await;
    let mut c = Client::raw(server.tcp_addr).await;
    c.send(&frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("heart-beat", "x")],
        b"",
    ))
    .await;
    c.expect_error("invalid heart-beat").await;
    // The receipt of the offending frame is echoed in the ERROR.
    let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
    c.send(&frame(
        "SEND",
        &[("destination", "/nope"), ("receipt", "77")],
        b"x",
    ))
    .await;
    let f = c.expect_error("unknown destination").await;
    assert_eq!(f.header("receipt-id"), Some("77"));
    // The gateway still serves the bystander and new clients.
    bystander
        .request("SEND", &[("destination", "/queue/still")], b"ok", "r")
        .await;
    let (mut late, _) = Client::connect(server.tcp_addr, &[]).await;
    late.request("SEND", &[("destination", "/queue/still")], b"ok", "r")
        .await;
    let stats = server.plugin("stomp").stats();
    assert_eq!((stats.traps, stats.limit_hits), (0, 0), "{stats:?}");
}

/// Bad input trickled one byte per write gets the same ERROR as in one write.
/// Each input ends exactly where the error becomes certain, so the server
/// never closes with unread bytes (which would reset the connection).
#[tokio::test]
async fn bad_input_byte_by_byte_gets_the_same_error() {
    let server = server(&[("max_header_bytes", "64")]).await;
    // 66 bytes of one header line without its newline: over 64 (+ a CR).
    let long = format!("SEND\ndestination:{}", "v".repeat(54)).into_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (long, "header line longer than 64"),
        (b"SEND\nx:a\\qb\n\n".to_vec(), "undefined escape"),
        (
            frame("SEND", &[("destination", "/elsewhere")], b"x"),
            "unknown destination",
        ),
    ];
    for (input, want) in cases {
        let (mut c, _) = Client::connect(server.tcp_addr, &[]).await;
        for b in &input {
            c.send(std::slice::from_ref(b)).await;
        }
        c.expect_error(want).await;
    }
}
