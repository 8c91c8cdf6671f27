//! statsd against a UDP socket in the test: a gateway with
//! `--statsd-address` pointing at it pushes nsqd's metric names and types
//! for topics and channels (counters as differences, gauges, the E2E
//! percentiles), the process's memory figures and the per-protocol
//! figures; no datagram exceeds `--statsd-udp-packet-size`;
//! `--statsd-exclude-ephemeral` leaves ephemeral topics and channels out;
//! `%s` in the prefix becomes the host key.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use tokio::net::UdpSocket;

use common::{STEP, TestServer, eventually, test_config};
use nsq_gateway::config::Config;

const PACKET: usize = 128;

/// Every metric line received so far: name -> (values in order, type).
#[derive(Default)]
struct Received {
    lines: HashMap<String, (Vec<i64>, String)>,
    datagrams: usize,
}

impl Received {
    /// Reads datagrams until `done` holds, checking each one's size and
    /// that it holds whole `name:value|type` lines.
    async fn until(&mut self, sock: &UdpSocket, what: &str, done: impl Fn(&Received) -> bool) {
        let mut buf = vec![0u8; 65_536];
        eventually(STEP, what, async || {
            if done(self) {
                return Some(());
            }
            let n = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf))
                .await
                .ok()?
                .expect("recv");
            assert!(n <= PACKET, "datagram of {n} bytes");
            let text = std::str::from_utf8(&buf[..n]).expect("UTF-8");
            assert!(text.ends_with('\n'), "whole lines only: {text:?}");
            self.datagrams += 1;
            for line in text.lines() {
                let (name, rest) = line.rsplit_once(':').expect("name:value");
                let (value, kind) = rest.split_once('|').expect("value|type");
                let entry = self.lines.entry(name.to_owned()).or_default();
                entry.0.push(value.parse().expect("integer value"));
                entry.1 = kind.to_owned();
            }
            done(self).then_some(())
        })
        .await;
    }

    fn sum(&self, name: &str) -> i64 {
        self.lines.get(name).map_or(0, |(v, _)| v.iter().sum())
    }

    fn last(&self, name: &str) -> Option<i64> {
        self.lines.get(name).and_then(|(v, _)| v.last().copied())
    }

    fn kind(&self, name: &str) -> &str {
        self.lines.get(name).map_or("", |(_, k)| k.as_str())
    }
}

async fn statsd_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP")
}

fn statsd_config(sock: &UdpSocket) -> Config {
    Config {
        statsd_address: sock.local_addr().expect("addr").to_string(),
        statsd_interval: Duration::from_millis(50),
        statsd_udp_packet_size: PACKET,
        broadcast_address: "127.0.0.1".into(),
        ..test_config()
    }
}

