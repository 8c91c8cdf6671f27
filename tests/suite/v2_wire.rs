//! Raw-byte scenarios for the native V2 protocol against `app::run` on
//! port 0: every byte the client sends and every frame it gets back is
//! spelled out, so these tests pin wire compatibility with nsqd 1.3.

use crate::common;

use std::time::Duration;

use bytes::BytesMut;
use common::v2::{
    expect_closed, expect_error, expect_message, expect_response, expect_silence, framed, identify,
    mpub_cmd, parse_msg, pub_cmd, read_frame, send,
};
use common::wait::frozen;
use common::{STEP, TestServer, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use nsq_gateway::protocol::v2::compress::Decompressor;
use nsq_gateway::protocol::v2::identify::Compression;

async fn subscribe(server: &TestServer, topic: &str, channel: &str, rdy: u32) -> TcpStream {
    let mut s = server.v2().await;
    send(&mut s, format!("SUB {topic} {channel}\n").as_bytes()).await;
    expect_response(&mut s, b"OK").await;
    send(&mut s, format!("RDY {rdy}\n").as_bytes()).await;
    s
}

/// With paused time held, waits until the server has processed everything
/// `s` sent so far: commands are handled in order, and a PUB behind them is
/// answered.
async fn processed(s: &mut TcpStream) {
    send(s, &pub_cmd("processed", b"x")).await;
    frozen(expect_response(s, b"OK")).await;
}

async fn publish(server: &TestServer, topic: &str, bodies: &[&[u8]]) {
    let mut p = server.v2().await;
    for b in bodies {
        send(&mut p, &pub_cmd(topic, b)).await;
        expect_response(&mut p, b"OK").await;
    }
}

#[tokio::test]
async fn identify_without_feature_negotiation_answers_ok() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let (kind, data) = identify(
        &mut s,
        r#"{"client_id":"c1","hostname":"h","user_agent":"test/1.0"}"#,
    )
    .await;
    assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
    // The connection stays usable.
    send(&mut s, &pub_cmd("t", b"x")).await;
    expect_response(&mut s, b"OK").await;
}

#[tokio::test]
async fn identify_with_feature_negotiation_answers_nsqd_json() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let (kind, data) = identify(
        &mut s,
        r#"{"feature_negotiation":true,"tls_v1":true,"msg_timeout":5000,"heartbeat_interval":2000,"output_buffer_size":1024,"output_buffer_timeout":50,"sample_rate":0}"#,
    )
    .await;
    assert_eq!(kind, 0);
    let text = String::from_utf8(data).expect("utf8");
    let keys: Vec<&str> = text
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|kv| kv.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "\"max_rdy_count\"",
            "\"version\"",
            "\"max_msg_timeout\"",
            "\"msg_timeout\"",
            "\"tls_v1\"",
            "\"deflate\"",
            "\"deflate_level\"",
            "\"max_deflate_level\"",
            "\"snappy\"",
            "\"sample_rate\"",
            "\"auth_required\"",
            "\"output_buffer_size\"",
            "\"output_buffer_timeout\""
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["max_rdy_count"], 2500);
    assert_eq!(v["msg_timeout"], 5000);
    assert_eq!(v["max_msg_timeout"], 900000);
    assert_eq!(v["tls_v1"], false);
    assert_eq!(v["auth_required"], false);
    assert_eq!(v["output_buffer_size"], 1024);
    assert_eq!(v["output_buffer_timeout"], 50);
}

#[tokio::test]
async fn identify_out_of_range_is_fatal_bad_body() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let (kind, data) = identify(&mut s, r#"{"heartbeat_interval":10}"#).await;
    assert_eq!(
        (kind, String::from_utf8_lossy(&data).into_owned()),
        (
            1,
            "E_BAD_BODY IDENTIFY heartbeat interval (10) is invalid".to_string()
        )
    );
    expect_closed(&mut s).await;
}

