//! pynsq (the official Python client, tornado IOLoop `Writer` and `Reader`)
//! against nsq-gateway started in-process on port 0: PUB, MPUB, DPUB, consume,
//! REQ with a delay, TOUCH past msg_timeout, timeout redelivery and fan-out to
//! two channels, each checked against what nsqd does. The scenarios live in
//! `tests/clients/pynsq_scenarios.py`; the harness bootstraps `.venv`.

mod common;

use std::time::Duration;

use common::clients::{self, expect_success, ints, strings, unique_topic};

/// Hard limit on one client process; each scenario bounds itself well below.
const HARD_TIMEOUT: Duration = Duration::from_secs(45);

async fn pynsq(scenario: &str, topic: &str, extra: &[&str]) -> serde_json::Value {
    let server = common::start_server(common::test_config()).await;
    let mut args = vec![
        scenario.to_owned(),
        "--nsqd".to_owned(),
        server.tcp_addr.to_string(),
        "--topic".to_owned(),
        topic.to_owned(),
        "--timeout".to_owned(),
        "15".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = clients::run_python("pynsq_scenarios.py", args, HARD_TIMEOUT).await;
    let result = expect_success(&out);
    eprintln!("{scenario}: {result}");
    drop(server);
    result
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_pub_then_consume() {
    let r = pynsq("pub", &unique_topic("pynsq_pub"), &["--count", "10"]).await;
    let sent = strings(&r["sent"]);
    assert_eq!(sent.len(), 10);
    assert_eq!(strings(&r["responses"]), vec!["OK"; 10]);
    assert_eq!(sorted(strings(&r["received"])), sorted(sent), "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1; 10], "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_mpub_then_consume() {
    let r = pynsq("mpub", &unique_topic("pynsq_mpub"), &["--count", "25"]).await;
    let sent = strings(&r["sent"]);
    assert_eq!(sent.len(), 25);
    assert_eq!(strings(&r["responses"]), vec!["OK"]);
    assert_eq!(sorted(strings(&r["received"])), sorted(sent), "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1; 25], "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_dpub_arrives_no_earlier_than_its_delay() {
    let r = pynsq("dpub", &unique_topic("pynsq_dpub"), &["--delay-ms", "1500"]).await;
    assert_eq!(strings(&r["responses"]), vec!["OK"]);
    assert_eq!(strings(&r["received"]), vec!["deferred"], "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1], "{r}");
    let elapsed = r["elapsed_ms"].as_f64().unwrap_or(-1.0);
    assert!(
        (1500.0..1500.0 + 3000.0).contains(&elapsed),
        "DPUB 1500ms delivered after {elapsed}ms: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_req_with_delay_redelivers_with_attempts_2() {
    let r = pynsq("req", &unique_topic("pynsq_req"), &["--delay-ms", "1000"]).await;
    assert_eq!(
        strings(&r["received"]),
        vec!["requeue-me", "requeue-me"],
        "{r}"
    );
    assert_eq!(ints(&r["attempts"]), vec![1, 2], "{r}");
    let gap = r["redelivery_ms"].as_f64().unwrap_or(-1.0);
    assert!(
        (1000.0..1000.0 + 3000.0).contains(&gap),
        "REQ 1000ms redelivered after {gap}ms: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_touch_keeps_message_beyond_msg_timeout() {
    let r = pynsq(
        "touch",
        &unique_topic("pynsq_touch"),
        &[
            "--msg-timeout-ms",
            "1000",
            "--hold-ms",
            "2500",
            "--touch-every-ms",
            "300",
            "--settle-ms",
            "1500",
        ],
    )
    .await;
    assert_eq!(r["deliveries"], 1, "touched message was redelivered: {r}");
    assert_eq!(ints(&r["attempts"]), vec![1], "{r}");
    assert!(r["held_ms"].as_f64().unwrap_or(0.0) >= 2500.0, "{r}");
    assert!(r["touches"].as_i64().unwrap_or(0) >= 5, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_unanswered_message_times_out_and_is_redelivered() {
    let r = pynsq(
        "timeout",
        &unique_topic("pynsq_timeout"),
        &["--msg-timeout-ms", "1000"],
    )
    .await;
    assert_eq!(
        strings(&r["received"]),
        vec!["time-me-out", "time-me-out"],
        "{r}"
    );
    assert_eq!(ints(&r["attempts"]), vec![1, 2], "{r}");
    let gap = r["redelivery_ms"].as_f64().unwrap_or(-1.0);
    // The client stamps the first delivery slightly after the server sent it.
    assert!(
        (900.0..1000.0 + 3000.0).contains(&gap),
        "msg_timeout 1000ms redelivered after {gap}ms: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_two_channels_each_get_every_message() {
    let r = pynsq(
        "two_channels",
        &unique_topic("pynsq_fan"),
        &["--count", "20"],
    )
    .await;
    let sent = sorted(strings(&r["sent"]));
    assert_eq!(sent.len(), 20);
    assert_eq!(sorted(strings(&r["channel_a"])), sent, "{r}");
    assert_eq!(sorted(strings(&r["channel_b"])), sent, "{r}");
}

#[test]
fn harness_run_client_kills_a_hung_client() {
    let start = std::time::Instant::now();
    let out = clients::run_client("sleep", &["30"], Duration::from_millis(200));
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains(clients::KILLED_MARKER));
}
