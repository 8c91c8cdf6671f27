//! Isolation: four misbehaving test plugins (trap, endless loop, unbounded
//! allocation, ACL-denied publish flood). Each time only the offending
//! connection closes; a second connection to the same plugin and a LINE
//! connection keep working, and the plugin's counters record it.

use crate::common;

use nsq_gateway::plugin::PluginLimits;

use common::TestServer;
use common::plugins::{LineClient, line_plugin, plugin, small_limits};

/// Sends `trigger` on a fresh connection to `magic` and checks that only that
/// connection ends while the others keep flowing.
async fn contained(server: &TestServer, magic: &[u8; 4], trigger: &str) {
    let mut victim = LineClient::connect(server.tcp_addr, magic).await;
    let mut bystander = LineClient::connect(server.tcp_addr, magic).await;
    let mut line = LineClient::line(server.tcp_addr).await;
    assert_eq!(victim.request("hello").await, "hello");
    assert_eq!(bystander.request("before").await, "before");

    victim.send(trigger).await;
    assert!(
        victim.closed().await,
        "the misbehaving connection must close"
    );

    assert_eq!(bystander.request("after").await, "after");
    assert_eq!(line.request("PING").await, "PONG");
    let mut fresh = LineClient::connect(server.tcp_addr, magic).await;
    assert_eq!(fresh.request("fresh").await, "fresh");
}

fn echo_limits() -> PluginLimits {
    PluginLimits {
        call_timeout_ms: 250,
        memory: 4 << 20,
        ..PluginLimits::default()
    }
}

/// On a multi-threaded runtime, like the gateway's: the guest's panic message
/// goes through WASI stderr (async, never blocking a worker) before the trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_ends_only_its_connection() {
    let server = TestServer::builder()
        .plugins([
            plugin("trap", "test-trap", "TRAP", echo_limits()),
            line_plugin(),
        ])
        .start()
        .await;
    contained(&server, b"TRAP", "panic").await;
    let stats = server.plugin("trap").stats();
    assert_eq!((stats.traps, stats.limit_hits), (1, 0), "{stats:?}");
    assert_eq!(stats.connections, 3);
}

#[tokio::test]
async fn an_endless_loop_hits_the_cpu_deadline() {
    let server = TestServer::builder()
        .plugins([
            plugin("spin", "test-spin", "SPIN", echo_limits()),
            line_plugin(),
        ])
        .start()
        .await;
    let started = std::time::Instant::now();
    contained(&server, b"SPIN", "spin").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let stats = server.plugin("spin").stats();
    assert_eq!((stats.traps, stats.limit_hits), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let server = TestServer::builder()
        .plugins([
            plugin("hog", "test-hog", "HOGG", echo_limits()),
            line_plugin(),
        ])
        .start()
        .await;
    contained(&server, b"HOGG", "hog").await;
    let stats = server.plugin("hog").stats();
    assert_eq!((stats.traps, stats.limit_hits), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn a_flood_of_denied_publishes_ends_the_connection() {
    let limits = PluginLimits {
        topics: vec!["allowed".into()],
        max_denied: 10,
        ..small_limits()
    };
    let server = TestServer::builder()
        .plugins([plugin("acl", "test-acl", "ACLX", limits), line_plugin()])
        .start()
        .await;
    let mut c = LineClient::connect(server.tcp_addr, b"ACLX").await;
    // One denied call is a WIT error the guest sees, not a disconnect.
    assert_eq!(c.request("denied").await, "DENIED");
    assert_eq!(c.request("a message").await, "OK");
    assert_eq!(server.broker().stats(Some("allowed"))[0].message_count, 1);

    let mut victim = LineClient::connect(server.tcp_addr, b"ACLX").await;
    victim.send("flood").await;
    assert!(victim.closed().await, "the flooding connection must close");
    assert_eq!(c.request("still here").await, "OK");
    let mut line = LineClient::line(server.tcp_addr).await;
    assert_eq!(line.request("PING").await, "PONG");

    let stats = server.plugin("acl").stats();
    assert_eq!((stats.traps, stats.limit_hits), (0, 1), "{stats:?}");
    assert_eq!(
        stats.denied, 12,
        "1 answered + 11 in the flood (the 11th trapped)"
    );
    assert!(server.broker().existing_topic("forbidden").is_none());
}

#[tokio::test]
async fn max_connections_refuses_the_extra_connection() {
    let limits = PluginLimits {
        max_connections: 1,
        ..echo_limits()
    };
    let server = TestServer::builder()
        .plugin(plugin("trap", "test-trap", "TRAP", limits))
        .start()
        .await;
    let mut first = LineClient::connect(server.tcp_addr, b"TRAP").await;
    assert_eq!(first.request("one").await, "one");
    let mut second = LineClient::connect(server.tcp_addr, b"TRAP").await;
    assert!(second.closed().await);
    assert_eq!(first.request("still").await, "still");
    assert_eq!(server.plugin("trap").stats().refused, 1);
}