#[tokio::test]
async fn sub_rdy_delivery_fin() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "orders", &[b"first"]).await;
    let mut c = subscribe(&server, "orders", "ch", 1).await;
    let m = expect_message(&mut c).await;
    assert_eq!(m.body, b"first");
    assert_eq!(m.attempts, 1);
    assert!(m.timestamp > 0);
    assert!(m.id.iter().all(u8::is_ascii_hexdigit));
    send(
        &mut c,
        format!("FIN {}\n", String::from_utf8_lossy(&m.id)).as_bytes(),
    )
    .await;
    // RDY 1 with one finished: the next publish is delivered.
    publish(&server, "orders", &[b"second"]).await;
    let m2 = expect_message(&mut c).await;
    assert_eq!((m2.body.as_slice(), m2.attempts), (&b"second"[..], 1));
    assert_ne!(m.id, m2.id);
}

#[tokio::test]
async fn rdy_gates_delivery() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "t", &[b"a", b"b", b"c"]).await;
    let mut c = subscribe(&server, "t", "ch", 2).await;
    let a = expect_message(&mut c).await;
    let _b = expect_message(&mut c).await;
    expect_silence(&mut c, Duration::from_millis(300)).await;
    send(
        &mut c,
        format!("FIN {}\n", String::from_utf8_lossy(&a.id)).as_bytes(),
    )
    .await;
    assert_eq!(expect_message(&mut c).await.body, b"c");
}

#[tokio::test(start_paused = true)]
async fn req_with_delay_redelivers_later_with_attempts_2() {
    let server = TestServer::start(test_config()).await;
    frozen(publish(&server, "t", &[b"retry-me"])).await;
    let mut c = frozen(subscribe(&server, "t", "ch", 1)).await;
    let m = frozen(expect_message(&mut c)).await;
    let start = tokio::time::Instant::now();
    send(
        &mut c,
        format!("REQ {} 700\n", String::from_utf8_lossy(&m.id)).as_bytes(),
    )
    .await;
    processed(&mut c).await;
    let again = expect_message(&mut c).await;
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        (again.id, again.attempts, again.body.as_slice()),
        (m.id, 2, &b"retry-me"[..])
    );
}

#[tokio::test]
async fn req_zero_redelivers_at_once_and_big_delay_is_clamped_not_fatal() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "t", &[b"m"]).await;
    let mut c = subscribe(&server, "t", "ch", 1).await;
    let m = expect_message(&mut c).await;
    send(
        &mut c,
        format!("REQ {} 0\n", String::from_utf8_lossy(&m.id)).as_bytes(),
    )
    .await;
    let again = expect_message(&mut c).await;
    assert_eq!(again.attempts, 2);
    // Over max-req-timeout: nsqd 1.1+ clamps instead of failing.
    send(
        &mut c,
        format!("REQ {} 999999999\n", String::from_utf8_lossy(&m.id)).as_bytes(),
    )
    .await;
    send(&mut c, &pub_cmd("t2", b"still open")).await;
    expect_response(&mut c, b"OK").await;
}

#[tokio::test(start_paused = true)]
async fn timeout_redelivers_with_attempts_2() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "t", &[b"slow"]).await;
    let mut c = server.v2().await;
    let (_, ok) = frozen(identify(&mut c, r#"{"msg_timeout":1000}"#)).await;
    assert_eq!(ok, b"OK");
    send(&mut c, b"SUB t ch\nRDY 1\n").await;
    frozen(expect_response(&mut c, b"OK")).await;
    let m = frozen(expect_message(&mut c)).await;
    let start = tokio::time::Instant::now();
    let again = expect_message(&mut c).await;
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((again.id, again.attempts), (m.id, 2));
    // The timed-out id is no longer ours... but the redelivered one is.
    send(
        &mut c,
        format!("FIN {}\n", String::from_utf8_lossy(&again.id)).as_bytes(),
    )
    .await;
    processed(&mut c).await;
    expect_silence(&mut c, Duration::from_millis(300)).await;
}

#[tokio::test(start_paused = true)]
async fn touch_extends_the_timeout() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "t", &[b"long job"]).await;
    let mut c = server.v2().await;
    frozen(identify(&mut c, r#"{"msg_timeout":1000}"#)).await;
    send(&mut c, b"SUB t ch\nRDY 1\n").await;
    frozen(expect_response(&mut c, b"OK")).await;
    // On paused time only the sleeps below move the clock: the delivery is
    // read, and each command is known to be processed, with the clock held.
    let m = frozen(expect_message(&mut c)).await;
    let id = String::from_utf8_lossy(&m.id).into_owned();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        send(&mut c, format!("TOUCH {id}\n").as_bytes()).await;
        processed(&mut c).await;
    }
    // 1.8 s after delivery with a 1 s timeout: still ours thanks to TOUCH.
    send(&mut c, format!("FIN {id}\n").as_bytes()).await;
    processed(&mut c).await;
    expect_silence(&mut c, Duration::from_millis(1300)).await;
}

