//! `/stats` and `/metrics` with WebAssembly plugins loaded (built by build.rs):
//! each client shows the protocol it speaks, a plugin client that published
//! is listed among the producers, and each plugin shows its connections,
//! traps and limit hits.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use nsq_gateway::plugin::PluginLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::plugins::{LineClient, line_plugin, plugin};
use common::{TestServer, test_config};

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[tokio::test]
async fn stats_and_metrics_show_plugin_connections_traps_and_limits() {
    let mut config = test_config();
    config.plugins = vec![
        line_plugin(),
        plugin(
            "trap",
            "test-trap",
            "TRAP",
            PluginLimits {
                call_timeout_ms: 250,
                memory: 4 << 20,
                ..PluginLimits::default()
            },
        ),
    ];
    let srv = TestServer::start(config).await;
    let h = srv.http_addr;

    let mut line = LineClient::line(srv.tcp_addr).await;
    let reply = line.request("SUB orders audit").await;
    assert!(reply.starts_with("OK"), "{reply}");
    let mut publisher = LineClient::line(srv.tcp_addr).await;
    let reply = publisher.request("PUB orders hello").await;
    assert!(reply.starts_with("OK"), "{reply}");
    let mut victim = LineClient::connect(srv.tcp_addr, b"TRAP").await;
    assert_eq!(victim.request("hello").await, "hello");
    victim.send("panic").await;
    assert!(victim.closed().await, "the trapping connection closes");

    let stats: serde_json::Value =
        serde_json::from_str(&http_get(h, "/stats?format=json").await).expect("JSON");
    let client = &stats["topics"][0]["channels"][0]["clients"][0];
    assert_eq!(client["protocol"], "line", "{stats}");
    assert_eq!(client["version"], "line", "{stats}");
    let producers = stats["producers"].as_array().cloned().unwrap_or_default();
    assert_eq!(producers.len(), 1, "{stats}");
    assert_eq!(producers[0]["protocol"], "line");
    assert_eq!(
        producers[0]["pub_counts"],
        serde_json::json!([{"topic": "orders", "count": 1}])
    );
    let plugins = stats["plugins"].as_array().cloned().unwrap_or_default();
    let by_name = |n: &str| {
        plugins
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("plugin {n} in {stats}"))
    };
    let (l, t) = (by_name("line"), by_name("trap"));
    assert_eq!(
        (l["connections"].as_u64(), l["active"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (l["traps"].as_u64(), l["limit_hits"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        (t["connections"].as_u64(), t["traps"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(t["limit_hits"], 0);
    let protocols = stats["protocols"].as_array().cloned().unwrap_or_default();
    assert!(
        protocols
            .iter()
            .any(|p| p["protocol"] == "line" && p["active"] == 2),
        "{stats}"
    );

    let text = http_get(h, "/stats").await;
    assert!(text.contains("\nPlugins: (generation 0)\n"), "{text}");
    assert!(
        text.contains("[trap           ] active: 0      connections: 1        traps: 1"),
        "{text}"
    );

    let metrics = http_get(h, "/metrics").await;
    for line in [
        "nsq_plugin_traps_total{plugin=\"trap\"} 1",
        "nsq_plugin_limit_hits_total{plugin=\"trap\"} 0",
        "nsq_plugin_connections_total{plugin=\"line\"} 2",
        "nsq_plugin_connections_active{plugin=\"line\"} 2",
        "nsq_connections_active{protocol=\"line\"} 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    drop((line, publisher));
    srv.shutdown().await.expect("clean shutdown");
}
