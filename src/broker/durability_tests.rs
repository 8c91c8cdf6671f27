//! Durability tests of the core: spill-over to disk, restart with queued,
//! deferred and paused state intact, `mem_queue_size = 0`, disk-full errors
//! with health reporting, and ephemeral names never touching disk.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::diskqueue::DiskQueueOptions;
use super::*;

fn data_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nsqgw-dur-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn opts(dir: &Path, mem: usize) -> BrokerOptions {
    BrokerOptions {
        mem_queue_size: mem,
        data_path: Some(dir.to_path_buf()),
        disk: DiskQueueOptions {
            max_bytes_per_file: 64 * 1024,
            ..DiskQueueOptions::default()
        },
        ..BrokerOptions::default()
    }
}

fn client(b: &Broker) -> Arc<ClientInfo> {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal");
    Arc::new(ClientInfo::new(b.next_client_id(), addr, "test"))
}

/// Takes and FINs everything the channel has right now.
fn drain(b: &Broker, topic: &str, channel: &str) -> Vec<Bytes> {
    let ch = b
        .topic(topic)
        .expect("topic")
        .channel(channel)
        .expect("channel");
    let mut k = ch.subscribe(client(b)).expect("sub");
    k.set_ready(1_000_000);
    let mut got = Vec::new();
    loop {
        let mut out = Vec::new();
        if k.take_messages(1000, usize::MAX, &mut out) == 0 {
            break;
        }
        for m in out {
            // A duplicate after a crash may share a batch with its twin;
            // the second FIN of the id then finds nothing in flight.
            let _ = k.finish(&m.id);
            got.push(m.body);
        }
    }
    got
}

