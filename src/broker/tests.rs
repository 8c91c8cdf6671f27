//! Unit tests of the core: fan-out, RDY gating, FIN/REQ/TOUCH, timeouts,
//! deferral, pause, ephemeral cleanup and every queue limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::*;

fn broker(mem: usize) -> Broker {
    Broker::new(BrokerOptions {
        mem_queue_size: mem,
        msg_timeout: Duration::from_secs(60),
        ..BrokerOptions::default()
    })
}

fn client(b: &Broker) -> Arc<ClientInfo> {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal");
    Arc::new(ClientInfo::new(b.next_client_id(), addr, "test"))
}

fn take_all(c: &mut Consumer) -> Vec<Message> {
    let mut out = Vec::new();
    c.take_messages(usize::MAX, usize::MAX, &mut out);
    out
}

fn bodies(msgs: &[Message]) -> Vec<&[u8]> {
    msgs.iter().map(|m| m.body.as_ref()).collect()
}

#[test]
fn topic_fans_out_to_every_channel_sharing_the_body() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let c1 = t.channel("a").expect("a");
    let c2 = t.channel("b").expect("b");
    let body = Bytes::from_static(b"hello");
    t.publish(body.clone()).expect("publish");
    let mut k1 = c1.subscribe(client(&b)).expect("sub");
    let mut k2 = c2.subscribe(client(&b)).expect("sub");
    k1.set_ready(10);
    k2.set_ready(10);
    let m1 = take_all(&mut k1);
    let m2 = take_all(&mut k2);
    assert_eq!(bodies(&m1), vec![b"hello".as_ref()]);
    assert_eq!(m1[0].id, m2[0].id);
    assert_eq!(m1[0].attempts, 1);
    assert_eq!(
        m1[0].body.as_ptr(),
        m2[0].body.as_ptr(),
        "body is shared, not copied"
    );
}

#[test]
fn rdy_gates_delivery() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    for i in 0..5 {
        t.publish(Bytes::from(format!("m{i}"))).expect("publish");
    }
    let mut k = ch.subscribe(client(&b)).expect("sub");
    assert!(!k.is_ready());
    assert!(take_all(&mut k).is_empty());
    k.set_ready(2);
    let got = take_all(&mut k);
    assert_eq!(got.len(), 2);
    assert!(!k.is_ready());
    k.finish(&got[0].id).expect("fin");
    assert_eq!(take_all(&mut k).len(), 1);
    assert_eq!(ch.depth(), 2);
}

#[test]
fn byte_budget_limits_a_batch_but_takes_at_least_one() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    for _ in 0..4 {
        t.publish(Bytes::from(vec![0u8; 100])).expect("publish");
    }
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(10);
    let mut out = Vec::new();
    assert_eq!(k.take_messages(10, 1, &mut out), 1);
    assert_eq!(k.take_messages(10, 150, &mut out), 2);
}

#[test]
fn fin_twice_and_unknown_ids_fail() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"x")).expect("publish");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    let m = take_all(&mut k).remove(0);
    k.finish(&m.id).expect("fin");
    assert_eq!(k.finish(&m.id), Err(BrokerError::MessageNotInFlight));
    assert_eq!(k.touch(&m.id), Err(BrokerError::MessageNotInFlight));
    assert_eq!(
        k.requeue(&m.id, Duration::ZERO),
        Err(BrokerError::MessageNotInFlight)
    );
    let stats = ch.stats();
    assert_eq!(stats.clients[0].finish_count, 1);
    assert_eq!(stats.in_flight_count, 0);
}

#[test]
fn requeue_redelivers_with_more_attempts() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"x")).expect("publish");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    let m = take_all(&mut k).remove(0);
    k.requeue(&m.id, Duration::ZERO).expect("req");
    let again = take_all(&mut k).remove(0);
    assert_eq!(again.id, m.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(ch.stats().requeue_count, 1);
}

#[tokio::test(start_paused = true)]
async fn requeue_with_delay_waits() {
    let b = broker(100);
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"x")).expect("publish");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    let m = take_all(&mut k).remove(0);
    k.requeue(&m.id, Duration::from_secs(5)).expect("req");
    assert_eq!(ch.stats().deferred_count, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(take_all(&mut k).is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tokio::task::yield_now().await;
    let again = take_all(&mut k);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn deferred_publish_waits() {
    let b = broker(100);
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish_deferred(Bytes::from_static(b"later"), Duration::from_secs(2))
        .expect("dpub");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    assert!(take_all(&mut k).is_empty());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tokio::task::yield_now().await;
    assert_eq!(bodies(&take_all(&mut k)), vec![b"later".as_ref()]);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn timeouts_redeliver_and_touch_extends() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"a")).expect("publish");
    t.publish(Bytes::from_static(b"b")).expect("publish");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_msg_timeout(Duration::from_secs(10));
    k.set_ready(2);
    let got = take_all(&mut k);
    let deadline = k.next_timeout().expect("deadline");
    tokio::time::sleep(Duration::from_secs(6)).await;
    k.touch(&got[1].id).expect("touch");
    tokio::time::sleep_until(deadline).await;
    assert_eq!(k.expire_timeouts(tokio::time::Instant::now()), 1);
    assert_eq!(ch.stats().timeout_count, 1);
    let again = take_all(&mut k);
    assert_eq!(bodies(&again), vec![b"a".as_ref()]);
    assert_eq!(again[0].attempts, 2);
    // "b" was touched at 6s, so it expires at 16s, not 10s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(k.expire_timeouts(tokio::time::Instant::now()), 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(k.expire_timeouts(tokio::time::Instant::now()), 1);
}

