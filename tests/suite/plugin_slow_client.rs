//! A plugin client that stops reading is dropped after the write deadline
//! (`client_timeout`), and the messages it held in flight go back to the
//! channel, so a stalled reader can hold neither its task nor messages.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use common::plugins::line_plugin;
use common::{TestServer, eventually};

#[tokio::test]
async fn a_line_client_that_stops_reading_is_dropped_and_its_messages_requeued() {
    let mut cfg = common::test_config();
    cfg.client_timeout = Duration::from_secs(1);
    let srv = TestServer::builder()
        .config(cfg)
        .plugin(line_plugin())
        .start()
        .await;
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
    eventually(
        Duration::from_secs(20),
        "stalled client disconnected",
        async || {
            let st = ch.stats();
            saw_in_flight |= st.in_flight_count > 0;
            (saw_in_flight && st.client_count == 0).then_some(())
        },
    )
    .await;
    let st = ch.stats();
    assert_eq!(st.in_flight_count, 0, "in-flight messages were requeued");
    assert_eq!(st.depth, 500, "nothing lost, nothing finished");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "dropped before the deadline"
    );
    drop(s);
}