#[tokio::test]
async fn two_channels_each_get_every_message() {
    let server = TestServer::start(test_config()).await;
    let mut a = subscribe(&server, "fan", "a", 10).await;
    let mut b = subscribe(&server, "fan", "b", 10).await;
    publish(&server, "fan", &[b"1", b"2", b"3"]).await;
    for c in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(expect_message(c).await.body);
        }
        assert_eq!(got, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    }
}

#[tokio::test]
async fn mpub_publishes_all_or_nothing() {
    let server = TestServer::start(test_config()).await;
    let mut p = server.v2().await;
    send(&mut p, &mpub_cmd("batch", &[b"m1", b"m2", b"m3"])).await;
    expect_response(&mut p, b"OK").await;
    // A batch with an empty message is refused whole, and is fatal.
    let mut bad = server.v2().await;
    send(&mut bad, &mpub_cmd("batch", &[&b"x1"[..], b"", b"x3"])).await;
    expect_error(
        &mut bad,
        "E_BAD_MESSAGE MPUB invalid message(1) body size 0",
    )
    .await;
    expect_closed(&mut bad).await;

    let mut c = subscribe(&server, "batch", "ch", 10).await;
    for want in [&b"m1"[..], b"m2", b"m3"] {
        assert_eq!(expect_message(&mut c).await.body, want);
    }
    expect_silence(&mut c, Duration::from_millis(300)).await;
}

#[tokio::test(start_paused = true)]
async fn dpub_defers_delivery() {
    let server = TestServer::start(test_config()).await;
    let mut c = frozen(subscribe(&server, "later", "ch", 5)).await;
    processed(&mut c).await;
    let mut p = server.v2().await;
    send(&mut p, &framed("DPUB later 600\n", b"deferred")).await;
    frozen(expect_response(&mut p, b"OK")).await;
    let start = tokio::time::Instant::now();
    let m = expect_message(&mut c).await;
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((m.body.as_slice(), m.attempts), (&b"deferred"[..], 1));
    // Beyond max-req-timeout (1h): fatal E_INVALID with nsqd's text.
    send(&mut p, &framed("DPUB later 3600001\n", b"x")).await;
    expect_error(
        &mut p,
        "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
    )
    .await;
    expect_closed(&mut p).await;
}

#[tokio::test]
async fn fin_failed_keeps_the_connection_open() {
    let server = TestServer::start(test_config()).await;
    let mut c = subscribe(&server, "t", "ch", 1).await;
    send(&mut c, b"FIN 0123456789abcdef\n").await;
    expect_error(
        &mut c,
        "E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight",
    )
    .await;
    send(&mut c, b"REQ 0123456789abcdef 0\n").await;
    expect_error(
        &mut c,
        "E_REQ_FAILED REQ 0123456789abcdef failed ID not in flight",
    )
    .await;
    send(&mut c, b"TOUCH 0123456789abcdef\n").await;
    expect_error(
        &mut c,
        "E_TOUCH_FAILED TOUCH 0123456789abcdef failed ID not in flight",
    )
    .await;
    // Still subscribed and served.
    publish(&server, "t", &[b"after"]).await;
    assert_eq!(expect_message(&mut c).await.body, b"after");
}

