//! Durability end to end: 100,000 messages across several topics and
//! channels survive a graceful restart and are delivered once each; paused
//! state survives; with `--mem-queue-size=0 --sync-mode=always` every
//! acknowledged publish survives SIGKILL of the real binary.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpStream as StdStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::binary::{BIN, free_port};
use common::v2::{pub_cmd, read_frame_blocking};
use common::wait::{eventually_blocking, poll_blocking};
use common::{TestServer, mpub_cmd, parse_msg, read_frame_within, temp_data_dir, test_config};

/// Subscribes and FINs until `expected` messages arrived; returns the bodies.
async fn consume(
    srv: &TestServer,
    topic: &str,
    channel: &str,
    expected: usize,
    all: bool,
) -> Vec<Vec<u8>> {
    let mut s = srv.v2().await;
    s.write_all(format!("SUB {topic} {channel}\nRDY 2500\n").as_bytes())
        .await
        .expect("sub");
    let (_, ok) = read_frame_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(ok, b"OK");
    let mut got = Vec::with_capacity(expected);
    let mut fins = Vec::new();
    while got.len() < expected {
        let (kind, data) = read_frame_within(&mut s, Duration::from_secs(20)).await;
        assert_eq!(
            kind,
            2,
            "message frame, got {}",
            String::from_utf8_lossy(&data)
        );
        let m = parse_msg(&data);
        fins.extend_from_slice(b"FIN ");
        fins.extend_from_slice(&m.id);
        fins.push(b'\n');
        got.push(m.body);
        if fins.len() > 16 * 1024 || got.len() == expected {
            s.write_all(&fins).await.expect("fin");
            fins.clear();
        }
    }
    // CLS is answered after the FINs before it were processed, so nothing
    // acknowledged is still unread in the socket when the test moves on.
    s.write_all(b"CLS\n").await.expect("cls");
    loop {
        let (kind, data) = read_frame_within(&mut s, Duration::from_secs(10)).await;
        if kind == 0 && data == b"CLOSE_WAIT" {
            break;
        }
    }
    if !all {
        return got;
    }
    // Nothing more arrives: each message came exactly once.
    let extra = tokio::time::timeout(
        Duration::from_millis(300),
        common::read_frame_skip_heartbeats(&mut s),
    )
    .await;
    if let Ok(Ok((kind, data))) = extra {
        assert_ne!(
            kind,
            2,
            "unexpected extra message {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_survive_a_graceful_restart_once_each() {
    let dir = temp_data_dir();
    let mut cfg = test_config();
    cfg.data_path = dir.clone();
    cfg.mem_queue_size = 1000;
    let topics = ["alpha", "beta", "gamma", "delta"];
    let channels = ["c1", "c2"];
    let per_topic = 25_000;
    let srv = TestServer::start(cfg.clone()).await;
    for t in topics {
        for c in channels {
            srv.broker()
                .topic(t)
                .expect("topic")
                .channel(c)
                .expect("channel");
        }
    }
    srv.broker()
        .topic("alpha")
        .expect("t")
        .channel("c2")
        .expect("c")
        .pause();
    let mut expected: HashMap<&str, HashSet<Vec<u8>>> = HashMap::new();
    let mut s = srv.v2().await;
    for t in topics {
        let all: Vec<Vec<u8>> = (0..per_topic)
            .map(|i| format!("{t}-{i:06}").into_bytes())
            .collect();
        for batch in all.chunks(500) {
            s.write_all(&mpub_cmd(t, batch)).await.expect("mpub");
            let (kind, data) = read_frame_within(&mut s, Duration::from_secs(10)).await;
            assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
        }
        expected.insert(t, all.into_iter().collect());
    }
    drop(s);
    // Half of one channel is consumed before the restart.
    let early = consume(&srv, "beta", "c1", per_topic / 2, false).await;
    srv.shutdown().await.expect("clean shutdown");

    let srv = TestServer::start(cfg).await;
    let ch = srv
        .broker()
        .existing_topic("alpha")
        .expect("t")
        .existing_channel("c2")
        .expect("c");
    assert!(ch.is_paused(), "paused state survives");
    ch.unpause();
    let mut total = early.len();
    for t in topics {
        for c in channels {
            let want = if (t, c) == ("beta", "c1") {
                per_topic - early.len()
            } else {
                per_topic
            };
            let mut got = consume(&srv, t, c, want, true).await;
            if (t, c) == ("beta", "c1") {
                got.extend(early.iter().cloned());
            }
            let unique: HashSet<Vec<u8>> = got.iter().cloned().collect();
            assert_eq!(unique.len(), got.len(), "{t}/{c}: duplicates");
            assert_eq!(&unique, &expected[t], "{t}/{c}: wrong set");
            total += want;
        }
    }
    assert_eq!(total, topics.len() * channels.len() * per_topic);
    srv.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

fn spawn_gateway(dir: &Path, tcp: &str, http: &str) -> Child {
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").expect("config");
    Command::new(BIN)
        .args([
            "--config",
            &empty.to_string_lossy(),
            "--data-path",
            &dir.join("data").to_string_lossy(),
        ])
        .args(["--tcp-address", tcp, "--http-address", http])
        .args(["--mem-queue-size", "0", "--sync-mode", "always"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway")
}

fn connect_v2(addr: &str) -> StdStream {
    let mut s = eventually_blocking(Duration::from_secs(30), "gateway started", || {
        StdStream::connect(addr).ok()
    });
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"  V2").expect("magic");
    s
}

#[test]
fn with_sync_always_every_acknowledged_publish_survives_sigkill() {
    let dir = temp_data_dir();
    let tcp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut gw = spawn_gateway(&dir, &tcp, &http);
    // The channel exists before the publishes, so they land in its queue.
    let mut sub = connect_v2(&tcp);
    sub.write_all(b"SUB durable c\n").expect("sub");
    assert_eq!(read_frame_blocking(&mut sub).expect("ok").1, b"OK");
    drop(sub);

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (acked, stop, tcp) = (acked.clone(), stop.clone(), tcp.clone());
        std::thread::spawn(move || {
            let mut s = connect_v2(&tcp);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("msg-{i}");
                if s.write_all(&pub_cmd("durable", body.as_bytes())).is_err() {
                    break;
                }
                match read_frame_blocking(&mut s) {
                    Ok((0, ok)) if ok == b"OK" => acked.lock().expect("lock").push(body),
                    _ => break,
                }
                i += 1;
            }
        })
    };
    // Let it publish for a while, then kill the process mid-stream.
    let _ = poll_blocking(Duration::from_secs(30), || {
        (acked.lock().expect("lock").len() >= 200).then_some(())
    });
    gw.kill().expect("SIGKILL");
    let _ = gw.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    let acked: Vec<String> = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 200,
        "only {} publishes acknowledged",
        acked.len()
    );

    let mut gw = spawn_gateway(&dir, &tcp, &http);
    let mut s = connect_v2(&tcp);
    s.write_all(b"SUB durable c\nRDY 2500\n").expect("sub");
    assert_eq!(read_frame_blocking(&mut s).expect("ok").1, b"OK");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut got = HashSet::new();
    while let Ok((kind, data)) = read_frame_blocking(&mut s) {
        if kind != 2 {
            continue;
        }
        let id = &data[10..26];
        let mut fin = b"FIN ".to_vec();
        fin.extend_from_slice(id);
        fin.push(b'\n');
        let _ = s.write_all(&fin);
        got.insert(String::from_utf8_lossy(&data[26..]).into_owned());
    }
    let missing: Vec<&String> = acked.iter().filter(|b| !got.contains(*b)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let _ = gw.kill();
    let _ = gw.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_full_disk_is_a_clean_publish_error_reported_by_ping_and_the_server_carries_on() {
    let mut cfg = test_config();
    cfg.mem_queue_size = 1;
    cfg.max_bytes_per_file = 1100;
    cfg.max_disk_bytes_per_queue = 4096;
    let srv = TestServer::start(cfg).await;
    srv.broker()
        .topic("full")
        .expect("t")
        .channel("c")
        .expect("c");
    let http = format!("http://{}", srv.http_addr);
    let body = vec![b'x'; 1000];
    let mut s = srv.v2().await;
    let mut err = None;
    for _ in 0..20 {
        s.write_all(&common::pub_cmd("full", &body))
            .await
            .expect("pub");
        let (kind, data) = read_frame_within(&mut s, Duration::from_secs(5)).await;
        if kind == 1 {
            err = Some(String::from_utf8_lossy(&data).into_owned());
            break;
        }
    }
    let err = err.expect("the disk cap is reached");
    assert!(err.starts_with("E_PUB_FAILED"), "{err}");
    // The connection is closed (E_PUB_FAILED is fatal in nsqd), others go on.
    let _ = common::read_to_close(&mut s, Duration::from_secs(5)).await;
    let ping = http_get(&format!("{http}/ping")).await;
    assert_eq!(ping.0, 500, "{ping:?}");
    assert!(ping.1.starts_with("NOK - "), "{ping:?}");
    let stats = http_get(&format!("{http}/stats?format=json")).await;
    assert!(stats.1.contains("\"health\":\"NOK - "), "{}", stats.1);
    let mut other = srv.v2().await;
    other
        .write_all(&common::pub_cmd("elsewhere", b"fine"))
        .await
        .expect("pub");
    assert_eq!(
        read_frame_within(&mut other, Duration::from_secs(5))
            .await
            .1,
        b"OK"
    );
    // Consuming frees the disk; the next publishes reach the disk again and
    // health is restored.
    let got = consume(&srv, "full", "c", 4, false).await;
    assert_eq!(got.len(), 4);
    for _ in 0..3 {
        other
            .write_all(&common::pub_cmd("full", &body))
            .await
            .expect("pub");
        let (kind, data) = read_frame_within(&mut other, Duration::from_secs(5)).await;
        assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
    }
    let ping = http_get(&format!("{http}/ping")).await;
    assert_eq!(ping, (200, "OK".to_owned()));
}

/// A minimal HTTP/1.0 GET: (status, body).
async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).await.expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
