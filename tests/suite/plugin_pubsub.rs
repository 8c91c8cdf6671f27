//! The pub/sub scenario written once and run over every pair of protocols:
//! V2→V2, LINE→LINE, V2→LINE and LINE→V2. The consumer subscribes first, the
//! publisher sends three messages, the consumer receives them in order with
//! attempts 1 and FINs them, and the channel ends empty.

use crate::common;

use common::plugins::{LineClient, line_plugin};
use common::v2::V2Client;
use common::{STEP, TestServer, eventually};

#[derive(Clone, Copy, Debug)]
enum Proto {
    V2,
    Line,
}

/// A subscribed consumer on either protocol.
enum Consumer {
    V2(V2Client),
    Line(LineClient),
}

impl Consumer {
    async fn subscribe(server: &TestServer, proto: Proto, topic: &str, channel: &str) -> Consumer {
        match proto {
            Proto::V2 => {
                let mut c = V2Client::connect(server.tcp_addr).await;
                c.subscribe(topic, channel).await;
                c.ready(10).await;
                Consumer::V2(c)
            }
            Proto::Line => {
                let mut c = LineClient::line(server.tcp_addr).await;
                let reply = c.request(&format!("SUB {topic} {channel} manual")).await;
                assert!(reply.starts_with("OK subscribed"), "{reply}");
                assert_eq!(c.request("RDY 10").await, "OK");
                Consumer::Line(c)
            }
        }
    }

    /// Receives one message and FINs it; returns (attempts, body).
    async fn receive(&mut self, topic: &str) -> (u16, Vec<u8>) {
        match self {
            Consumer::V2(c) => {
                let (id, attempts, body) = c.message().await;
                c.finish(&id).await;
                (attempts, body)
            }
            Consumer::Line(c) => {
                // Replies to earlier FINs ("OK") interleave with deliveries.
                let mut line = c.read_line().await;
                while line == "OK" {
                    line = c.read_line().await;
                }
                let mut parts = line.splitn(5, ' ');
                assert_eq!(parts.next(), Some("MSG"), "{line}");
                let id = parts.next().expect("id").to_string();
                let attempts: u16 = parts.next().expect("attempts").parse().expect("number");
                assert_eq!(parts.next(), Some(topic), "{line}");
                let body = parts.next().expect("body").as_bytes().to_vec();
                c.send(&format!("FIN {id}")).await;
                (attempts, body)
            }
        }
    }
}

async fn publish(server: &TestServer, proto: Proto, topic: &str, bodies: &[&str]) {
    match proto {
        Proto::V2 => {
            let mut c = V2Client::connect(server.tcp_addr).await;
            for b in bodies {
                c.publish(topic, b.as_bytes()).await;
            }
        }
        Proto::Line => {
            let mut c = LineClient::line(server.tcp_addr).await;
            for b in bodies {
                assert_eq!(c.request(&format!("PUB {topic} {b}")).await, "OK");
            }
        }
    }
}

async fn scenario(publisher: Proto, consumer: Proto) {
    let server = TestServer::builder().plugin(line_plugin()).start().await;
    let topic = format!("t_{publisher:?}_{consumer:?}");
    let mut sub = Consumer::subscribe(&server, consumer, &topic, "c").await;
    let bodies = ["hello world", "second message", "third"];
    publish(&server, publisher, &topic, &bodies).await;
    for want in bodies {
        let (attempts, body) = sub.receive(&topic).await;
        assert_eq!(attempts, 1);
        assert_eq!(
            String::from_utf8_lossy(&body),
            want,
            "{publisher:?} -> {consumer:?}"
        );
    }
    // The FINs are processed before the stats show an empty channel.
    let ch = eventually(STEP, "channel drained", async || {
        let stats = server.broker().stats(Some(&topic));
        let ch = stats[0].channels[0].clone();
        (ch.depth == 0 && ch.in_flight_count == 0).then_some(ch)
    })
    .await;
    assert_eq!(ch.message_count, 3);
}

#[tokio::test]
async fn v2_to_v2() {
    scenario(Proto::V2, Proto::V2).await;
}

#[tokio::test]
async fn line_to_line() {
    scenario(Proto::Line, Proto::Line).await;
}

#[tokio::test]
async fn v2_to_line() {
    scenario(Proto::V2, Proto::Line).await;
}

#[tokio::test]
async fn line_to_v2() {
    scenario(Proto::Line, Proto::V2).await;
}

