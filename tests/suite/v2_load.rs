//! Many producers and consumers at once over raw V2: 20 producers publish
//! 5,000 messages each with MPUB while 4 consumers share one channel; exactly
//! the 100,000 bodies arrive, each once, and after the FINs nothing is left in
//! flight or queued.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use common::{
    TestServer, mpub_cmd, parse_msg, read_frame_skip_heartbeats, read_frame_within, test_config,
};

const PRODUCERS: usize = 20;
const PER_PRODUCER: usize = 5_000;
const BATCH: usize = 100;
const CONSUMERS: usize = 4;
const TOTAL: usize = PRODUCERS * PER_PRODUCER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_producers_and_four_consumers_deliver_every_body_exactly_once() {
    let srv = Arc::new(TestServer::start(test_config()).await);
    srv.broker()
        .topic("load")
        .expect("topic")
        .channel("c")
        .expect("channel");
    let received = Arc::new(AtomicUsize::new(0));

    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (srv, received) = (srv.clone(), received.clone());
            tokio::spawn(async move {
                let mut s = srv.v2().await;
                s.write_all(b"SUB load c\nRDY 300\n").await.expect("sub");
                assert_eq!(
                    read_frame_within(&mut s, Duration::from_secs(5)).await.1,
                    b"OK"
                );
                let mut got = Vec::new();
                while received.load(Ordering::SeqCst) < TOTAL {
                    let frame = tokio::time::timeout(
                        Duration::from_millis(200),
                        read_frame_skip_heartbeats(&mut s),
                    )
                    .await;
                    let Ok(frame) = frame else { continue };
                    let (kind, data) = frame.expect("frame");
                    assert_eq!(kind, 2, "{}", String::from_utf8_lossy(&data));
                    let m = parse_msg(&data);
                    let mut fin = b"FIN ".to_vec();
                    fin.extend_from_slice(&m.id);
                    fin.push(b'\n');
                    s.write_all(&fin).await.expect("fin");
                    got.push(m.body);
                    received.fetch_add(1, Ordering::SeqCst);
                }
                // CLS is answered after every FIN before it was processed.
                s.write_all(b"CLS\n").await.expect("cls");
                loop {
                    let (kind, data) = read_frame_within(&mut s, Duration::from_secs(10)).await;
                    assert_ne!(
                        kind,
                        2,
                        "a message after all were received: {:?}",
                        String::from_utf8_lossy(&data)
                    );
                    if data == b"CLOSE_WAIT" {
                        break;
                    }
                }
                got
            })
        })
        .collect();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut s = srv.v2().await;
                let bodies: Vec<Vec<u8>> = (0..PER_PRODUCER)
                    .map(|i| format!("p{p:02}-{i:05}").into_bytes())
                    .collect();
                for batch in bodies.chunks(BATCH) {
                    s.write_all(&mpub_cmd("load", batch)).await.expect("mpub");
                    let (kind, data) = read_frame_within(&mut s, Duration::from_secs(10)).await;
                    assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    let mut all = Vec::with_capacity(TOTAL);
    for c in consumers {
        let got = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("consumer in time")
            .expect("consumer");
        assert!(!got.is_empty(), "every consumer got a share");
        all.extend(got);
    }
    assert_eq!(all.len(), TOTAL, "each body once");
    let unique: HashSet<Vec<u8>> = all.into_iter().collect();
    let expected: HashSet<Vec<u8>> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |i| format!("p{p:02}-{i:05}").into_bytes()))
        .collect();
    assert_eq!(unique, expected);
    let st = srv
        .broker()
        .existing_topic("load")
        .expect("t")
        .existing_channel("c")
        .expect("c")
        .stats();
    assert_eq!((st.depth, st.in_flight_count, st.deferred_count), (0, 0, 0));
    assert_eq!(st.message_count, TOTAL as u64);
    assert_eq!(
        (st.requeue_count, st.timeout_count),
        (0, 0),
        "no redelivery was needed"
    );
}
