//! The crash loop: the real binary with `--mem-queue-size 0` and the default
//! sync mode (batch) is SIGKILLed five times while a publisher (single
//! publishes, recording every body acknowledged) and a consumer (recording
//! every body, then acknowledging it) run, and restarted on the same data
//! path each time. Afterwards every acknowledged message must have been
//! delivered at least once; duplicates are expected (at least once) and
//! only printed. Once over V2 (PUB, FIN), once through the plugins (a STOMP
//! SEND with a receipt, a RESP BRPOP), as raw bytes over TCP.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::binary::{BIN, free_port};
use crate::common::temp_data_dir;
use crate::common::v2::{pub_cmd, read_frame_blocking as read_frame};
use crate::common::wait::{eventually_blocking, poll_blocking};

const KILLS: usize = 5;

fn spawn_gateway(dir: &Path, tcp: &str, http: &str) -> Child {
    let config = dir.join("gateway.yaml");
    Command::new(BIN)
        .args(["--config", &config.to_string_lossy()])
        .args(["--data-path", &dir.join("data").to_string_lossy()])
        .args(["--tcp-address", tcp, "--http-address", http])
        .args(["--mem-queue-size", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway")
}

/// A connection, or `None` while the gateway is down.
fn try_connect_raw(addr: &str) -> Option<TcpStream> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_nodelay(true).ok()?;
    Some(s)
}

/// A V2 connection, or `None` while the gateway is down.
fn try_connect(addr: &str) -> Option<TcpStream> {
    let mut s = try_connect_raw(addr)?;
    s.write_all(b"  V2").ok()?;
    Some(s)
}

/// Publishes `p-<n>` one PUB at a time until `stop`, reconnecting through
/// the kills; records the bodies answered `OK`.
fn publisher(tcp: String, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = try_connect(&tcp) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let body = format!("p-{n}");
            n += 1;
            if s.write_all(&pub_cmd("crash", body.as_bytes())).is_err() {
                break;
            }
            match read_frame(&mut s) {
                Ok((0, ok)) if ok == b"OK" => acked.lock().expect("lock").push(body),
                Ok((0, _heartbeat)) => {
                    let _ = s.write_all(b"NOP\n");
                }
                _ => break,
            }
        }
    }
}