#[tokio::test]
async fn pushes_nsqds_names_and_types_within_the_packet_size() {
    let sock = statsd_socket().await;
    let server = TestServer::start(Config {
        statsd_exclude_ephemeral: true,
        e2e_processing_latency_percentiles: vec![1.0, 0.99],
        ..statsd_config(&sock)
    })
    .await;
    let p = format!("nsq.127_0_0_1_{}.", server.http_addr.port());

    // A durable channel that FINs, an ephemeral one that only receives,
    // and an ephemeral topic: the last two are left out.
    let mut consumer = server.v2_client().await;
    consumer.subscribe("st", "c").await;
    consumer.ready(10).await;
    let mut eph = server.v2_client().await;
    eph.subscribe("st", "e#ephemeral").await;
    let mut eph_topic = server.v2_client().await;
    eph_topic.subscribe("tmp#ephemeral", "c").await;
    let mut producer = server.v2_client().await;
    producer.publish("st", b"hello").await;
    producer.publish("st", b"world").await;
    producer.publish("tmp#ephemeral", b"x").await;
    for _ in 0..2 {
        let (id, _, _) = consumer.message().await;
        consumer.finish(&id).await;
    }

    let mut got = Received::default();
    let topic = format!("{p}topic.st.");
    let channel = format!("{topic}channel.c.");
    got.until(
        &sock,
        "both messages counted and both FINs in the percentiles",
        |r| {
            r.sum(&format!("{topic}message_count")) == 2
                && r.sum(&format!("{channel}message_count")) == 2
                && r.last(&format!("{channel}e2e_processing_latency_100"))
                    .unwrap_or(0)
                    > 0
                && r.last(&format!("{channel}in_flight_count")) == Some(0)
                // Protocol lines come after the memory ones in a push.
                && r.sum(&format!("{p}protocol.V2.connections")) == 4
                && r.lines.contains_key(&format!("{p}protocol.V2.active"))
        },
    )
    .await;

    for (name, kind) in [
        ("message_count", "c"),
        ("message_bytes", "c"),
        ("depth", "g"),
        ("backend_depth", "g"),
        ("e2e_processing_latency_100", "g"),
        ("e2e_processing_latency_99", "g"),
    ] {
        assert_eq!(got.kind(&format!("{topic}{name}")), kind, "{topic}{name}");
    }
    assert_eq!(got.sum(&format!("{topic}message_bytes")), 10);
    for (name, kind) in [
        ("message_count", "c"),
        ("depth", "g"),
        ("backend_depth", "g"),
        ("in_flight_count", "g"),
        ("deferred_count", "g"),
        ("requeue_count", "c"),
        ("timeout_count", "c"),
        ("clients", "g"),
        ("e2e_processing_latency_100", "g"),
        ("e2e_processing_latency_99", "g"),
    ] {
        assert_eq!(
            got.kind(&format!("{channel}{name}")),
            kind,
            "{channel}{name}"
        );
    }
    assert_eq!(got.last(&format!("{channel}clients")), Some(1));
    for name in ["heap_in_use_bytes", "resident_bytes", "virtual_bytes"] {
        assert_eq!(got.kind(&format!("{p}mem.{name}")), "g", "mem.{name}");
    }
    assert_eq!(got.kind(&format!("{p}protocol.V2.active")), "g");
    assert_eq!(got.kind(&format!("{p}protocol.V2.connections")), "c");
    assert!(
        got.datagrams > 1,
        "a push of this size takes several datagrams"
    );
    let ephemeral: Vec<&String> = got
        .lines
        .keys()
        .filter(|k| k.contains("ephemeral"))
        .collect();
    assert!(ephemeral.is_empty(), "ephemeral sent: {ephemeral:?}");
    assert!(
        got.lines.keys().all(|k| k.starts_with(&p)),
        "every name has the prefix"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn prefix_host_substitution_and_switches() {
    let sock = statsd_socket().await;
    let server = TestServer::start(Config {
        statsd_prefix: "gw.%s.x".into(),
        statsd_mem_stats: false,
        ..statsd_config(&sock)
    })
    .await;
    let p = format!("gw.127_0_0_1_{}.x.", server.http_addr.port());
    let mut eph = server.v2_client().await;
    eph.subscribe("pt", "e#ephemeral").await;
    let mut producer = server.v2_client().await;
    producer.publish("pt", b"m").await;
    let mut got = Received::default();
    got.until(&sock, "the ephemeral channel's message", |r| {
        r.sum(&format!("{p}topic.pt.channel.e#ephemeral.message_count")) == 1
    })
    .await;
    assert!(
        !got.lines.keys().any(|k| k.contains(".mem.")),
        "no memory figures with --statsd-mem-stats=false"
    );
    assert!(
        !got.lines
            .keys()
            .any(|k| k.contains("e2e_processing_latency")),
        "no percentiles configured"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_statsd_that_is_down_costs_nothing() {
    // Nothing listens on the port at first: every push is refused. The
    // gateway keeps serving, and once a statsd listens there it gets the
    // pushes.
    let closed = statsd_socket().await;
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let server = TestServer::start(Config {
        statsd_address: addr.to_string(),
        statsd_interval: Duration::from_millis(20),
        statsd_udp_packet_size: PACKET,
        ..test_config()
    })
    .await;
    let mut producer = server.v2_client().await;
    for _ in 0..5 {
        producer.publish("down", b"m").await;
    }
    let sock = UdpSocket::bind(addr).await.expect("rebind the port");
    let mut got = Received::default();
    got.until(&sock, "pushes once statsd is up", |r| {
        r.lines.keys().any(|k| k.ends_with(".topic.down.depth"))
    })
    .await;
    producer.publish("down", b"m").await;
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn statsd_flags_take_nsqds_syntax() {
    use clap::Parser;
    let cli = nsq_gateway::cli::Cli::try_parse_from([
        "nsq-gateway",
        "--statsd-address=127.0.0.1:8125",
        "--statsd-prefix",
        "nsqd.%s",
        "--statsd-interval=10s",
        "--statsd-udp-packet-size",
        "1400",
        "--statsd-exclude-ephemeral",
        "--statsd-mem-stats=false",
    ])
    .expect("parses");
    let mut c = Config::default();
    cli.settings.apply(&mut c);
    assert_eq!(c.statsd_address, "127.0.0.1:8125");
    assert_eq!(c.statsd_prefix, "nsqd.%s");
    assert_eq!(c.statsd_interval, Duration::from_secs(10));
    assert_eq!(c.statsd_udp_packet_size, 1400);
    assert!(c.statsd_exclude_ephemeral);
    assert!(!c.statsd_mem_stats);
    c.validate("flags").expect("valid");
    let d = Config::default();
    assert_eq!(
        (
            d.statsd_prefix.as_str(),
            d.statsd_interval,
            d.statsd_udp_packet_size,
            d.statsd_mem_stats
        ),
        ("nsq.%s", Duration::from_secs(60), 508, true)
    );
    for bad in [
        Config {
            statsd_address: "nohost".into(),
            ..Config::default()
        },
        Config {
            statsd_udp_packet_size: 10,
            ..Config::default()
        },
    ] {
        assert!(bad.validate("x").is_err());
    }
}
