//! The HTTP API against a real server on port 0, next to raw V2 clients: a
//! message published over HTTP reaches a V2 subscriber and one published
//! over V2 shows in `/stats`, with depths checked at each step; pausing a
//! topic or channel over HTTP stops delivery and unpausing resumes it. V2
//! clients that publish are listed as `/stats` producers with their
//! per-topic counts while they are connected.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{
    TestServer, eventually, mpub_cmd, parse_msg, pub_cmd, read_frame_within, test_config,
};

const FRAME_RESPONSE: u32 = 0;
const FRAME_MESSAGE: u32 = 2;
const WAIT: Duration = Duration::from_secs(5);

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

async fn stats(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http(addr, "GET", "/stats?format=json", b"").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

fn topic<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["topic_name"] == name))
        .unwrap_or_else(|| panic!("topic {name} in {stats}"))
}

fn channel<'a>(stats: &'a serde_json::Value, t: &str, c: &str) -> &'a serde_json::Value {
    topic(stats, t)["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|ch| ch["channel_name"] == c))
        .unwrap_or_else(|| panic!("channel {t}/{c} in {stats}"))
}

async fn expect_ok(s: &mut TcpStream) {
    let (kind, data) = read_frame_within(s, WAIT).await;
    assert_eq!(
        (kind, data.as_slice()),
        (FRAME_RESPONSE, &b"OK"[..]),
        "{}",
        String::from_utf8_lossy(&data)
    );
}

/// A V2 consumer subscribed to `t`/`c` with `rdy`.
async fn subscribe(srv: &TestServer, t: &str, c: &str, rdy: u32) -> TcpStream {
    let mut s = srv.v2().await;
    s.write_all(format!("SUB {t} {c}\n").as_bytes())
        .await
        .expect("SUB");
    expect_ok(&mut s).await;
    s.write_all(format!("RDY {rdy}\n").as_bytes())
        .await
        .expect("RDY");
    s
}

/// Asserts that no frame other than a heartbeat arrives within `d`.
async fn expect_silence(s: &mut TcpStream, d: Duration) {
    if let Ok(Ok(f)) = tokio::time::timeout(d, common::read_frame_skip_heartbeats(s)).await {
        panic!(
            "unexpected frame type {}: {:?}",
            f.0,
            String::from_utf8_lossy(&f.1)
        );
    }
}

