//! E2E processing latency (`--e2e-processing-latency-*`) against a real
//! server on port 0: messages published and FINed over V2 show as
//! percentiles per channel and per topic in `/stats` JSON (nsqd's
//! `e2e_processing_latency` objects, quantiles sorted from the largest
//! down) and text (`e2e%:` values), and as summaries in `/metrics`;
//! without percentiles configured nothing is tracked, as in nsqd.

use crate::common;

use std::time::{Duration, Instant};

use common::binary::http;
use common::{STEP, TestServer, eventually, test_config};
use nsq_gateway::config::Config;

/// `GET path` on the server's HTTP port, off the runtime's threads.
async fn get(server: &TestServer, path: &str) -> String {
    let addr = server.http_addr.to_string();
    let path = path.to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || http(&addr, "GET", &path, b""))
        .await
        .expect("join")
        .expect("HTTP answers");
    assert_eq!(status, 200, "{body}");
    body
}

async fn stats_json(server: &TestServer) -> serde_json::Value {
    serde_json::from_str(&get(server, "/stats?format=json").await).expect("JSON")
}

/// Publishes `n` messages to `topic`, consumes them on `channel` and FINs
/// each one.
async fn publish_and_finish(server: &TestServer, topic: &str, channel: &str, n: u32) {
    let mut consumer = server.v2_client().await;
    consumer.subscribe(topic, channel).await;
    consumer.ready(n).await;
    let mut producer = server.v2_client().await;
    for i in 0..n {
        producer.publish(topic, format!("m{i}").as_bytes()).await;
    }
    for _ in 0..n {
        let (id, _, _) = consumer.message().await;
        consumer.finish(&id).await;
    }
}

#[tokio::test]
async fn percentiles_per_channel_and_topic_in_stats_and_metrics() {
    let server = TestServer::start(Config {
        // Given out of order: reported from the largest down, as nsqd.
        e2e_processing_latency_percentiles: vec![0.5, 1.0],
        e2e_processing_latency_window_time: Duration::from_secs(600),
        ..test_config()
    })
    .await;
    let started = Instant::now();
    publish_and_finish(&server, "lat", "c", 3).await;
    let v = eventually(STEP, "3 FINs counted", async || {
        let v = stats_json(&server).await;
        (v["topics"][0]["channels"][0]["e2e_processing_latency"]["count"] == 3).then_some(v)
    })
    .await;
    let bound = started.elapsed().as_nanos() as f64;
    let topic = &v["topics"][0];
    let channel = &topic["channels"][0];
    for (what, e2e) in [
        ("topic", &topic["e2e_processing_latency"]),
        ("channel", &channel["e2e_processing_latency"]),
    ] {
        assert_eq!(e2e["count"], 3, "{what}: {e2e}");
        let ps = e2e["percentiles"].as_array().expect("percentiles");
        let quantiles: Vec<f64> = ps.iter().filter_map(|p| p["quantile"].as_f64()).collect();
        assert_eq!(quantiles, vec![1.0, 0.5], "{what}: {e2e}");
        for p in ps {
            let value = p["value"].as_f64().expect("value");
            assert!(
                value > 0.0 && value <= bound,
                "{what}: {value} ns, at most {bound}"
            );
        }
        assert!(
            ps[0]["value"].as_f64() >= ps[1]["value"].as_f64(),
            "{what}: the maximum is at least the median: {e2e}"
        );
    }

    let text = get(&server, "/stats").await;
    let e2e_fields: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("e2e%: ").map(|(_, v)| v))
        .collect();
    assert_eq!(e2e_fields.len(), 2, "{text}");
    for f in e2e_fields {
        let values: Vec<&str> = f.split(", ").collect();
        assert_eq!(values.len(), 2, "{text}");
        assert!(
            values.iter().all(|v| v.ends_with('s') && v.contains('.')),
            "{text}"
        );
    }

    let metrics = get(&server, "/metrics").await;
    for line in [
        "# TYPE nsq_channel_e2e_processing_latency_seconds summary",
        "# TYPE nsq_topic_e2e_processing_latency_seconds summary",
        "nsq_channel_e2e_processing_latency_seconds{topic=\"lat\",channel=\"c\",quantile=\"1\"} ",
        "nsq_channel_e2e_processing_latency_seconds{topic=\"lat\",channel=\"c\",quantile=\"0.5\"} ",
        "nsq_topic_e2e_processing_latency_seconds{topic=\"lat\",quantile=\"1\"} ",
        "nsq_channel_e2e_processing_latency_samples{topic=\"lat\",channel=\"c\"} 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn topic_aggregates_its_channels() {
    let server = TestServer::start(Config {
        e2e_processing_latency_percentiles: vec![0.99],
        ..test_config()
    })
    .await;
    publish_and_finish(&server, "agg", "a", 2).await;
    publish_and_finish(&server, "agg", "b", 1).await;
    let v = eventually(STEP, "3 FINs on the topic", async || {
        let v = stats_json(&server).await;
        (v["topics"][0]["e2e_processing_latency"]["count"] == 3).then_some(v)
    })
    .await;
    // Channel a received the message published for b as well and never
    // FINed it; each channel counts its own FINs.
    let counts: Vec<i64> = v["topics"][0]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["e2e_processing_latency"]["count"].as_i64())
        .collect();
    assert_eq!(counts, vec![2, 1]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn nothing_is_tracked_without_percentiles() {
    let server = TestServer::start(test_config()).await;
    publish_and_finish(&server, "none", "c", 1).await;
    let v = eventually(STEP, "the FIN is processed", async || {
        let v = stats_json(&server).await;
        (v["topics"][0]["channels"][0]["in_flight_count"] == 0).then_some(v)
    })
    .await;
    for e2e in [
        &v["topics"][0]["e2e_processing_latency"],
        &v["topics"][0]["channels"][0]["e2e_processing_latency"],
    ] {
        assert_eq!(
            e2e,
            &serde_json::json!({"count": 0, "percentiles": null}),
            "{v}"
        );
    }
    let metrics = get(&server, "/metrics").await;
    assert!(!metrics.contains("e2e_processing_latency"), "{metrics}");
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn percentile_flags_take_nsqds_syntax() {
    use clap::Parser;
    let cli = nsq_gateway::cli::Cli::try_parse_from([
        "nsq-gateway",
        "--e2e-processing-latency-percentile",
        "1.0,0.99",
        "--e2e-processing-latency-percentile=0.95",
        "--e2e-processing-latency-window-time",
        "5m",
    ])
    .expect("parses");
    let mut c = Config::default();
    cli.settings.apply(&mut c);
    assert_eq!(c.e2e_processing_latency_percentiles, vec![1.0, 0.99, 0.95]);
    assert_eq!(
        c.e2e_processing_latency_window_time,
        Duration::from_secs(300)
    );
    c.validate("flags").expect("valid");
    for bad in [0.0, 1.5, -0.1] {
        let c = Config {
            e2e_processing_latency_percentiles: vec![bad],
            ..Config::default()
        };
        let err = c.validate("flags").expect_err("out of range").to_string();
        assert!(err.contains("e2e_processing_latency_percentiles"), "{err}");
    }
}