#[tokio::test]
async fn fatal_errors_close_the_connection() {
    let server = TestServer::start(test_config()).await;
    let cases: &[(&[u8], &str)] = &[
        (b"FOO\n", "E_INVALID invalid command FOO"),
        (b"RDY 1\n", "E_INVALID cannot RDY in current state"),
        (
            b"FIN 0123456789abcdef\n",
            "E_INVALID cannot FIN in current state",
        ),
        (b"CLS\n", "E_INVALID cannot CLS in current state"),
        (
            b"SUB bad/topic ch\n",
            "E_BAD_TOPIC SUB topic name \"bad/topic\" is not valid",
        ),
        (
            b"SUB t bad*ch\n",
            "E_BAD_CHANNEL SUB channel name \"bad*ch\" is not valid",
        ),
        (
            b"PUB t t2\n\x00\x00\x00\x00",
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            b"AUTH\n\x00\x00\x00\x03abc",
            "E_AUTH_DISABLED AUTH disabled",
        ),
    ];
    for (wire, text) in cases {
        let mut s = server.v2().await;
        send(&mut s, wire).await;
        expect_error(&mut s, text).await;
        expect_closed(&mut s).await;
    }
    // Subscribed-state errors.
    let mut s = subscribe(&server, "t", "ch", 1).await;
    send(&mut s, b"SUB t ch\n").await;
    expect_error(&mut s, "E_INVALID cannot SUB in current state").await;
    expect_closed(&mut s).await;
    let mut s = subscribe(&server, "t", "ch", 1).await;
    send(&mut s, b"RDY 2501\n").await;
    expect_error(&mut s, "E_INVALID RDY count 2501 out of range 0-2500").await;
    expect_closed(&mut s).await;
    let mut s = subscribe(&server, "t", "ch", 1).await;
    send(&mut s, b"FIN short\n").await;
    expect_error(&mut s, "E_INVALID Invalid Message ID").await;
    expect_closed(&mut s).await;
}

#[tokio::test]
async fn cls_answers_close_wait_and_stops_delivery() {
    let server = TestServer::start(test_config()).await;
    let mut c = subscribe(&server, "t", "ch", 10).await;
    publish(&server, "t", &[b"one"]).await;
    let m = expect_message(&mut c).await;
    send(&mut c, b"CLS\n").await;
    expect_response(&mut c, b"CLOSE_WAIT").await;
    publish(&server, "t", &[b"two"]).await;
    expect_silence(&mut c, Duration::from_millis(300)).await;
    // RDY after CLS is ignored, FIN still works.
    send(&mut c, b"RDY 5\n").await;
    send(
        &mut c,
        format!("FIN {}\n", String::from_utf8_lossy(&m.id)).as_bytes(),
    )
    .await;
    expect_silence(&mut c, Duration::from_millis(300)).await;
    drop(c);
    // The undelivered message is still there for the next consumer.
    let mut d = subscribe(&server, "t", "ch", 10).await;
    assert_eq!(expect_message(&mut d).await.body, b"two");
}

#[tokio::test]
async fn disconnect_requeues_in_flight() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "t", &[b"keep"]).await;
    let mut c = subscribe(&server, "t", "ch", 1).await;
    let m = expect_message(&mut c).await;
    drop(c);
    let mut d = subscribe(&server, "t", "ch", 1).await;
    let again = expect_message(&mut d).await;
    assert_eq!((again.id, again.attempts), (m.id, 2));
}