/// Consumes channel `c` until `stop`, reconnecting through the kills:
/// records each body, then FINs it.
fn consumer(tcp: String, got: Arc<Mutex<HashMap<String, usize>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = try_connect(&tcp) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        if s.write_all(b"SUB crash c\nRDY 200\n").is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            match read_frame(&mut s) {
                Ok((2, data)) if data.len() >= 26 => {
                    let body = String::from_utf8_lossy(&data[26..]).into_owned();
                    *got.lock().expect("lock").entry(body).or_default() += 1;
                    let mut fin = b"FIN ".to_vec();
                    fin.extend_from_slice(&data[10..26]);
                    fin.push(b'\n');
                    if s.write_all(&fin).is_err() {
                        break;
                    }
                }
                Ok((0, data)) if data == b"_heartbeat_" => {
                    let _ = s.write_all(b"NOP\n");
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    }
}

type Publisher = fn(String, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);
type Consumer = fn(String, Arc<Mutex<HashMap<String, usize>>>, Arc<AtomicBool>);

#[test]
fn five_sigkills_during_v2_publish_and_consume_lose_no_acknowledged_message() {
    crash_loop("V2", "", "c", publisher, consumer);
}

#[test]
fn five_sigkills_during_stomp_publish_and_resp_consume_lose_no_acknowledged_message() {
    let root = crate::common::clients::repo_root();
    let plugin = |name: &str, magics: &str| {
        format!(
            "  - name: {name}\n    component: {}\n    magics: {magics}\n    config: {{}}\n",
            root.join(format!("target/plugins/{name}.wasm")).display()
        )
    };
    let config = format!(
        "plugins:\n{}{}",
        plugin("stomp", r#"["CONN", "STOM"]"#),
        plugin("resp", r#"["*1\r\n", "*2\r\n", "*3\r\n"]"#)
    );
    crash_loop(
        "STOMP->RESP",
        &config,
        "resp",
        stomp_publisher,
        resp_consumer,
    );
}

/// Runs the loop (see the module docs) with `config` as the gateway's
/// config file, the consumer reading channel `channel` of topic `crash`.
fn crash_loop(label: &str, config: &str, channel: &str, publisher: Publisher, consumer: Consumer) {
    let dir = temp_data_dir();
    std::fs::create_dir_all(&dir).expect("data dir");
    std::fs::write(dir.join("gateway.yaml"), config).expect("config");
    let tcp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut gw = spawn_gateway(&dir, &tcp, &http);

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let got = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let stop_pub = Arc::new(AtomicBool::new(false));
    let stop_sub = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (tcp, got, stop) = (tcp.clone(), got.clone(), stop_sub.clone());
        thread::spawn(move || consumer(tcp, got, stop))
    };
    // The channel exists before the first publish, so every message has a
    // channel to go to.
    eventually_blocking(Duration::from_secs(30), "the consumer subscribed", || {
        let stats = std::net::TcpStream::connect(&http).and_then(|mut s| {
            s.write_all(b"GET /stats?format=json HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        stats
            .is_ok_and(|s| s.contains(&format!("\"channel_name\":\"{channel}\"")))
            .then_some(())
    });
    let publisher = {
        let (tcp, acked, stop) = (tcp.clone(), acked.clone(), stop_pub.clone());
        thread::spawn(move || publisher(tcp, acked, stop))
    };

    for kill in 0..KILLS {
        // Kill mid-stream, once some more publishes were acknowledged since
        // the last restart.
        let base = acked.lock().expect("lock").len();
        eventually_blocking(
            Duration::from_secs(20),
            &format!("publishing resumed after restart {kill}"),
            || (acked.lock().expect("lock").len() >= base + 1000).then_some(()),
        );
        gw.kill().expect("SIGKILL");
        let _ = gw.wait();
        gw = spawn_gateway(&dir, &tcp, &http);
    }
    let base = acked.lock().expect("lock").len();
    eventually_blocking(
        Duration::from_secs(20),
        "publishing after the last restart",
        || (acked.lock().expect("lock").len() >= base + 1000).then_some(()),
    );
    stop_pub.store(true, Ordering::Relaxed);
    let _ = publisher.join();

    let acked: Vec<String> = acked.lock().expect("lock").clone();
    let missing = || {
        let got = got.lock().expect("lock");
        acked.iter().filter(|b| !got.contains_key(*b)).count()
    };
    // The assertion below lists what is missing.
    let _ = poll_blocking(Duration::from_secs(20), || (missing() == 0).then_some(()));
    stop_sub.store(true, Ordering::Relaxed);
    let _ = consumer.join();
    let _ = gw.kill();
    let _ = gw.wait();

    let got = got.lock().expect("lock");
    let missing: Vec<&String> = acked.iter().filter(|b| !got.contains_key(*b)).collect();
    let delivered: usize = got.values().sum();
    let unacked_seen: HashSet<&String> = got.keys().collect();
    println!(
        "crash loop {label}: {} acknowledged, {} deliveries of {} distinct bodies, {} duplicates, {} missing",
        acked.len(),
        delivered,
        unacked_seen.len(),
        delivered - unacked_seen.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{label}: {} acknowledged messages lost across {KILLS} SIGKILLs, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one STOMP frame (up to its NUL), skipping heart-beat EOLs.
fn read_stomp_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        s.read_exact(&mut byte)?;
        match byte[0] {
            0 => return Ok(frame),
            b'\n' | b'\r' if frame.is_empty() => {}
            b => frame.push(b),
        }
        if frame.len() > 1 << 20 {
            return Err(std::io::Error::other("STOMP frame too long"));
        }
    }
}

/// Sends `s-<n>` with one SEND per body to `/queue/crash`, each with a
/// receipt; records the bodies whose RECEIPT arrived.
fn stomp_publisher(tcp: String, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = try_connect_raw(&tcp) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        if s.write_all(b"CONNECT\naccept-version:1.2\nhost:gw\n\n\0")
            .is_err()
            || !read_stomp_frame(&mut s).is_ok_and(|f| f.starts_with(b"CONNECTED"))
        {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let body = format!("s-{n}");
            n += 1;
            let frame = format!(
                "SEND\ndestination:/queue/crash\nreceipt:{n}\ncontent-length:{}\n\n{body}\0",
                body.len()
            );
            if s.write_all(frame.as_bytes()).is_err() {
                break;
            }
            match read_stomp_frame(&mut s) {
                Ok(f) if f.starts_with(b"RECEIPT") => acked.lock().expect("lock").push(body),
                _ => break,
            }
        }
    }
}

/// One RESP reply line, without its CRLF.
fn read_resp_line(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte)?;
        line.push(byte[0]);
        if line.len() > 1024 {
            return Err(std::io::Error::other("RESP line too long"));
        }
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

/// A BRPOP reply: `Some(body)`, or `None` on its timeout (a null array).
fn read_brpop_reply(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let head = read_resp_line(s)?;
    if head == b"*-1" || head == b"_" {
        return Ok(None);
    }
    if head != b"*2" {
        return Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&head)
        )));
    }
    let mut out = None;
    for _ in 0..2 {
        let len_line = read_resp_line(s)?;
        let len: usize = std::str::from_utf8(len_line.get(1..).unwrap_or_default())
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad bulk length"))?;
        let mut data = vec![0u8; len + 2];
        s.read_exact(&mut data)?;
        data.truncate(len);
        out = Some(data);
    }
    Ok(out)
}

/// Pops topic `crash` (channel `resp`) with BRPOP, one message per call;
/// records each body (the plugin FINs it as it replies).
fn resp_consumer(tcp: String, got: Arc<Mutex<HashMap<String, usize>>>, stop: Arc<AtomicBool>) {
    let brpop = b"*3\r\n$5\r\nBRPOP\r\n$5\r\ncrash\r\n$1\r\n1\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = try_connect_raw(&tcp) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(brpop).is_err() {
                break;
            }
            match read_brpop_reply(&mut s) {
                Ok(Some(body)) => {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    *got.lock().expect("lock").entry(body).or_default() += 1;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}
