//! What an operator reads: the real binary's stderr sent to a file is plain
//! text (no ANSI colour codes), every line starts with `--log-prefix`, and
//! nsqd's lifecycle lines are there at info (listening, each client coming
//! with its protocol and address and leaving with its reason, topics and
//! channels created and deleted, each step of the shutdown), with nothing
//! logged per message.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::common::binary::{Gateway, http, repo};
use crate::common::temp_data_dir;
use crate::common::v2::{pub_cmd, read_frame_blocking};
use crate::common::wait::eventually_blocking;

#[test]
fn log_file_is_plain_text_with_nsqds_lifecycle_lines() {
    let dir = temp_data_dir();
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).expect("log file");
    let gw = Gateway::spawn_in(&repo().join("gateway.yaml"), &[], &dir, Stdio::from(file));
    let post = |path: &str| {
        let (status, body) = http(&gw.http, "POST", path, b"").expect("HTTP answers");
        assert_eq!(status, 200, "{path}: {body}");
    };
    post("/topic/create?topic=ops_logs");
    post("/channel/create?topic=ops_logs&channel=ch");

    // A V2 client publishes 200 messages, then leaves.
    let mut v2 = TcpStream::connect(&gw.tcp).expect("connect");
    v2.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    v2.write_all(b"  V2").expect("magic");
    for i in 0..200 {
        v2.write_all(&pub_cmd("ops_logs", format!("body-{i}").as_bytes()))
            .expect("PUB");
        let (kind, data) = read_frame_blocking(&mut v2).expect("response");
        assert_eq!((kind, &data[..]), (0, &b"OK"[..]));
    }
    drop(v2);
    let read = || std::fs::read_to_string(&log).expect("log");
    eventually_blocking(
        Duration::from_secs(10),
        "the client's leaving is logged",
        || read().contains("client left").then_some(()),
    );
    post("/channel/delete?topic=ops_logs&channel=ch");
    post("/topic/delete?topic=ops_logs");
    let (status, _, _) = gw.terminate();
    assert!(status.success(), "{status}");

    let text = read();
    assert!(
        !text.contains('\x1b'),
        "ANSI escape codes in a log file:\n{text}"
    );
    for line in text.lines() {
        assert!(
            line.starts_with("[nsq-gateway] "),
            "line without the prefix: {line:?}"
        );
    }
    let has = |needles: &[&str]| {
        text.lines()
            .any(|l| l.contains(" INFO ") && needles.iter().all(|n| l.contains(n)))
    };
    let expected: &[&[&str]] = &[
        &["TCP: listening", "addr=127.0.0.1:"],
        &["HTTP: listening", "addr=127.0.0.1:"],
        &["topic created", "topic=ops_logs"],
        &["channel created", "topic=ops_logs", "channel=ch"],
        &["TCP: new client", "protocol=V2", "peer=127.0.0.1:"],
        &["client left", "protocol=V2", "reason=", "peer=127.0.0.1:"],
        &["channel deleted", "topic=ops_logs", "channel=ch"],
        &["topic deleted", "topic=ops_logs"],
        &["signal received: shutting down"],
        &["TCP: closing"],
        &["HTTP: closing"],
        &["all sessions closed"],
        &["writing in-memory messages and metadata to disk"],
        &["shutdown complete"],
    ];
    for needles in expected {
        assert!(has(needles), "no INFO line with {needles:?}:\n{text}");
    }
    // Nothing per message: 200 publishes add no line each.
    assert!(!text.contains("body-"), "a message body was logged");
    assert!(
        text.lines().count() < 100,
        "{} lines for 200 messages:\n{text}",
        text.lines().count()
    );
}