/// LINE's own behaviour: auto-FIN, readable errors, escapes, REQ, QUIT.
#[tokio::test]
async fn line_protocol_details() {
    let server = TestServer::builder().plugin(line_plugin()).start().await;
    let mut c = LineClient::line(server.tcp_addr).await;
    assert_eq!(c.request("PING").await, "PONG");
    assert!(
        c.request("BOGUS x")
            .await
            .starts_with("ERR unknown command")
    );
    assert!(c.request("PUB").await.starts_with("ERR usage"));
    assert!(
        c.request("PUB bad/topic x")
            .await
            .starts_with("ERR invalid topic name")
    );
    assert!(
        c.request("FIN 0123456789abcdef")
            .await
            .starts_with("ERR FIN needs a SUB")
    );

    let mut auto = LineClient::line(server.tcp_addr).await;
    assert!(
        auto.request("SUB details c")
            .await
            .contains("(auto, RDY 1)")
    );
    assert_eq!(c.request("PUB details multi\\nline\\x01").await, "OK");
    let msg = auto.read_line().await;
    assert!(
        msg.starts_with("MSG ") && msg.ends_with(" 1 details multi\\nline\\x01"),
        "{msg}"
    );
    // Auto mode FINs by itself: the next message arrives with RDY 1.
    assert_eq!(c.request("PUB details two").await, "OK");
    assert!(auto.read_line().await.ends_with(" details two"));

    let mut manual = LineClient::line(server.tcp_addr).await;
    assert!(manual.request("SUB req c2 manual").await.starts_with("OK"));
    assert_eq!(c.request("PUB req again").await, "OK");
    let first = manual.read_line().await;
    let id = first.split(' ').nth(1).expect("id").to_string();
    assert_eq!(manual.request(&format!("REQ {id}")).await, "OK");
    let second = manual.read_line().await;
    assert!(
        second.starts_with(&format!("MSG {id} 2 req again")),
        "{second}"
    );
    assert!(
        manual
            .request("FIN 0000000000000000")
            .await
            .starts_with("ERR message is not in flight")
    );
    assert_eq!(manual.request(&format!("FIN {id}")).await, "OK");
    assert_eq!(manual.request("QUIT").await, "BYE");
    assert!(manual.closed().await);
}

/// A line over `max_line_bytes` is refused with a readable error and a close.
#[tokio::test]
async fn line_too_long_closes() {
    let mut cfg = line_plugin();
    cfg.config.insert("max_line_bytes".into(), "100".into());
    let server = TestServer::builder().plugin(cfg).start().await;
    let mut c = LineClient::line(server.tcp_addr).await;
    c.send(&format!("PUB t {}", "x".repeat(200))).await;
    assert!(
        c.read_line()
            .await
            .starts_with("ERR line too long (max 100 bytes)")
    );
    assert!(c.closed().await);
}

/// Pipelined PUBs are coalesced into one publish-many by LINE; every line
/// still gets its own answer, in order, and errors stay per line.
#[tokio::test]
async fn line_pipelined_pubs_are_answered_in_order() {
    let server = TestServer::builder().plugin(line_plugin()).start().await;
    let mut c = LineClient::line(server.tcp_addr).await;
    let mut script = String::new();
    for i in 0..300 {
        script.push_str(&format!("PUB piped m{i}\n"));
    }
    script.push_str("PUB bad/topic x\nPUB piped last\nPING");
    c.send(&script).await;
    for i in 0..300 {
        assert_eq!(c.read_line().await, "OK", "line {i}");
    }
    assert!(c.read_line().await.starts_with("ERR invalid topic name"));
    assert_eq!(c.read_line().await, "OK");
    assert_eq!(c.read_line().await, "PONG");
    assert_eq!(server.broker().stats(Some("piped"))[0].message_count, 301);
}

/// `connect-info.limits` carries the gateway's flags: LINE bounds `RDY n`
/// by `--max-rdy-count`, not by a number compiled into it.
#[tokio::test]
async fn line_takes_max_rdy_from_the_gateways_flags() {
    let mut config = common::test_config();
    config.max_rdy_count = 10;
    let server = TestServer::builder()
        .config(config)
        .plugin(line_plugin())
        .start()
        .await;
    let mut c = LineClient::line(server.tcp_addr).await;
    assert!(
        c.request("SUB t c manual")
            .await
            .starts_with("OK subscribed")
    );
    assert_eq!(
        c.request("RDY 11").await,
        "ERR RDY 11 is over the maximum 10"
    );
    assert_eq!(c.request("RDY 10").await, "OK");
}
