//! A plugin client that stops reading is dropped after the write deadline
//! (`client_timeout`), and the messages it held in flight go back to the
//! channel, so a stalled reader can hold neither its task nor messages.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use nsq_gateway::plugin::{PluginConfig, PluginLimits};

#[tokio::test]
async fn a_line_client_that_stops_reading_is_dropped_and_its_messages_requeued() {
    let mut cfg = common::test_config();
    cfg.client_timeout = Duration::from_secs(1);
    cfg.plugins = vec![PluginConfig {
        name: "line".into(),
        component: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/plugins/line.wasm"),
        magics: vec!["LINE".into()],
        config: Default::default(),
        limits: PluginLimits {
            max_connections: 16,
            ..PluginLimits::default()
        },
        override_v2: false,
    }];
    let srv = common::start_server(cfg).await;
    let topic = srv.broker().topic("slow").expect("topic");
    let ch = topic.channel("c").expect("channel");
    // 32 MB of deliveries: far more than the socket buffers hold.
    let body = Bytes::from(vec![b'a'; 64 * 1024]);
    for _ in 0..500 {
        topic.publish(body.clone()).expect("publish");
    }
    let mut s = TcpStream::connect(srv.tcp_addr).await.expect("connect");
    s.write_all(b"LINE\nSUB slow c manual\nRDY 2500\n")
        .await
        .expect("sub");
    // The client never reads. Deliveries stall once the buffers are full.
    let start = Instant::now();
    let mut saw_in_flight = false;
    loop {
        let st = ch.stats();
        saw_in_flight |= st.in_flight_count > 0;
        if saw_in_flight && st.client_count == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "stalled client still connected: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = ch.stats();
    assert_eq!(st.in_flight_count, 0, "in-flight messages were requeued");
    assert_eq!(st.depth, 500, "nothing lost, nothing finished");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "dropped before the deadline"
    );
    drop(s);
}