#[tokio::test]
async fn nop_has_no_response() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    send(&mut s, b"NOP\nNOP\r\n").await;
    expect_silence(&mut s, Duration::from_millis(200)).await;
    send(&mut s, &pub_cmd("t", b"x")).await;
    expect_response(&mut s, b"OK").await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_are_sent_and_silence_closes() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let (_, ok) = identify(&mut s, r#"{"heartbeat_interval":1000}"#).await;
    assert_eq!(ok, b"OK");
    // Answering heartbeats keeps the connection.
    for _ in 0..3 {
        let (kind, data) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s))
            .await
            .expect("heartbeat in time")
            .expect("frame");
        assert_eq!((kind, data.as_slice()), (0, &b"_heartbeat_"[..]));
        send(&mut s, b"NOP\n").await;
    }
    // Not answering: closed after two intervals without data.
    let start = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        rest.len() <= 2 * 19,
        "at most heartbeats before close: {rest:?}"
    );
}

#[tokio::test]
async fn sub_with_heartbeats_disabled_is_refused() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    identify(&mut s, r#"{"heartbeat_interval":-1}"#).await;
    send(&mut s, b"SUB t ch\n").await;
    expect_error(&mut s, "E_INVALID cannot SUB with heartbeats disabled").await;
    expect_closed(&mut s).await;
}

/// A client side of a compressed stream: standard encoders for what it
/// sends, and a decoder for what it receives.
struct Compressed {
    s: TcpStream,
    kind: Compression,
    encoder: Encoder,
    decoder: Decompressor,
    raw: BytesMut,
    plain: BytesMut,
}

enum Encoder {
    Deflate(flate2::write::DeflateEncoder<Vec<u8>>),
    Snappy(Box<snap::write::FrameEncoder<Vec<u8>>>),
}

impl Compressed {
    fn new(s: TcpStream, kind: Compression, leftover: &[u8]) -> Self {
        let encoder = match kind {
            Compression::Deflate(level) => Encoder::Deflate(flate2::write::DeflateEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Compression::Snappy => {
                Encoder::Snappy(Box::new(snap::write::FrameEncoder::new(Vec::new())))
            }
        };
        Compressed {
            s,
            kind,
            encoder,
            decoder: Decompressor::new(kind),
            raw: BytesMut::from(leftover),
            plain: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        let out = match &mut self.encoder {
            Encoder::Deflate(e) => {
                e.write_all(bytes).expect("deflate");
                e.flush().expect("sync flush");
                std::mem::take(e.get_mut())
            }
            Encoder::Snappy(e) => {
                e.write_all(bytes).expect("snappy");
                e.flush().expect("flush");
                std::mem::take(e.get_mut())
            }
        };
        self.s.write_all(&out).await.expect("write");
    }

    async fn frame(&mut self) -> (u32, Vec<u8>) {
        tokio::time::timeout(STEP, async {
            loop {
                if self.plain.len() >= 4 {
                    let size = u32::from_be_bytes(self.plain[..4].try_into().expect("4")) as usize;
                    if self.plain.len() >= 4 + size {
                        let f = self.plain.split_to(4 + size);
                        let kind = u32::from_be_bytes(f[4..8].try_into().expect("4"));
                        return (kind, f[8..].to_vec());
                    }
                }
                if !self.raw.is_empty() {
                    let before = self.raw.len();
                    self.decoder
                        .decompress(&mut self.raw, &mut self.plain, usize::MAX)
                        .expect("server stream decodes");
                    if self.raw.len() != before {
                        continue;
                    }
                }
                let n = self.s.read_buf(&mut self.raw).await.expect("read");
                assert!(n > 0, "server closed a {:?} stream", self.kind);
            }
        })
        .await
        .expect("frame in time")
    }
}

/// IDENTIFY with compression, reading the JSON answer byte by byte so no
/// compressed byte is consumed as plain.
async fn negotiate(s: &mut TcpStream, json: &str) -> serde_json::Value {
    send(s, &framed("IDENTIFY\n", json.as_bytes())).await;
    let size = s.read_u32().await.expect("size");
    let kind = s.read_u32().await.expect("type");
    assert_eq!(kind, 0);
    let mut data = vec![0u8; size as usize - 4];
    s.read_exact(&mut data).await.expect("json");
    serde_json::from_slice(&data).expect("json answer")
}

async fn compressed_session(kind: Compression, json: &str) {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let v = negotiate(&mut s, json).await;
    match kind {
        Compression::Deflate(level) => {
            assert_eq!(
                (v["deflate"].as_bool(), v["deflate_level"].as_u64()),
                (Some(true), Some(u64::from(level)))
            );
        }
        Compression::Snappy => assert_eq!(v["snappy"], true),
    }
    let mut c = Compressed::new(s, kind, &[]);
    // The first compressed frame is OK.
    assert_eq!(c.frame().await, (0, b"OK".to_vec()));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 97) as u8).collect();
    c.send(&pub_cmd("zt", b"hello")).await;
    assert_eq!(c.frame().await, (0, b"OK".to_vec()));
    c.send(&pub_cmd("zt", &big)).await;
    assert_eq!(c.frame().await, (0, b"OK".to_vec()));
    // Many publishes of growing size, each its own compressed write: the
    // server must answer every one without waiting for more input.
    for i in 0..20usize {
        let body = format!("x{i}-").repeat(1 + i * 500);
        c.send(&pub_cmd("zmany", body.as_bytes())).await;
        assert_eq!(c.frame().await, (0, b"OK".to_vec()), "publish {i}");
    }
    c.send(b"SUB zt ch\n").await;
    assert_eq!(c.frame().await, (0, b"OK".to_vec()));
    c.send(b"RDY 10\n").await;
    let (k1, m1) = c.frame().await;
    let (k2, m2) = c.frame().await;
    assert_eq!((k1, k2), (2, 2));
    assert_eq!(parse_msg(&m1).body, b"hello");
    assert_eq!(parse_msg(&m2).body, big);
    c.send(format!("FIN {}\n", String::from_utf8_lossy(&parse_msg(&m1).id)).as_bytes())
        .await;
    c.send(b"FIN 0123456789abcdef\n").await;
    assert_eq!(
        c.frame().await,
        (
            1,
            b"E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight".to_vec()
        )
    );
}

