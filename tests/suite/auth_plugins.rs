//! One auth server for every protocol: the RESP and STOMP plugins map
//! `AUTH`/`HELLO 3 AUTH` and CONNECT's `passcode` to the WIT `authenticate`
//! import, and the host enforces the grant on the guests' broker calls.
//! Raw bytes for the exact replies (NOAUTH, WRONGPASS, the pipeline waiting
//! for the auth server, NOPERM outside the grant and nothing published),
//! then real clients: redis-py (RESP2 and RESP3), redis-cli and stomp.py.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth_server::{Answer, AuthServer};
use crate::common::clients::{self, expect_success, unique_topic};
use crate::common::plugins::shipped_plugin;
use crate::common::{TestServer, test_config};
use nsq_gateway::config::Config;

const STEP: Duration = Duration::from_secs(10);

/// The auth server grants `good` publish and subscribe on topics containing
/// `granted`; `empty` is known but granted nothing.
async fn setup() -> (AuthServer, TestServer) {
    let authd = AuthServer::start().await;
    authd.set(
        "good",
        Answer::grant(
            3600,
            "svc",
            &[("granted", &[".*"], &["publish", "subscribe"])],
        ),
    );
    authd.set("empty", Answer::grant(3600, "nobody", &[]));
    let gw = TestServer::start(Config {
        auth_http_addresses: vec![authd.addr.to_string()],
        plugins: vec![shipped_plugin("resp"), shipped_plugin("stomp")],
        ..test_config()
    })
    .await;
    (authd, gw)
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Sends `req` and reads until `expected` bytes arrived; returns them.
async fn exchange(s: &mut TcpStream, req: &[u8], expected: &[u8]) -> Vec<u8> {
    s.write_all(req).await.expect("write");
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(STEP, s.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("no reply, expected {:?}", String::from_utf8_lossy(expected)))
        .expect("read");
    got
}

async fn assert_reply(s: &mut TcpStream, req: &[u8], expected: &str) {
    let got = exchange(s, req, expected.as_bytes()).await;
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[tokio::test]
async fn resp_needs_auth_waits_for_the_auth_server_and_is_held_to_the_grant() {
    let (authd, gw) = setup().await;
    let topic = unique_topic("granted");
    let mut s = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    assert_reply(
        &mut s,
        &cmd(&["PUBLISH", &topic, "x"]),
        "-NOAUTH Authentication required.\r\n",
    )
    .await;
    assert_reply(
        &mut s,
        &cmd(&["HELLO", "3"]),
        "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n",
    )
    .await;
    assert_reply(
        &mut s,
        &cmd(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    assert_reply(
        &mut s,
        &cmd(&["AUTH", "empty"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    // AUTH and the commands pipelined behind it in one write: the PUBLISH
    // runs only once the auth server has answered.
    let mut pipeline = cmd(&["AUTH", "good"]);
    pipeline.extend(cmd(&["PUBLISH", &topic, "x"]));
    assert_reply(&mut s, &pipeline, "+OK\r\n:0\r\n").await;
    assert_eq!(authd.queries().len(), 3);
    assert_eq!(authd.queries()[2]["secret"], "good");
    // Outside the grant the host refuses and nothing is published.
    assert_reply(
        &mut s,
        &cmd(&["PUBLISH", "forbidden", "x"]),
        "-NOPERM publish on \"forbidden\" \"\" is outside the grant of \"svc\"\r\n",
    )
    .await;
    assert!(gw.broker().existing_topic("forbidden").is_none());
    assert!(gw.broker().existing_topic(&topic).is_some());

    // HELLO 3 AUTH <user> <secret> authenticates and switches protocol.
    let mut s = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    s.write_all(&cmd(&["HELLO", "3", "AUTH", "anyone", "good"]))
        .await
        .expect("hello");
    let mut head = [0u8; 4];
    tokio::time::timeout(STEP, s.read_exact(&mut head))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&head, b"%7\r\n", "a RESP3 map");
}

#[tokio::test]
async fn stomp_passcode_goes_to_the_auth_server() {
    let (authd, gw) = setup().await;
    let mut s = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:svc\npasscode:wrong\n\n\0")
        .await
        .expect("connect frame");
    let mut all = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut all))
        .await
        .expect("closed")
        .expect("read");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("ERROR\n"), "{text}");
    assert!(text.contains("message:access refused"), "{text}");

    // CONNECT then SEND in one write: the SEND waits for the verdict.
    let topic = unique_topic("granted");
    let mut s = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    let frames = format!(
        "CONNECT\naccept-version:1.2\nhost:/\npasscode:good\nreceipt:c\n\n\0SEND\ndestination:/queue/{topic}\nreceipt:s\n\nbody\0"
    );
    s.write_all(frames.as_bytes()).await.expect("frames");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("receipt-id:s") {
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("CONNECTED\n"), "{text}");
    assert!(gw.broker().existing_topic(&topic).is_some());
    assert_eq!(authd.queries().len(), 2);

    // A CONNECT without a passcode is refused at once.
    let mut s = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
        .await
        .expect("frame");
    let mut all = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut all))
        .await
        .expect("closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&all).contains("a passcode is required"));
}

async fn run_auth_scenario(gw: &TestServer, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let topic = unique_topic("granted");
    let mut args: Vec<String> = vec![
        scenario.into(),
        "--addr".into(),
        gw.tcp_addr.to_string(),
        "--secret".into(),
        "good".into(),
        "--bad-secret".into(),
        "wrong".into(),
        "--topic".into(),
        topic,
        "--denied-topic".into(),
        "forbidden".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = clients::run_python("auth_scenarios.py", args, Duration::from_secs(60)).await;
    let r = expect_success(&out);
    eprintln!("auth {scenario}: {r}");
    r
}

#[tokio::test]
async fn redis_py_authenticates_with_resp2_and_resp3() {
    let (_authd, gw) = setup().await;
    for protocol in ["2", "3"] {
        let r = run_auth_scenario(&gw, "redis", &["--protocol", protocol]).await;
        let no_auth = r["no_auth"].as_str().unwrap_or_default();
        assert!(no_auth.contains("Authentication required"), "{r}");
        let bad = r["bad_secret"].as_str().unwrap_or_default();
        assert!(bad.contains("invalid username-password pair"), "{r}");
        assert_eq!(r["ping"], true, "{r}");
        assert_eq!(r["named_ping"], true, "{r}");
        assert_eq!(r["subscribed"], true, "{r}");
        assert_eq!(r["receivers"], 1, "{r}");
        assert_eq!(r["received"], "hello-auth", "{r}");
        let denied = r["denied"].as_str().unwrap_or_default();
        assert!(denied.contains("outside the grant"), "{r}");
    }
    assert!(gw.broker().existing_topic("forbidden").is_none());
}

#[tokio::test]
async fn stomp_py_connects_with_its_passcode() {
    let (_authd, gw) = setup().await;
    let r = run_auth_scenario(&gw, "stomp", &[]).await;
    assert!(
        r["bad_errors"].to_string().contains("access refused") || r["bad_connect"].is_string(),
        "{r}"
    );
    assert_eq!(r["received"], serde_json::json!(["hello-stomp"]), "{r}");
    assert!(
        r["denied_errors"].to_string().contains("outside the grant"),
        "{r}"
    );
    assert!(gw.broker().existing_topic("forbidden").is_none());
}

#[tokio::test]
async fn redis_cli_authenticates_with_a_password() {
    let (_authd, gw) = setup().await;
    let topic = unique_topic("granted");
    let port = gw.tcp_addr.port().to_string();
    let run = move |pass: &'static str, topic: String, port: String| {
        std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-a",
                pass,
                "--no-auth-warning",
                "PUBLISH",
                &topic,
                "x",
            ])
            .output()
            .expect("redis-cli (Debian redis-tools) runs")
    };
    let (t, p) = (topic.clone(), port.clone());
    let ok = tokio::task::spawn_blocking(move || run("good", t, p))
        .await
        .expect("join");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "0", "{ok:?}");
    let bad = tokio::task::spawn_blocking(move || run("wrong", topic, port))
        .await
        .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(text.contains("WRONGPASS"), "{text}");
}

/// `redis-cli --tls -a <secret>`: TLS from the first byte, then AUTH; the
/// auth server is told the connection is TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_over_tls_authenticates_and_the_auth_server_sees_tls() {
    let pki = crate::tls_v2::Pki::new();
    let authd = AuthServer::start().await;
    authd.set(
        "good",
        Answer::grant(3600, "svc", &[("granted", &[".*"], &["publish"])]),
    );
    let gw = TestServer::start(Config {
        auth_http_addresses: vec![authd.addr.to_string()],
        plugins: vec![shipped_plugin("resp")],
        ..pki.config()
    })
    .await;
    let topic = unique_topic("granted");
    let out = tokio::process::Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            &pki.path("ca.pem"),
            "--sni",
            "localhost",
        ])
        .args(["-h", "127.0.0.1", "-p", &gw.tcp_addr.port().to_string()])
        .args(["-a", "good", "--no-auth-warning", "PUBLISH", &topic, "x"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("redis-cli in time")
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{out:?}");
    let q = authd.queries();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["tls"], "true");
    assert!(gw.broker().existing_topic(&topic).is_some());
}
