//! TLS from the first byte for plugin protocols, on the same port: the
//! gateway terminates TLS and dispatches on the magic read inside it.
//! `redis-cli --tls` and redis-py `ssl=True` to the RESP plugin, stomp.py
//! over TLS to the STOMP plugin, all checked against the broker; the plugin
//! connection's stats carry the TLS version and the client certificate's
//! common name.

use crate::common;
use crate::tls_v2::{Pki, localhost};

use std::process::Stdio;
use std::time::Duration;

use nsq_gateway::config::{Config, PluginConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::clients;
use common::plugins::shipped_plugin;

/// The shipped RESP and STOMP plugins.
fn shipped_plugins() -> Vec<PluginConfig> {
    vec![shipped_plugin("resp"), shipped_plugin("stomp")]
}

async fn start(pki: &Pki) -> common::TestServer {
    common::TestServer::start(Config {
        plugins: shipped_plugins(),
        ..pki.config()
    })
    .await
}

fn count(server: &common::TestServer, topic: &str) -> u64 {
    server
        .broker()
        .stats(Some(topic))
        .first()
        .map_or(0, |t| t.message_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_tls_reaches_the_resp_plugin() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let port = server.tcp_addr.port().to_string();
    let ca = pki.path("ca.pem");
    let run = |args: Vec<String>| {
        tokio::process::Command::new("redis-cli")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
    };
    let base = |cmd: &[&str]| {
        let mut v: Vec<String> = [
            "--tls",
            "--cacert",
            &ca,
            "--sni",
            "localhost",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };
    let out = tokio::time::timeout(Duration::from_secs(20), run(base(&["PING"])))
        .await
        .expect("bounded")
        .expect("redis-cli runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{out:?}"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        run(base(&["PUBLISH", "tls_resp", "hello"])),
    )
    .await
    .expect("bounded")
    .expect("redis-cli runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count(&server, "tls_resp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_and_stomp_py_over_tls() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let port = server.tcp_addr.port();
    let code = format!(
        "import json, ssl, redis, stomp\n\
         r = redis.Redis(host='localhost', port={port}, ssl=True, ssl_ca_certs={ca:?})\n\
         pong = r.ping()\n\
         r.publish('tls_redis_py', 'from redis-py')\n\
         c = stomp.Connection([('localhost', {port})])\n\
         c.set_ssl(for_hosts=[('localhost', {port})], ca_certs={ca:?})\n\
         c.connect(wait=True)\n\
         c.send(destination='/topic/tls_stomp', body='from stomp.py', receipt='r1')\n\
         c.disconnect(receipt='bye')\n\
         print(json.dumps({{'ok': True, 'pong': pong}}))\n",
        ca = pki.path("ca.pem"),
    );
    let python = tokio::task::spawn_blocking(clients::python)
        .await
        .expect("python");
    let out =
        clients::run_client_async(python, vec!["-c".to_owned(), code], Duration::from_secs(30))
            .await;
    let r = clients::expect_success(&out);
    assert_eq!(r["pong"], true, "{r}");
    assert_eq!(count(&server, "tls_redis_py"), 1);
    assert_eq!(count(&server, "tls_stomp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_connection_knows_its_tls_and_client_common_name() {
    let pki = Pki::new();
    let server = common::TestServer::start(Config {
        plugins: shipped_plugins(),
        tls_client_auth_policy: "require-verify".into(),
        ..pki.config()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.tcp_addr)
        .await
        .expect("connect");
    let tls = pki
        .connector(Some(&pki.client))
        .connect(localhost(), tcp)
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    tls.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\ntls_cn\r\n$2\r\nhi\r\n")
        .await
        .expect("publish");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_line(&mut line))
        .await
        .expect("answer in time")
        .expect("answer");
    assert!(line.starts_with(':'), "{line:?}");
    // Still connected: the client is listed with its TLS state.
    let producers = server.broker().producers();
    let resp: Vec<_> = producers.iter().filter(|c| c.protocol == "resp").collect();
    assert_eq!(resp.len(), 1, "{producers:?}");
    assert!(resp[0].meta.tls);
    assert_eq!(resp[0].meta.tls_version, "TLS1.3");
    assert_eq!(resp[0].meta.tls_common_name.as_deref(), Some("good-client"));
}

/// With `--tls-required`, plugin protocols (which have no in-band upgrade)
/// are served over TLS only: a plain RESP connection is closed before the
/// guest runs, the same over TLS answers, and plain V2 still gets nsqd's
/// in-band treatment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_closes_plain_plugin_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let server = common::TestServer::start(Config {
        plugins: shipped_plugins(),
        tls_required: 1,
        ..pki.config()
    })
    .await;
    let mut plain = tokio::net::TcpStream::connect(server.tcp_addr)
        .await
        .expect("connect");
    plain
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .expect("ping");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .expect("read");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    let read = |name: &str| std::fs::read(pki.path(name)).expect("pem");
    let connector = tokio_rustls::TlsConnector::from(
        nsq_gateway::tls::client_config(Some(&read("ca.pem")), None).expect("client config"),
    );
    let tcp = tokio::net::TcpStream::connect(server.tcp_addr)
        .await
        .expect("connect");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(b"*1\r\n$4\r\nPING\r\n").await.expect("ping");
    let mut pong = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut pong))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&pong, b"+PONG\r\n");
}