#[test]
fn full_queue_rejects_and_mpub_is_atomic() {
    let b = broker(3);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"1")).expect("publish");
    let batch = vec![
        Bytes::from_static(b"2"),
        Bytes::from_static(b"3"),
        Bytes::from_static(b"4"),
    ];
    assert_eq!(t.publish_many(batch), Err(BrokerError::QueueFull));
    assert_eq!(ch.depth(), 1, "nothing of a refused MPUB is kept");
    t.publish_many(vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")])
        .expect("fits");
    assert_eq!(
        t.publish(Bytes::from_static(b"4")),
        Err(BrokerError::QueueFull)
    );
    // A topic without channels is bounded too.
    let lonely = b.topic("lonely").expect("topic");
    for _ in 0..3 {
        lonely.publish(Bytes::from_static(b"x")).expect("publish");
    }
    assert!(lonely.publish(Bytes::from_static(b"x")).is_err());
}

#[test]
fn messages_wait_in_the_topic_until_a_channel_exists() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    t.publish(Bytes::from_static(b"early")).expect("publish");
    assert_eq!(t.depth(), 1);
    let ch = t.channel("c").expect("ch");
    assert_eq!(t.depth(), 0);
    assert_eq!(ch.depth(), 1);
}

#[test]
fn pause_stops_delivery_until_unpause() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(10);
    ch.pause();
    t.publish(Bytes::from_static(b"x")).expect("publish");
    assert!(take_all(&mut k).is_empty());
    ch.unpause();
    assert_eq!(take_all(&mut k).len(), 1);
    t.pause();
    t.publish(Bytes::from_static(b"y")).expect("publish");
    assert_eq!(ch.depth(), 0);
    assert_eq!(t.depth(), 1);
    t.unpause();
    assert_eq!(take_all(&mut k).len(), 1);
}

#[test]
fn dropping_a_consumer_requeues_in_flight() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    t.publish(Bytes::from_static(b"x")).expect("publish");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    assert_eq!(take_all(&mut k).len(), 1);
    assert_eq!(ch.depth(), 0);
    drop(k);
    assert_eq!(ch.depth(), 1);
    assert_eq!(ch.stats().in_flight_count, 0);
    assert_eq!(ch.stats().client_count, 0);
}

#[test]
fn ephemeral_channel_and_topic_vanish_with_last_consumer() {
    let b = broker(100);
    let t = b.topic("e#ephemeral").expect("topic");
    let ch = t.channel("c#ephemeral").expect("ch");
    let k1 = ch.subscribe(client(&b)).expect("sub");
    let k2 = ch.subscribe(client(&b)).expect("sub");
    drop(k1);
    assert!(t.existing_channel("c#ephemeral").is_some());
    drop(k2);
    assert!(t.existing_channel("c#ephemeral").is_none());
    assert!(b.existing_topic("e#ephemeral").is_none());
    // A durable channel on a durable topic stays.
    let t2 = b.topic("d").expect("topic");
    let k = t2
        .channel("c")
        .expect("ch")
        .subscribe(client(&b))
        .expect("sub");
    drop(k);
    assert!(t2.existing_channel("c").is_some());
}

#[test]
fn deleting_a_channel_closes_its_consumers() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    let k = ch.subscribe(client(&b)).expect("sub");
    t.delete_channel("c").expect("delete");
    assert!(k.is_closed());
    assert_eq!(t.delete_channel("c"), Err(BrokerError::ChannelNotFound));
    assert!(ch.subscribe(client(&b)).is_err());
    b.delete_topic("t").expect("delete topic");
    assert_eq!(b.delete_topic("t"), Err(BrokerError::TopicNotFound));
    assert_eq!(
        t.publish(Bytes::from_static(b"x")),
        Err(BrokerError::Exiting)
    );
}

#[test]
fn max_channel_consumers_is_enforced() {
    let b = Broker::new(BrokerOptions {
        max_channel_consumers: 1,
        ..BrokerOptions::default()
    });
    let ch = b.topic("t").expect("t").channel("c").expect("c");
    let _k = ch.subscribe(client(&b)).expect("first");
    assert_eq!(
        ch.subscribe(client(&b)).err(),
        Some(BrokerError::TooManyConsumers)
    );
}

#[test]
fn names_are_validated() {
    let b = broker(10);
    assert!(matches!(
        b.topic("bad name"),
        Err(BrokerError::InvalidTopicName(_))
    ));
    let t = b.topic("ok").expect("topic");
    assert!(matches!(
        t.channel(""),
        Err(BrokerError::InvalidChannelName(_))
    ));
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_by_publish() {
    let b = broker(100);
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("ch");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(1);
    let t2 = t.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        t2.publish(Bytes::from_static(b"wake")).expect("publish");
    });
    tokio::time::timeout(Duration::from_secs(5), k.wait())
        .await
        .expect("woken");
    assert_eq!(take_all(&mut k).len(), 1);
}

#[test]
fn deferred_messages_are_bounded_per_channel() {
    let b = broker(3);
    let limit = b.options().max_deferred();
    assert_eq!(limit, 10_000, "max(mem_queue_size, 10000)");
    let t = b.topic("t").expect("topic");
    let ch = t.channel("c").expect("channel");
    for _ in 0..limit {
        t.publish_deferred(Bytes::from_static(b"d"), Duration::from_secs(60))
            .expect("within the bound");
    }
    assert_eq!(
        t.publish_deferred(Bytes::from_static(b"d"), Duration::from_secs(60)),
        Err(BrokerError::QueueFull)
    );
    assert_eq!(ch.stats().deferred_count, limit as u64);
    // Immediate publishes are bounded separately, by mem_queue_size.
    t.publish(Bytes::from_static(b"now"))
        .expect("ready queue has room");
}