#[tokio::test]
async fn deflate_session_end_to_end() {
    compressed_session(
        Compression::Deflate(3),
        r#"{"feature_negotiation":true,"deflate":true,"deflate_level":3}"#,
    )
    .await;
}

#[tokio::test]
async fn snappy_session_end_to_end() {
    compressed_session(
        Compression::Snappy,
        r#"{"feature_negotiation":true,"snappy":true}"#,
    )
    .await;
}

#[tokio::test]
async fn deflate_and_snappy_together_is_refused() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let (kind, data) = identify(
        &mut s,
        r#"{"feature_negotiation":true,"deflate":true,"snappy":true}"#,
    )
    .await;
    assert_eq!(
        (kind, String::from_utf8_lossy(&data).into_owned()),
        (
            1,
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression".into()
        )
    );
    expect_closed(&mut s).await;
}

#[tokio::test]
async fn garbage_on_200_connections_affects_no_other_client() {
    let server = TestServer::start(test_config()).await;
    let mut c = subscribe(&server, "calm", "ch", 100).await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let addr = server.tcp_addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let mut junk = b"  V2".to_vec();
            // Mixed garbage: binary noise, a huge length prefix, a line
            // without newline.
            match i % 3 {
                0 => junk
                    .extend((0..2000u32).map(|j| (j.wrapping_mul(2654435761) >> 7) as u8 | 0x80)),
                1 => junk.extend_from_slice(b"PUB t\n\xff\xff\xff\xff"),
                _ => junk.extend(std::iter::repeat_n(b'A', 5000)),
            }
            let _ = s.write_all(&junk).await;
            let mut all = Vec::new();
            let _ = tokio::time::timeout(STEP, s.read_to_end(&mut all)).await;
            // Each got one error frame then a close.
            assert!(
                all.len() >= 8 && all[4..8] == [0, 0, 0, 1],
                "conn {i}: {all:?}"
            );
        }));
    }
    let mut p = server.v2().await;
    for n in 0..50 {
        send(&mut p, &pub_cmd("calm", format!("m{n}").as_bytes())).await;
        expect_response(&mut p, b"OK").await;
    }
    for n in 0..50 {
        assert_eq!(
            expect_message(&mut c).await.body,
            format!("m{n}").into_bytes()
        );
    }
    for t in tasks {
        t.await.expect("garbage client");
    }
}

