//! The STOMP plugin driven by a real third-party client, stomp.py (pinned in
//! tests/clients/requirements.txt, run from tests/clients/stomp_scenarios.py):
//! send with receipts, subscribe with each ack mode on STOMP 1.2 and 1.1,
//! NACK redelivery, /topic fan-out, heart-beats, ERROR on a bad destination,
//! and messages crossing between pynsq (V2) and stomp.py both ways.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::clients::{expect_success, result_json, run_python, strings, unique_topic};
use common::plugins::{component, small_limits};
use common::{STEP, TestServer, eventually};
use nsq_gateway::plugin::PluginConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

fn stomp_plugin(config: &[(&str, &str)]) -> PluginConfig {
    PluginConfig {
        name: "stomp".into(),
        component: component("stomp"),
        magics: vec!["CONN".into(), "STOM".into()],
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        limits: small_limits(),
        override_v2: false,
    }
}

async fn stomp_py(
    server: &TestServer,
    scenario: &str,
    topic: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        scenario.to_string(),
        "--addr".into(),
        server.tcp_addr.to_string(),
        "--topic".into(),
        topic.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_python("stomp_scenarios.py", args, TIMEOUT).await;
    expect_success(&out)
}

/// Waits until every channel of `topic` is drained (nothing queued or in
/// flight), which after a consumer disconnects proves it acknowledged all.
async fn assert_drained(server: &TestServer, topic: &str) {
    eventually(STEP, &format!("{topic} drained"), async || {
        let stats = server.broker().stats(Some(topic));
        let drained = !stats.is_empty()
            && stats[0]
                .channels
                .iter()
                .all(|c| c.depth == 0 && c.in_flight_count == 0);
        drained.then_some(())
    })
    .await;
}

async fn send_then_consume(version: &str, ack: &str) {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let topic = unique_topic(&format!("stomp_{}", ack.replace('-', "_")));
    let sent = stomp_py(
        &server,
        "send",
        &topic,
        &["--version", version, "--count", "10"],
    )
    .await;
    assert_eq!(strings(&sent["receipts"]).len(), 10, "{sent}");
    assert_eq!(sent["disconnect_receipt"], true, "{sent}");
    let got = stomp_py(
        &server,
        "consume",
        &topic,
        &[
            "--version",
            version,
            "--ack",
            ack,
            "--count",
            "10",
            "--prefetch",
            "4",
        ],
    )
    .await;
    assert_eq!(strings(&got["received"]), strings(&sent["sent"]), "{got}");
    let headers = got["headers"].as_array().expect("headers");
    for h in headers {
        assert_eq!(h["subscription"], "s1", "{h}");
        assert_eq!(h["destination"], format!("/queue/{topic}"), "{h}");
        assert_eq!(h["message-id"].as_str().map(str::len), Some(16), "{h}");
        assert_eq!(h["ack"].is_null(), ack == "auto", "{h}");
    }
    assert_drained(&server, &topic).await;
}

#[tokio::test]
async fn stomp_py_12_auto_ack() {
    send_then_consume("1.2", "auto").await;
}

#[tokio::test]
async fn stomp_py_12_client_ack_cumulative() {
    send_then_consume("1.2", "client").await;
}

#[tokio::test]
async fn stomp_py_12_client_individual_ack() {
    send_then_consume("1.2", "client-individual").await;
}

#[tokio::test]
async fn stomp_py_11_client_ack() {
    send_then_consume("1.1", "client").await;
}

#[tokio::test]
async fn stomp_py_11_client_individual_ack() {
    send_then_consume("1.1", "client-individual").await;
}

#[tokio::test]
async fn stomp_py_nack_redelivers() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let topic = unique_topic("stomp_nack");
    stomp_py(&server, "send", &topic, &["--count", "3"]).await;
    let r = stomp_py(&server, "nack", &topic, &["--count", "3"]).await;
    let deliveries = r["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 6, "{r}");
    for d in deliveries {
        let redelivered = d["redelivered"] == "true";
        assert_eq!(d["attempts"], if redelivered { "2" } else { "1" }, "{r}");
    }
    assert_eq!(r["total_deliveries"], 6, "no extra deliveries: {r}");
    assert_drained(&server, &topic).await;
}

#[tokio::test]
async fn stomp_py_topic_fan_out() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let topic = unique_topic("stomp_fan");
    let r = stomp_py(
        &server,
        "roundtrip",
        &topic,
        &["--kind", "topic", "--count", "5"],
    )
    .await;
    let sent = strings(&r["sent"]);
    for got in r["received"].as_array().expect("received") {
        assert_eq!(strings(got), sent, "{r}");
    }
}

#[tokio::test]
async fn stomp_py_heart_beats() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[("heart_beat", "200,200")]))
        .start()
        .await;
    let topic = unique_topic("stomp_hb");
    let r = stomp_py(
        &server,
        "heartbeat",
        &topic,
        &["--heartbeat-ms", "200", "--idle-ms", "1500"],
    )
    .await;
    assert!(r["heartbeats_received"].as_i64().unwrap_or(0) >= 3, "{r}");
    assert_eq!(r["connected_after_idle"], true, "{r}");
    assert_eq!(strings(&r["received"]), ["after-idle"], "{r}");
}

#[tokio::test]
async fn stomp_py_error_frame_on_unknown_destination() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let r = stomp_py(&server, "error", "unused", &[]).await;
    let message = r["errors"][0]["headers"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("unknown destination"), "{r}");
}

#[tokio::test]
async fn pynsq_publishes_stomp_py_consumes() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let topic = unique_topic("nsq_to_stomp");
    let args = vec![
        "publish".to_string(),
        "--nsqd".into(),
        server.tcp_addr.to_string(),
        "--topic".into(),
        topic.clone(),
        "--count".into(),
        "10".into(),
    ];
    let out = run_python("pynsq_scenarios.py", args, TIMEOUT).await;
    let published = expect_success(&out);
    let got = stomp_py(
        &server,
        "consume",
        &topic,
        &["--ack", "client-individual", "--count", "10"],
    )
    .await;
    assert_eq!(
        strings(&got["received"]),
        strings(&published["sent"]),
        "{got}"
    );
    assert_drained(&server, &topic).await;
}

#[tokio::test]
async fn stomp_py_publishes_pynsq_consumes() {
    let server = TestServer::builder()
        .plugin(stomp_plugin(&[]))
        .start()
        .await;
    let topic = unique_topic("stomp_to_nsq");
    let sent = stomp_py(&server, "send", &topic, &["--count", "10"]).await;
    let args = vec![
        "consume".to_string(),
        "--nsqd".into(),
        server.tcp_addr.to_string(),
        "--topic".into(),
        topic.clone(),
        "--channel".into(),
        "ch".into(),
        "--count".into(),
        "10".into(),
    ];
    let out = run_python("pynsq_scenarios.py", args, TIMEOUT).await;
    let got = expect_success(&out);
    let mut received = strings(&got["received"]);
    received.sort();
    let mut want = strings(&sent["sent"]);
    want.sort();
    assert_eq!(received, want, "{}", result_json(&out));
}
