//! A V2 consumer that keeps talking (NOPs) but stops reading is dropped at
//! the write deadline (its heartbeat interval), and the messages it held in
//! flight go back to the channel: a stalled reader holds neither its task
//! nor messages.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use common::v2::identify_cmd;
use common::{TestServer, eventually, read_frame_within, test_config};

#[tokio::test]
async fn a_v2_consumer_that_stops_reading_is_dropped_and_its_messages_requeued() {
    let srv = TestServer::start(test_config()).await;
    let topic = srv.broker().topic("slow").expect("topic");
    let ch = topic.channel("c").expect("channel");
    // 32 MB of deliveries: far more than the socket buffers hold.
    let body = Bytes::from(vec![b'a'; 64 * 1024]);
    for _ in 0..500 {
        topic.publish(body.clone()).expect("publish");
    }
    let mut s = srv.v2().await;
    s.write_all(&identify_cmd(r#"{"heartbeat_interval":1000}"#))
        .await
        .expect("identify");
    assert_eq!(
        read_frame_within(&mut s, Duration::from_secs(5)).await.1,
        b"OK"
    );
    s.write_all(b"SUB slow c\nRDY 2500\n").await.expect("sub");
    // From here the client never reads, but it keeps sending NOPs, so only
    // the write deadline can end the session, not the read deadline.
    let mut saw_in_flight = false;
    eventually(
        Duration::from_secs(20),
        "stalled reader disconnected",
        async || {
            let _ = s.write_all(b"NOP\n").await;
            let st = ch.stats();
            saw_in_flight |= st.in_flight_count > 0;
            (saw_in_flight && st.client_count == 0).then_some(())
        },
    )
    .await;
    let st = ch.stats();
    assert_eq!(st.in_flight_count, 0, "in-flight messages were requeued");
    assert_eq!(st.depth, 500, "nothing lost, nothing finished");
}