#[tokio::test]
async fn http_publish_reaches_a_v2_subscriber() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    assert_eq!(
        http(h, "POST", "/topic/create?topic=orders", b"").await.0,
        200
    );
    assert_eq!(
        http(
            h,
            "POST",
            "/channel/create?topic=orders&channel=billing",
            b""
        )
        .await
        .0,
        200
    );
    assert_eq!(
        http(h, "POST", "/pub?topic=orders", b"first").await,
        (200, "OK".into())
    );
    let s = stats(h).await;
    assert_eq!(channel(&s, "orders", "billing")["depth"], 1);
    assert_eq!(topic(&s, "orders")["message_count"], 1);

    let mut sub = subscribe(&srv, "orders", "billing", 1).await;
    let (kind, data) = read_frame_within(&mut sub, WAIT).await;
    assert_eq!(kind, FRAME_MESSAGE);
    let msg = parse_msg(&data);
    assert_eq!(msg.body, b"first");
    assert_eq!(msg.attempts, 1);

    let s = stats(h).await;
    let ch = channel(&s, "orders", "billing");
    assert_eq!(
        (ch["depth"].as_u64(), ch["in_flight_count"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(ch["client_count"], 1);
    assert_eq!(ch["clients"][0]["protocol"], "V2");
    assert_eq!(ch["clients"][0]["version"], "V2");

    let mut fin = b"FIN ".to_vec();
    fin.extend_from_slice(&msg.id);
    fin.push(b'\n');
    sub.write_all(&fin).await.expect("FIN");
    // Binary MPUB over HTTP reaches the same subscriber.
    sub.write_all(b"RDY 2\n").await.expect("RDY");
    let mut batch = 2u32.to_be_bytes().to_vec();
    for body in [&b"m1"[..], b"m2"] {
        batch.extend_from_slice(&(body.len() as u32).to_be_bytes());
        batch.extend_from_slice(body);
    }
    assert_eq!(
        http(h, "POST", "/mpub?topic=orders&binary=true", &batch).await,
        (200, "OK".into())
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let (kind, data) = read_frame_within(&mut sub, WAIT).await;
        assert_eq!(kind, FRAME_MESSAGE);
        got.push(parse_msg(&data).body);
    }
    got.sort();
    assert_eq!(got, [b"m1".to_vec(), b"m2".to_vec()]);
    let s = stats(h).await;
    let ch = channel(&s, "orders", "billing");
    assert_eq!(ch["message_count"], 3);
    assert_eq!(ch["in_flight_count"], 2);
    assert_eq!(ch["clients"][0]["finish_count"], 1);
    drop(sub);
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn v2_publish_shows_in_http_stats_and_is_delivered() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    let mut producer = srv.v2().await;
    producer
        .write_all(&pub_cmd("events", b"from-v2"))
        .await
        .expect("PUB");
    expect_ok(&mut producer).await;

    // No channel yet: the topic holds it.
    let s = stats(h).await;
    let t = topic(&s, "events");
    assert_eq!(
        (t["depth"].as_u64(), t["message_count"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(t["message_bytes"], 7);

    let mut sub = subscribe(&srv, "events", "audit", 1).await;
    let (kind, data) = read_frame_within(&mut sub, WAIT).await;
    assert_eq!(kind, FRAME_MESSAGE);
    assert_eq!(parse_msg(&data).body, b"from-v2");
    let s = stats(h).await;
    assert_eq!(topic(&s, "events")["depth"], 0);
    assert_eq!(channel(&s, "events", "audit")["in_flight_count"], 1);
    let v2 = s["protocols"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == "V2"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(v2["active"], 2, "{s}");

    let (status, text) = http(h, "GET", "/stats?format=text&topic=events", b"").await;
    assert_eq!(status, 200);
    assert!(text.contains("[events         ] depth: 0"), "{text}");
    assert!(
        text.contains("[audit                    ] depth: 0"),
        "{text}"
    );
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn channel_pause_stops_and_unpause_resumes_delivery() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    let mut sub = subscribe(&srv, "p", "c", 10).await;
    assert_eq!(
        http(h, "POST", "/channel/pause?topic=p&channel=c", b"")
            .await
            .0,
        200
    );
    assert_eq!(http(h, "POST", "/pub?topic=p", b"held").await.0, 200);
    expect_silence(&mut sub, Duration::from_millis(300)).await;
    let s = stats(h).await;
    let ch = channel(&s, "p", "c");
    assert_eq!(
        (ch["paused"].as_bool(), ch["depth"].as_u64()),
        (Some(true), Some(1))
    );

    assert_eq!(
        http(h, "POST", "/channel/unpause?topic=p&channel=c", b"")
            .await
            .0,
        200
    );
    let (kind, data) = read_frame_within(&mut sub, WAIT).await;
    assert_eq!(kind, FRAME_MESSAGE);
    assert_eq!(parse_msg(&data).body, b"held");
    let s = stats(h).await;
    assert_eq!(channel(&s, "p", "c")["paused"], false);
    assert_eq!(channel(&s, "p", "c")["depth"], 0);
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn topic_pause_stops_and_unpause_resumes_delivery() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    let mut sub = subscribe(&srv, "tp", "c", 10).await;
    assert_eq!(http(h, "POST", "/topic/pause?topic=tp", b"").await.0, 200);
    assert_eq!(http(h, "POST", "/mpub?topic=tp", b"a\nb").await.0, 200);
    expect_silence(&mut sub, Duration::from_millis(300)).await;
    let s = stats(h).await;
    let t = topic(&s, "tp");
    assert_eq!(
        (t["paused"].as_bool(), t["depth"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(channel(&s, "tp", "c")["depth"], 0);

    assert_eq!(http(h, "POST", "/topic/unpause?topic=tp", b"").await.0, 200);
    let mut got = Vec::new();
    for _ in 0..2 {
        let (kind, data) = read_frame_within(&mut sub, WAIT).await;
        assert_eq!(kind, FRAME_MESSAGE);
        got.push(parse_msg(&data).body);
    }
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    let s = stats(h).await;
    assert_eq!(topic(&s, "tp")["paused"], false);
    assert_eq!(topic(&s, "tp")["depth"], 0);
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn http_answers_nsqd_errors_over_a_socket() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    assert_eq!(
        http(h, "POST", "/pub", b"x").await,
        (400, r#"{"message":"MISSING_ARG_TOPIC"}"#.into())
    );
    assert_eq!(
        http(h, "GET", "/pub?topic=t", b"").await,
        (405, r#"{"message":"METHOD_NOT_ALLOWED"}"#.into())
    );
    assert_eq!(
        http(h, "GET", "/nowhere", b"").await,
        (404, r#"{"message":"NOT_FOUND"}"#.into())
    );
    // A declared body over max-msg-size is refused before it is sent.
    let mut s = TcpStream::connect(h).await.expect("connect");
    s.write_all(b"POST /pub?topic=t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 999999999\r\n\r\n")
        .await
        .expect("head");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("answered without the body")
        .ok();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.ends_with(r#"{"message":"MSG_TOO_BIG"}"#), "{text}");
    let (status, body) = http(h, "GET", "/info", b"").await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&body).expect("info JSON");
    assert_eq!(info["http_port"], h.port());
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn publishing_v2_clients_are_listed_as_producers_with_pub_counts() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    let s = stats(h).await;
    assert_eq!(s["producers"], serde_json::json!([]));

    let mut producer = srv.v2().await;
    producer
        .write_all(&pub_cmd("alpha", b"one"))
        .await
        .expect("PUB");
    expect_ok(&mut producer).await;
    let bodies = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    producer
        .write_all(&mpub_cmd("beta", &bodies))
        .await
        .expect("MPUB");
    expect_ok(&mut producer).await;
    producer
        .write_all(b"DPUB alpha 1000\n\x00\x00\x00\x03two")
        .await
        .expect("DPUB");
    expect_ok(&mut producer).await;
    // A consumer that never published is no producer, and is subscribed.
    let consumer = subscribe(&srv, "alpha", "ch", 0).await;
    // A failed publish counts nothing.
    let mut bad = srv.v2().await;
    bad.write_all(b"PUB bad!name\n\x00\x00\x00\x01x")
        .await
        .expect("PUB");
    let (_, err) = read_frame_within(&mut bad, WAIT).await;
    assert!(
        err.starts_with(b"E_BAD_TOPIC"),
        "{}",
        String::from_utf8_lossy(&err)
    );

    let s = stats(h).await;
    let producers = s["producers"].as_array().expect("producers array");
    assert_eq!(producers.len(), 1, "{s}");
    let p = &producers[0];
    assert_eq!(
        p["state"], 0,
        "a producer that never subscribed is in state init"
    );
    assert_eq!(p["version"], "V2");
    assert_eq!(
        p["pub_counts"],
        serde_json::json!([{"topic": "alpha", "count": 2}, {"topic": "beta", "count": 3}])
    );
    assert_eq!(
        p["remote_address"],
        producer.local_addr().expect("addr").to_string()
    );
    let c = &channel(&s, "alpha", "ch")["clients"][0];
    assert_eq!(c["state"], 3);
    assert!(
        c.get("pub_counts").is_none(),
        "omitted when empty, as nsqd: {c}"
    );

    // Not with include_clients=false, as nsqd.
    let (_, body) = http(h, "GET", "/stats?format=json&include_clients=false", b"").await;
    let s: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(s["producers"], serde_json::json!([]));

    // The text format lists them with a total and per-topic counts.
    let (_, text) = http(h, "GET", "/stats", b"").await;
    assert!(text.contains("\nProducers:\n"), "{text}");
    assert!(text.contains("msgs: 5 "), "{text}");
    assert!(text.contains("      [alpha          ] msgs: 2 "), "{text}");

    // Gone when the connection is.
    drop(producer);
    eventually(WAIT, "producer no longer listed", async || {
        (stats(h).await["producers"] == serde_json::json!([])).then_some(())
    })
    .await;
    let (_, text) = http(h, "GET", "/stats", b"").await;
    assert!(text.contains("\nProducers: None"), "{text}");
    drop((consumer, bad));
    srv.shutdown().await.expect("clean shutdown");
}