#[tokio::test]
async fn huge_length_prefix_is_refused_at_once() {
    let server = TestServer::start(test_config()).await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"PUB t\n\x80\x00\x00\x00",
            "E_BAD_MESSAGE PUB invalid message body size -2147483648",
        ),
        (
            b"MPUB t\n\x80\x00\x00\x00",
            "E_BAD_BODY MPUB invalid body size -2147483648",
        ),
        (
            b"MPUB t\n\x7f\xff\xff\xff",
            "E_BAD_BODY MPUB body too big 2147483647 > 5242880",
        ),
        (
            b"PUB t\n\x7f\xff\xff\xff",
            "E_BAD_MESSAGE PUB message too big 2147483647 > 1048576",
        ),
        (
            b"IDENTIFY\n\x80\x00\x00\x00",
            "E_BAD_BODY IDENTIFY invalid body size -2147483648",
        ),
    ];
    for (wire, text) in cases {
        let mut s = server.v2().await;
        send(&mut s, wire).await;
        // Answered without the body ever being sent.
        let (kind, data) = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut s))
            .await
            .expect("answered without waiting for the body")
            .expect("frame");
        assert_eq!(
            (kind, String::from_utf8_lossy(&data).into_owned()),
            (1, text.to_string())
        );
        expect_closed(&mut s).await;
    }
}

#[tokio::test]
async fn pipelined_commands_in_one_write() {
    let server = TestServer::start(test_config()).await;
    let mut s = server.v2().await;
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend(pub_cmd("pipe", format!("{i}").as_bytes()));
    }
    wire.extend(mpub_cmd("pipe", &[b"a", b"b"]));
    send(&mut s, &wire).await;
    for _ in 0..101 {
        expect_response(&mut s, b"OK").await;
    }
    let mut c = subscribe(&server, "pipe", "ch", 200).await;
    for i in 0..100 {
        assert_eq!(
            expect_message(&mut c).await.body,
            format!("{i}").into_bytes()
        );
    }
}

#[tokio::test]
async fn sample_rate_delivers_a_sample_and_drains_the_rest() {
    let server = TestServer::start(test_config()).await;
    let bodies: Vec<Vec<u8>> = (0..300).map(|i| format!("s{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    let mut p = server.v2().await;
    send(&mut p, &mpub_cmd("sampled", &refs)).await;
    expect_response(&mut p, b"OK").await;
    let mut c = server.v2().await;
    let (_, ok) = identify(&mut c, r#"{"sample_rate":10}"#).await;
    assert_eq!(ok, b"OK");
    send(&mut c, b"SUB sampled ch\nRDY 300\n").await;
    expect_response(&mut c, b"OK").await;
    let mut got = 0;
    while tokio::time::timeout(
        Duration::from_millis(300),
        common::read_frame_skip_heartbeats(&mut c),
    )
    .await
    .is_ok()
    {
        got += 1;
    }
    // nsqd keeps a message when rand(100) <= sample_rate: about 11%.
    assert!((5..=90).contains(&got), "delivered {got} of 300");
}

#[tokio::test]
async fn unbuffered_output_still_delivers_everything() {
    let server = TestServer::start(test_config()).await;
    publish(&server, "unbuf", &[b"a", b"b", b"c"]).await;
    let mut c = server.v2().await;
    let (_, ok) = identify(&mut c, r#"{"output_buffer_size":-1}"#).await;
    assert_eq!(ok, b"OK");
    send(&mut c, b"SUB unbuf ch\nRDY 3\n").await;
    expect_response(&mut c, b"OK").await;
    for want in [&b"a"[..], b"b", b"c"] {
        assert_eq!(expect_message(&mut c).await.body, want);
    }
}