#[test]
fn overflow_goes_to_disk_and_everything_survives_a_restart() {
    let dir = data_dir("restart");
    let b = Broker::open(opts(&dir, 50)).expect("open");
    let mut sent = HashSet::new();
    for t in ["orders", "events"] {
        let topic = b.topic(t).expect("topic");
        topic.channel("a").expect("a");
        topic.channel("b").expect("b");
        for i in 0..2000 {
            let body = format!("{t}-{i}");
            sent.insert(body.clone());
            topic.publish(Bytes::from(body)).expect("publish");
        }
        let st = topic.stats();
        assert_eq!(st.channels[0].depth, 2000);
        assert_eq!(
            st.channels[0].backend_depth, 1950,
            "beyond mem_queue_size on disk"
        );
    }
    // Part of one channel is consumed before the restart.
    let ch = b.topic("orders").expect("t").channel("a").expect("c");
    let mut k = ch.subscribe(client(&b)).expect("sub");
    k.set_ready(100);
    let mut first = Vec::new();
    k.take_messages(100, usize::MAX, &mut first);
    for m in &first[..60] {
        k.finish(&m.id).expect("fin");
    }
    drop(k); // 40 in flight go back
    b.persist();
    drop(ch);
    drop(b);

    let b = Broker::open(opts(&dir, 50)).expect("reopen");
    for t in ["orders", "events"] {
        for c in ["a", "b"] {
            let got = drain(&b, t, c);
            let expected = if (t, c) == ("orders", "a") {
                1940
            } else {
                2000
            };
            let unique: HashSet<Bytes> = got.iter().cloned().collect();
            assert_eq!(got.len(), expected, "{t}/{c}");
            assert_eq!(unique.len(), expected, "{t}/{c}: no duplicates");
            assert!(
                got.iter()
                    .all(|g| sent.contains(std::str::from_utf8(g).expect("utf8")))
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paused_state_and_channels_survive_a_restart() {
    let dir = data_dir("meta");
    {
        let b = Broker::open(opts(&dir, 10)).expect("open");
        let t = b.topic("t").expect("t");
        t.channel("c1").expect("c1").pause();
        t.channel("c2").expect("c2");
        b.topic("p").expect("p").pause();
        b.topic("gone").expect("gone");
        b.delete_topic("gone").expect("delete");
        let e = b.topic("e#ephemeral").expect("e");
        e.channel("x").expect("x");
        t.channel("x#ephemeral").expect("ephemeral channel");
    }
    let b = Broker::open(opts(&dir, 10)).expect("reopen");
    let names: Vec<String> = b.topics().iter().map(|t| t.name().to_owned()).collect();
    assert_eq!(
        names,
        vec!["p", "t"],
        "ephemeral and deleted topics are not restored"
    );
    let t = b.existing_topic("t").expect("t");
    let chans: Vec<String> = t.channels().iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(chans, vec!["c1", "c2"]);
    assert!(t.existing_channel("c1").expect("c1").is_paused());
    assert!(!t.existing_channel("c2").expect("c2").is_paused());
    assert!(b.existing_topic("p").expect("p").is_paused());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn deferred_messages_keep_their_due_time_across_a_restart() {
    let dir = data_dir("deferred");
    {
        let b = Broker::open(opts(&dir, 10)).expect("open");
        let t = b.topic("t").expect("t");
        t.channel("c").expect("c");
        t.publish_deferred(Bytes::from_static(b"later"), Duration::from_secs(30))
            .expect("dpub");
        assert_eq!(t.stats().channels[0].deferred_count, 1);
        b.persist();
    }
    let b = Broker::open(opts(&dir, 10)).expect("reopen");
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let ch = b
        .existing_topic("t")
        .expect("t")
        .existing_channel("c")
        .expect("c");
    assert_eq!(ch.stats().deferred_count, 1);
    assert!(drain(&b, "t", "c").is_empty(), "not due yet");
    // Paused tokio time does not move the wall clock, so the remaining delay
    // is still about 30s.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(drain(&b, "t", "c").is_empty(), "not due after 20s");
    tokio::time::sleep(Duration::from_secs(11)).await;
    tokio::task::yield_now().await;
    assert_eq!(drain(&b, "t", "c"), vec![Bytes::from_static(b"later")]);
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mem_queue_size_zero_sends_everything_through_disk() {
    let dir = data_dir("zero");
    let b = Broker::open(opts(&dir, 0)).expect("open");
    let t = b.topic("t").expect("t");
    t.channel("c").expect("c");
    t.publish_many((0..100).map(|i| Bytes::from(format!("m{i}"))).collect())
        .expect("mpub");
    assert_eq!(t.stats().channels[0].backend_depth, 100);
    let got = drain(&b, "t", "c");
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], Bytes::from_static(b"m0"), "FIFO");
    assert_eq!(got[99], Bytes::from_static(b"m99"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_topic_without_channels_spills_and_hands_everything_to_its_first_channel() {
    let dir = data_dir("pending");
    let b = Broker::open(opts(&dir, 5)).expect("open");
    let t = b.topic("t").expect("t");
    for i in 0..40 {
        t.publish(Bytes::from(format!("m{i}"))).expect("publish");
    }
    assert_eq!(t.depth(), 40);
    assert_eq!(t.stats().backend_depth, 35);
    t.channel("c").expect("c");
    assert_eq!(t.depth(), 0);
    assert_eq!(drain(&b, "t", "c").len(), 40);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disk_full_is_a_clean_error_and_health_recovers() {
    let dir = data_dir("full");
    let mut o = opts(&dir, 2);
    o.disk.max_total_bytes = Some(4096);
    // One record per segment, so consumed space is given back.
    o.disk.max_bytes_per_file = 1100;
    let b = Broker::open(o).expect("open");
    let t = b.topic("t").expect("t");
    t.channel("c").expect("c");
    let body = Bytes::from(vec![b'x'; 1000]);
    let mut failed = None;
    for i in 0..20 {
        if let Err(e) = t.publish(body.clone()) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("the cap is hit");
    assert!(i >= 2, "memory part accepted first");
    assert!(matches!(e, BrokerError::Disk(_)), "{e:?}");
    let health = b.health().expect_err("unhealthy");
    assert!(health.contains("t:c"), "{health}");
    // Consuming frees space; publishes that reach the disk succeed again and
    // health is back (as nsqd, a successful disk write clears it).
    assert!(!drain(&b, "t", "c").is_empty());
    for _ in 0..3 {
        t.publish(body.clone())
            .expect("publish after space was freed");
    }
    assert_eq!(t.stats().channels[0].backend_depth, 1);
    assert_eq!(b.health(), Ok(()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ephemeral_names_never_touch_disk_and_deleted_topics_leave_no_files() {
    let dir = data_dir("eph");
    let b = Broker::open(opts(&dir, 1)).expect("open");
    let e = b.topic("e#ephemeral").expect("e");
    let ch = e.channel("c").expect("c");
    e.publish(Bytes::from_static(b"1")).expect("fits in memory");
    assert_eq!(
        e.publish(Bytes::from_static(b"2")),
        Err(BrokerError::QueueFull)
    );
    drop(ch);
    let t = b.topic("t").expect("t");
    t.channel("c").expect("c");
    for _ in 0..10 {
        t.publish(Bytes::from_static(b"x")).expect("publish");
    }
    b.delete_topic("t").expect("delete");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != metadata::METADATA_FILE)
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_large_backlog_is_handed_to_a_new_channel_in_chunks_without_blocking() {
    let dir = data_dir("backlog");
    let b = Broker::open(opts(&dir, 20_000)).expect("open");
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let t = b.topic("t").expect("t");
    for chunk in (0..50_000u32).collect::<Vec<_>>().chunks(1000) {
        t.publish_many(chunk.iter().map(|i| Bytes::from(i.to_string())).collect())
            .expect("mpub");
    }
    assert_eq!(t.depth(), 50_000);
    let start = std::time::Instant::now();
    let ch = t.channel("c").expect("c");
    let took = start.elapsed();
    // One chunk moved synchronously, the rest later.
    assert!(
        ch.depth() <= 2048,
        "handed over synchronously: {}",
        ch.depth()
    );
    assert!(
        took < Duration::from_millis(50),
        "channel creation took {took:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.depth() > 0 {
        assert!(std::time::Instant::now() < deadline, "backlog not drained");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = drain(&b, "t", "c");
    assert_eq!(got.len(), 50_000);
    let unique: HashSet<Bytes> = got.into_iter().collect();
    assert_eq!(unique.len(), 50_000);
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_topic_creations_is_cheap_and_metadata_catches_up() {
    let dir = data_dir("burst");
    let b = Broker::open(opts(&dir, 10)).expect("open");
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let start = std::time::Instant::now();
    for i in 0..2000 {
        b.topic(&format!("t{i}")).expect("topic");
    }
    let took = start.elapsed();
    // Each creation only marks the metadata dirty; no fsync on this path.
    assert!(
        took < Duration::from_secs(2),
        "2000 creations took {took:?}"
    );
    let store = metadata::MetadataStore::new(&dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = store.load().ok().flatten().map_or(0, |m| m.topics.len());
        if n == 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metadata has {n} topics"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Crash model of the tests below: every disk queue is fsynced with its
/// metadata as of this moment (the committed read positions, as the periodic
/// sync would write them: the worst case for a read position), then the
/// broker and whatever the test still holds are leaked, so nothing in
/// memory is written out and no destructor runs, as in a SIGKILL.
fn crash(b: Broker, leak: impl Sized) {
    b.sync_disks();
    std::mem::forget(leak);
    std::mem::forget(b);
}

fn bodies(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("m{i}"))).collect()
}

/// How many of `sent` are missing from `got`, and how many extra copies
/// `got` has.
fn missing_and_duplicates(sent: &[Bytes], got: &[Bytes]) -> (usize, usize) {
    let unique: HashSet<&Bytes> = got.iter().collect();
    let missing = sent.iter().filter(|b| !unique.contains(b)).count();
    (missing, got.len() - unique.len())
}

#[test]
fn a_crash_at_any_step_of_the_topic_to_channels_move_loses_nothing() {
    use super::topic::DrainStep;
    let steps = [
        None,
        Some(DrainStep::Popped),
        Some(DrainStep::FirstChannel),
        Some(DrainStep::AllChannels),
        Some(DrainStep::Acked),
    ];
    for step in steps {
        let dir = data_dir(&format!("drain-crash-{}", step.map_or(0, |s| s as u8)));
        let sent = bodies(300);
        {
            let b = Broker::open(opts(&dir, 0)).expect("open");
            let t = b.topic("t").expect("t");
            t.pause();
            t.channel("a").expect("a");
            t.channel("b").expect("b");
            t.publish_many(sent.clone()).expect("mpub");
            assert_eq!(t.stats().backend_depth, 300, "held on the topic's disk");
            if let Some(s) = step {
                t.crash_at
                    .store(s as u8, std::sync::atomic::Ordering::Relaxed);
            }
            t.unpause(); // moves everything in one step, or crashes there
            crash(b, t);
        }
        let b = Broker::open(opts(&dir, 0)).expect("reopen");
        for c in ["a", "b"] {
            let got = drain(&b, "t", c);
            let (missing, dups) = missing_and_duplicates(&sent, &got);
            assert_eq!(missing, 0, "crash at {step:?}: channel {c}");
            if step.is_none() || step == Some(DrainStep::Popped) {
                assert_eq!(dups, 0, "crash at {step:?}: channel {c}");
            }
        }
        assert_eq!(b.existing_topic("t").expect("t").depth(), 0);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_crash_redelivers_every_message_read_from_disk_and_not_finished() {
    let dir = data_dir("inflight-crash");
    let sent = bodies(100);
    {
        let b = Broker::open(opts(&dir, 0)).expect("open");
        let t = b.topic("t").expect("t");
        let ch = t.channel("c").expect("c");
        t.publish_many(sent.clone()).expect("mpub");
        let mut k = ch.subscribe(client(&b)).expect("sub");
        k.set_ready(100);
        let mut out = Vec::new();
        assert_eq!(k.take_messages(100, usize::MAX, &mut out), 100);
        // Even ones finished; 1, 3, .. 19 requeued (now and deferred), the
        // rest still in flight when the process dies.
        for (i, m) in out.iter().enumerate() {
            match i {
                _ if i % 2 == 0 => k.finish(&m.id).expect("fin"),
                1..=9 => k.requeue(&m.id, Duration::ZERO).expect("req"),
                11..=19 => k.requeue(&m.id, Duration::from_secs(60)).expect("req"),
                _ => {}
            }
        }
        crash(b, (k, ch, t));
    }
    let b = Broker::open(opts(&dir, 0)).expect("reopen");
    let got = drain(&b, "t", "c");
    let odd: Vec<Bytes> = sent.iter().skip(1).step_by(2).cloned().collect();
    let (missing, _) = missing_and_duplicates(&odd, &got);
    assert_eq!(missing, 0, "every unfinished message comes back");
    // Finished ones come back too (at least once): from the oldest
    // unfinished one on, and the FINs of this consumer had not been acked
    // on the channel yet (that happens with its next take, or in bulk).
    assert!(got.len() <= 100, "{}", got.len());
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_graceful_restart_after_requeues_delivers_each_message_once() {
    let dir = data_dir("requeue-graceful");
    let sent = bodies(50);
    {
        let b = Broker::open(opts(&dir, 0)).expect("open");
        let t = b.topic("t").expect("t");
        let ch = t.channel("c").expect("c");
        t.publish_many(sent.clone()).expect("mpub");
        let mut k = ch.subscribe(client(&b)).expect("sub");
        k.set_ready(50);
        let mut out = Vec::new();
        k.take_messages(20, usize::MAX, &mut out);
        for m in &out[..10] {
            k.finish(&m.id).expect("fin");
        }
        for m in &out[10..15] {
            k.requeue(&m.id, Duration::ZERO).expect("req");
        }
        drop(k); // the other 5 in flight go back too
        b.persist();
    }
    let b = Broker::open(opts(&dir, 0)).expect("reopen");
    let got = drain(&b, "t", "c");
    let (missing, dups) = missing_and_duplicates(&sent[10..], &got);
    assert_eq!((missing, dups, got.len()), (0, 0, 40));
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn with_mem_queue_size_zero_deferred_messages_survive_a_crash_with_their_due_time() {
    let dir = data_dir("deferred-crash");
    {
        let b = Broker::open(opts(&dir, 0)).expect("open");
        let t = b.topic("t").expect("t");
        let ch = t.channel("c").expect("c");
        t.publish_deferred(Bytes::from_static(b"dpub"), Duration::from_secs(30))
            .expect("dpub");
        t.publish(Bytes::from_static(b"req")).expect("pub");
        let mut k = ch.subscribe(client(&b)).expect("sub");
        k.set_ready(1);
        let mut out = Vec::new();
        assert_eq!(k.take_messages(1, usize::MAX, &mut out), 1);
        k.requeue(&out[0].id, Duration::from_secs(40)).expect("req");
        assert_eq!(ch.stats().deferred_count, 2);
        crash(b, (k, ch, t));
    }
    let b = Broker::open(opts(&dir, 0)).expect("reopen");
    let shutdown = CancellationToken::new();
    tokio::spawn(b.clone().run_scanner(shutdown.clone()));
    let ch = b
        .existing_topic("t")
        .expect("t")
        .existing_channel("c")
        .expect("c");
    assert_eq!(ch.stats().deferred_count, 2, "both back from the log");
    assert!(
        drain(&b, "t", "c").is_empty(),
        "not due yet, nor redelivered"
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    assert_eq!(drain(&b, "t", "c"), vec![Bytes::from_static(b"dpub")]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(drain(&b, "t", "c"), vec![Bytes::from_static(b"req")]);
    // Once due and moved, they are gone from the log: a graceful restart
    // brings nothing back.
    b.persist();
    shutdown.cancel();
    drop(ch);
    drop(b);
    let b = Broker::open(opts(&dir, 0)).expect("reopen again");
    let ch = b
        .existing_topic("t")
        .expect("t")
        .existing_channel("c")
        .expect("c");
    assert_eq!(ch.stats().deferred_count, 0);
    assert!(drain(&b, "t", "c").is_empty());
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
