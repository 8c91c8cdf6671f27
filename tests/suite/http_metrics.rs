//! `/metrics` read by the real Prometheus parsers from PyPI (`prometheus_client`
//! in `<repo>/.venv`, bootstrapped by `tests/common/clients.rs`): the default
//! text format through `prometheus_client.parser`, the OpenMetrics one through
//! the strict `prometheus_client.openmetrics.parser`. The exposition must stay
//! parseable and its series count bounded while 1,000 ephemeral channels
//! come and go.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::clients::{describe, python, result_json, run_client_async};
use common::{TestServer, eventually, pub_cmd, read_frame_within, test_config};

const WAIT: Duration = Duration::from_secs(10);

/// Parses the file named by argv[1] with the parser argv[2] names and prints
/// one JSON line: the families with their types and sample counts.
const PARSE: &str = r#"
import json, sys
mode = sys.argv[2]
text = open(sys.argv[1]).read()
try:
    if mode == "openmetrics":
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    fams = {}
    samples = 0
    for f in text_string_to_metric_families(text):
        fams[f.name] = {"type": f.type, "samples": len(f.samples)}
        samples += len(f.samples)
    print(json.dumps({"ok": True, "families": fams, "samples": samples}))
except Exception as e:
    print(json.dumps({"ok": False, "error": repr(e)}))
    sys.exit(1)
"#;

/// GET `path` with optional `Accept`; returns the body.
async fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{accept}\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    body.to_owned()
}

/// Runs the real parser over `text`; returns its JSON result.
async fn parse(text: &str, mode: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("nsq-gateway-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{mode}-{}.txt", text.len()));
    std::fs::write(&file, text).expect("write metrics");
    let py = tokio::task::spawn_blocking(python)
        .await
        .expect("python bootstrap");
    let args = vec![
        "-c".to_owned(),
        PARSE.to_owned(),
        file.display().to_string(),
        mode.to_owned(),
    ];
    let out = run_client_async(py, args, Duration::from_secs(60)).await;
    let v = result_json(&out);
    assert!(
        out.status.success() && v["ok"] == true,
        "{mode} parser refused /metrics\n{}\n--- metrics\n{text}",
        describe(&out)
    );
    let _ = std::fs::remove_file(&file);
    v
}

/// Scrapes both formats, checks both parse, returns the Prometheus-text result.
async fn scrape(addr: SocketAddr) -> serde_json::Value {
    let om = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(om.ends_with("# EOF\n"));
    let om_parsed = parse(&om, "openmetrics").await;
    let text = http_get(addr, "/metrics", None).await;
    let parsed = parse(&text, "prometheus").await;
    assert_eq!(
        om_parsed["samples"], parsed["samples"],
        "both formats carry the same samples"
    );
    parsed
}

fn family<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let f = &v["families"][name];
    assert!(!f.is_null(), "family {name} missing: {v}");
    f
}

/// Opens `n` V2 consumers, each on its own ephemeral channel of `topic`.
async fn ephemeral_consumers(
    srv: &TestServer,
    topic: &str,
    from: usize,
    n: usize,
) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for i in from..from + n {
        let mut s = srv.v2().await;
        s.write_all(format!("SUB {topic} c{i}#ephemeral\n").as_bytes())
            .await
            .expect("SUB");
        conns.push(s);
    }
    for s in &mut conns {
        let (kind, data) = read_frame_within(s, WAIT).await;
        assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
    }
    conns
}

/// Waits until `topic` has no channels left (its consumers have gone).
async fn wait_until_gone(srv: &TestServer, topic: &str) {
    eventually(
        WAIT,
        &format!("ephemeral channels of {topic} gone"),
        async || {
            let left = srv
                .broker()
                .existing_topic(topic)
                .map_or(0, |t| t.channels().len());
            (left == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_real_parsers_and_stay_bounded() {
    let srv = TestServer::start(test_config()).await;
    let h = srv.http_addr;
    // A durable topic and channel with a consumer and a message.
    let mut sub = srv.v2().await;
    sub.write_all(b"SUB durable c\n").await.expect("SUB");
    let (kind, _) = read_frame_within(&mut sub, WAIT).await;
    assert_eq!(kind, 0);
    let mut producer = srv.v2().await;
    producer
        .write_all(&pub_cmd("durable", b"x"))
        .await
        .expect("PUB");
    read_frame_within(&mut producer, WAIT).await;

    let base = scrape(h).await;
    for (name, kind) in [
        ("nsq_topic_depth", "gauge"),
        ("nsq_topic_messages", "counter"),
        ("nsq_channel_depth", "gauge"),
        ("nsq_channel_in_flight", "gauge"),
        ("nsq_channel_deferred", "gauge"),
        ("nsq_channel_messages", "counter"),
        ("nsq_channel_requeued", "counter"),
        ("nsq_channel_timed_out", "counter"),
        ("nsq_channel_clients", "gauge"),
        ("nsq_connections_active", "gauge"),
        ("nsq_connections", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(family(&base, name)["type"], kind, "{name}");
    }
    // Without plugins there are no plugin series (tests/http_plugins.rs has them).
    assert!(base["families"]["nsq_plugin_traps"].is_null(), "{base}");
    assert_eq!(family(&base, "nsq_channel_depth")["samples"], 1);
    assert_eq!(family(&base, "nsq_connections_active")["samples"], 1);
    let base_samples = base["samples"].as_u64().expect("count");
    let base_families: BTreeSet<String> = base["families"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();

    // 1,000 ephemeral channels come and go, 250 alive at a time.
    let mut peak = 0;
    for round in 0..4 {
        let conns = ephemeral_consumers(&srv, "burst#ephemeral", round * 250, 250).await;
        let mid = scrape(h).await;
        assert_eq!(family(&mid, "nsq_channel_depth")["samples"], 251);
        peak = peak.max(mid["samples"].as_u64().unwrap_or(0));
        drop(conns);
        wait_until_gone(&srv, "burst#ephemeral").await;
    }
    assert!(srv.broker().existing_topic("burst#ephemeral").is_none());
    let after = scrape(h).await;
    let after_families: BTreeSet<String> = after["families"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(after_families, base_families);
    assert_eq!(family(&after, "nsq_channel_depth")["samples"], 1);
    assert_eq!(family(&after, "nsq_topic_depth")["samples"], 1);
    assert_eq!(
        after["samples"].as_u64(),
        Some(base_samples),
        "series back to the baseline after the ephemeral channels left (peak {peak})"
    );
    let stats = http_get(h, "/stats?format=json", None).await;
    assert!(!stats.contains("ephemeral"), "{stats}");
    srv.shutdown().await.expect("clean shutdown");
}
