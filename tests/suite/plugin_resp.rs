//! The RESP plugin (plugins/resp) against the in-process gateway, configured
//! from the `resp` entry of the default gateway.yaml: raw-socket checks of the
//! wire (replies byte for byte, protocol errors and limits ending in an error
//! and a close while the gateway keeps serving), then real clients: redis-cli
//! (Debian redis-tools) for PUBLISH and SUBSCRIBE, redis-py for pub/sub,
//! LPUSH and BRPOP, and messages crossing to and from pynsq, V2 and STOMP.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::clients::{self, describe, expect_success, strings, unique_topic};
use common::{STEP, TestServer, eventually};
use nsq_gateway::config::Config;
use nsq_gateway::plugin::PluginConfig;
use nsq_gateway::server::Handler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hard limit on one client process.
const HARD_TIMEOUT: Duration = Duration::from_secs(40);

/// The `resp` entry of the repository's gateway.yaml, with its component
/// path made absolute and a connection cap small enough for a test process.
fn resp_plugin(overrides: &[(&str, &str)]) -> PluginConfig {
    let root = clients::repo_root();
    let text = std::fs::read_to_string(root.join("gateway.yaml")).expect("gateway.yaml");
    let config = Config::from_yaml(&text, "gateway.yaml").expect("gateway.yaml parses");
    let mut p = config
        .plugins
        .into_iter()
        .find(|p| p.name == "resp")
        .expect("gateway.yaml has a `resp` plugin");
    p.component = root.join(&p.component);
    p.limits.max_connections = 64;
    for (k, v) in overrides {
        p.config.insert((*k).to_string(), (*v).to_string());
    }
    p
}

async fn server_with(plugins: Vec<PluginConfig>) -> TestServer {
    TestServer::builder().plugins(plugins).start().await
}

async fn server() -> TestServer {
    server_with(vec![resp_plugin(&[])]).await
}

/// A RESP request array.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// A raw client that reads exactly the bytes it expects.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let stream = TcpStream::connect(server.tcp_addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads exactly `want.len()` bytes and compares them as text.
    async fn expect(&mut self, want: &str) {
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(STEP, self.stream.read_exact(&mut got))
            .await
            .expect("reply in time")
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    async fn request(&mut self, args: &[&str], want: &str) {
        self.send(&cmd(args)).await;
        self.expect(want).await;
    }

    /// Everything until the server closes.
    async fn rest(&mut self) -> String {
        let mut all = Vec::new();
        tokio::time::timeout(STEP, self.stream.read_to_end(&mut all))
            .await
            .expect("closed in time")
            .ok();
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Polls the broker until `topic` has `n` channels with a consumer each.
async fn wait_for_consumers(server: &TestServer, topic: &str, n: usize) {
    eventually(STEP, &format!("{n} consumers on {topic}"), async || {
        let stats = server.broker().stats(Some(topic));
        let ready = stats
            .first()
            .map(|t| t.channels.iter().filter(|c| c.client_count > 0).count())
            .unwrap_or(0);
        (ready >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn wire_replies_match_redis() {
    let server = server().await;
    let mut c = Raw::connect(&server).await;
    c.request(&["PING"], "+PONG\r\n").await;
    c.request(&["ECHO", "a\r\nb"], "$4\r\na\r\nb\r\n").await;
    c.request(
        &["HELLO", "4"],
        "-NOPROTO sorry, this protocol version is not supported.\r\n",
    )
    .await;
    c.request(&["SELECT", "0"], "+OK\r\n").await;
    c.request(&["CLIENT", "SETNAME", "me"], "+OK\r\n").await;
    c.request(
        &["NOPE", "x"],
        "-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n",
    )
    .await;
    // No channel on the topic yet: nobody received it.
    c.request(&["PUBLISH", "wire_t", "m1"], ":0\r\n").await;
    // Pipelined inline and array commands, answered in order.
    c.send(b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nok\r\nECHO \"x y\"\n")
        .await;
    c.expect("+PONG\r\n$2\r\nok\r\n$3\r\nx y\r\n").await;

    let mut sub = Raw::connect(&server).await;
    sub.request(
        &["SUBSCRIBE", "wire_t"],
        "*3\r\n$9\r\nsubscribe\r\n$6\r\nwire_t\r\n:1\r\n",
    )
    .await;
    // The message published before any channel existed waited in the topic
    // (NSQ semantics) and arrives first.
    sub.expect("*3\r\n$7\r\nmessage\r\n$6\r\nwire_t\r\n$2\r\nm1\r\n")
        .await;
    c.request(&["PUBLISH", "wire_t", "m2"], ":1\r\n").await;
    sub.expect("*3\r\n$7\r\nmessage\r\n$6\r\nwire_t\r\n$2\r\nm2\r\n")
        .await;
    sub.request(
        &["UNSUBSCRIBE"],
        "*3\r\n$11\r\nunsubscribe\r\n$6\r\nwire_t\r\n:0\r\n",
    )
    .await;
    // The ephemeral channel went with the last subscriber.
    c.request(&["PUBLISH", "wire_t", "m3"], ":0\r\n").await;
    c.request(&["QUIT"], "+OK\r\n").await;
    assert_eq!(c.rest().await, "");
}

#[tokio::test]
async fn lpush_and_brpop_on_the_wire() {
    let server = server().await;
    let mut c = Raw::connect(&server).await;
    let mut popper = Raw::connect(&server).await;
    // BRPOP blocks; the PING pipelined behind it waits for it.
    popper.send(&cmd(&["BRPOP", "wire_q", "0"])).await;
    popper.send(&cmd(&["PING"])).await;
    wait_for_consumers(&server, "wire_q", 1).await;
    c.request(&["LPUSH", "wire_q", "job"], ":1\r\n").await;
    popper
        .expect("*2\r\n$6\r\nwire_q\r\n$3\r\njob\r\n+PONG\r\n")
        .await;
    // A timed-out pop is a nil array, after about the timeout.
    let t0 = tokio::time::Instant::now();
    popper.request(&["BLPOP", "wire_q", "0.2"], "*-1\r\n").await;
    assert!(
        t0.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );
    // The popped message was finished: nothing waits or is in flight.
    let stats = server.broker().stats(Some("wire_q"));
    let ch = &stats[0].channels[0];
    assert_eq!(
        (ch.channel_name.as_str(), ch.depth, ch.in_flight_count),
        ("resp", 0, 0)
    );
    c.request(&["RPUSH", "wire_q", "a", "b", "c"], ":3\r\n")
        .await;
    c.request(&["LLEN", "wire_q"], ":3\r\n").await;
}

#[tokio::test]
async fn protocol_errors_close_like_redis() {
    let server = server_with(vec![resp_plugin(&[
        ("max_bulk_len", "16"),
        ("max_array_len", "4"),
    ])])
    .await;
    for (bad, want) in [
        (
            &b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n:5\r\n"[..],
            "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*2\r\n$4\r\nECHO\r\n$17\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*5\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n\x00\xff\xfegarbage",
            "-ERR Protocol error: expected '$', got ' '\r\n",
        ),
        (
            b"*2\r\n$-1\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ] {
        let mut c = Raw::connect(&server).await;
        c.send(bad).await;
        assert_eq!(c.rest().await, want, "{bad:?}");
    }
    // The same request split at every byte boundary gets the same answer.
    let bad = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$99\r\n";
    for split in 1..bad.len() {
        let mut c = Raw::connect(&server).await;
        c.send(&bad[..split]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        c.send(&bad[split..]).await;
        assert_eq!(
            c.rest().await,
            "$2\r\nhi\r\n-ERR Protocol error: invalid bulk length\r\n",
            "split at {split}"
        );
    }
    // The gateway still serves, and the plugin never trapped.
    let mut c = Raw::connect(&server).await;
    c.request(&["PING"], "+PONG\r\n").await;
    let registry = server.ctx.registry.load();
    let Some(Handler::Plugin(plugin)) = registry.get(b"*1\r\n") else {
        panic!("the RESP plugin is registered for *1\\r\\n");
    };
    let stats = plugin.stats();
    assert_eq!((stats.traps, stats.limit_hits), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let server = server_with(vec![resp_plugin(&[("max_subscriptions", "2")])]).await;
    let mut c = Raw::connect(&server).await;
    c.send(&cmd(&["SUBSCRIBE", "lim_a", "lim_b", "lim_c"]))
        .await;
    c.expect(
        "*3\r\n$9\r\nsubscribe\r\n$5\r\nlim_a\r\n:1\r\n\
         *3\r\n$9\r\nsubscribe\r\n$5\r\nlim_b\r\n:2\r\n\
         -ERR at most 2 subscriptions per connection (max_subscriptions)\r\n",
    )
    .await;
    c.request(&["PING"], "*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
}

// ---- redis-cli ----

/// `redis-cli`, installing Debian's redis-tools when it is missing and we
/// are root (as .ci/run does); otherwise a clear failure.
fn redis_cli() -> PathBuf {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        let works = || {
            Command::new("redis-cli")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if works() {
            return PathBuf::from("redis-cli");
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let out = Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && apt-get install -y -qq redis-tools",
                ])
                .stdin(Stdio::null())
                .output();
            if works() {
                return PathBuf::from("redis-cli");
            }
            panic!("installing redis-tools with apt-get failed: {out:?}");
        }
        panic!(
            "redis-cli is missing: the RESP tests need Debian/Ubuntu's `redis-tools` \
             (run `sudo apt-get install redis-tools`, or .ci/run as root)"
        );
    })
    .clone()
}

/// Runs `redis-cli -p <port> args...`, killed after `timeout`.
async fn redis_cli_run(server: &TestServer, args: &[&str], timeout: Duration) -> Output {
    let cli = tokio::task::spawn_blocking(redis_cli)
        .await
        .expect("redis-cli check");
    let mut full = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        server.tcp_addr.port().to_string(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    clients::run_client_async(cli, full, timeout).await
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_publish_and_subscribe() {
    let server = server().await;
    let topic = unique_topic("cli");
    // Two subscribers: Redis pub/sub fan-out, each gets every message.
    let subscribers: Vec<_> = (0..2)
        .map(|_| {
            let args = vec!["subscribe".to_string(), topic.clone()];
            let port = server.tcp_addr.port().to_string();
            tokio::spawn(async move {
                let cli = tokio::task::spawn_blocking(redis_cli)
                    .await
                    .expect("redis-cli check");
                let mut full = vec!["-p".to_string(), port];
                full.extend(args);
                clients::run_client_async(cli, full, Duration::from_secs(4)).await
            })
        })
        .collect();
    wait_for_consumers(&server, &topic, 2).await;
    let mut replies = Vec::new();
    for body in ["hello", "second message"] {
        let out = redis_cli_run(&server, &["publish", &topic, body], STEP).await;
        assert!(out.status.success(), "{}", describe(&out));
        replies.extend(stdout_lines(&out));
    }
    assert_eq!(replies, ["2", "2"], "PUBLISH counts the receiving channels");
    for s in subscribers {
        let out = s.await.expect("subscriber task");
        let lines = stdout_lines(&out);
        assert_eq!(
            lines,
            [
                "subscribe",
                topic.as_str(),
                "1",
                "message",
                topic.as_str(),
                "hello",
                "message",
                topic.as_str(),
                "second message"
            ],
            "{}",
            describe(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_commands_and_errors() {
    let server = server().await;
    let out = redis_cli_run(&server, &["ping"], STEP).await;
    assert_eq!(stdout_lines(&out), ["PONG"], "{}", describe(&out));
    let out = redis_cli_run(&server, &["lpush", "cli_q", "a", "b"], STEP).await;
    assert_eq!(stdout_lines(&out), ["2"], "{}", describe(&out));
    let out = redis_cli_run(&server, &["brpop", "cli_q", "1"], STEP).await;
    assert_eq!(stdout_lines(&out), ["cli_q", "a"], "{}", describe(&out));
    let out = redis_cli_run(&server, &["get", "k"], STEP).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ERR unknown command 'get'"),
        "{}",
        describe(&out)
    );
}

// ---- redis-py ----

async fn redis_py(server: &TestServer, scenario: &str, topic: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        scenario.to_owned(),
        "--addr".to_owned(),
        server.tcp_addr.to_string(),
        "--topic".to_owned(),
        topic.to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    clients::run_python("resp_scenarios.py", args, HARD_TIMEOUT).await
}

/// redis-py 8 opens with HELLO 3 (RESP3, no fallback); `protocol=2` keeps RESP2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_connects_and_gets_redis_errors() {
    let server = server().await;
    for protocol in ["3", "2"] {
        let out = redis_py(&server, "basics", "unused", &["--protocol", protocol]).await;
        let r = expect_success(&out);
        let want: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
        assert_eq!(strings(&r["pipeline"]), want);
        assert_eq!(r["hello"][5].to_string(), protocol, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_pubsub() {
    let server = server().await;
    for protocol in ["3", "2"] {
        let topic = unique_topic("py_ps");
        let args = ["--count", "20", "--protocol", protocol];
        let out = redis_py(&server, "pubsub", &topic, &args).await;
        let r = expect_success(&out);
        assert_eq!(strings(&r["received"]), strings(&r["sent"]), "{r}");
        assert_eq!(r["publish_replies"], serde_json::json!(vec![1; 20]), "{r}");
        assert_eq!(r["confirm"], serde_json::json!(["subscribe", topic, 1]));
        assert_eq!(
            r["unsubscribe"],
            serde_json::json!(["unsubscribe", topic, 0])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_lpush_and_brpop() {
    let server = server().await;
    let topic = unique_topic("py_q");
    let out = redis_py(&server, "queue", &topic, &["--count", "6"]).await;
    let r = expect_success(&out);
    let sent: Vec<String> = (0..6).map(|i| format!("job-{i}")).collect();
    // NSQ hands out a queue in publish order, whichever end is popped.
    assert_eq!(strings(&r["popped"]), sent, "{r}");
    assert_eq!(
        (r["lpush"].as_i64(), r["rpush"].as_i64()),
        (Some(1), Some(6)),
        "{r}"
    );
    assert_eq!(r["llen"], 6);
    assert_eq!(r["empty_pop"], serde_json::Value::Null);
    let waited = r["empty_pop_ms"].as_f64().unwrap_or(0.0);
    assert!((250.0..2000.0).contains(&waited), "{r}");
    assert_eq!(r["llen_after"], 0);
    assert_eq!(
        r["two_keys"],
        serde_json::json!([format!("{topic}_b"), "from-b"])
    );
}

// ---- across protocols ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_publishes_pynsq_consumes() {
    let server = server().await;
    let topic = unique_topic("cli_to_pynsq");
    let addr = server.tcp_addr.to_string();
    let consumer = {
        let args = vec![
            "consume".to_string(),
            "--nsqd".to_string(),
            addr,
            "--topic".to_string(),
            topic.clone(),
            "--count".to_string(),
            "3".to_string(),
            "--timeout".to_string(),
            "20".to_string(),
        ];
        tokio::spawn(clients::run_python(
            "pynsq_scenarios.py",
            args,
            HARD_TIMEOUT,
        ))
    };
    wait_for_consumers(&server, &topic, 1).await;
    for body in ["from-redis-0", "from-redis-1", "from-redis-2"] {
        let out = redis_cli_run(&server, &["publish", &topic, body], STEP).await;
        assert_eq!(stdout_lines(&out), ["1"], "{}", describe(&out));
    }
    let out = consumer.await.expect("consumer task");
    let r = expect_success(&out);
    assert_eq!(
        strings(&r["received"]),
        ["from-redis-0", "from-redis-1", "from-redis-2"],
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_publishes_redis_cli_subscribes_and_redis_py_pops() {
    let server = server().await;
    let topic = unique_topic("pynsq_to_resp");
    let port = server.tcp_addr.port().to_string();
    let sub_topic = topic.clone();
    let subscriber = tokio::spawn(async move {
        let cli = tokio::task::spawn_blocking(redis_cli)
            .await
            .expect("redis-cli check");
        let args = vec!["-p".to_string(), port, "subscribe".to_string(), sub_topic];
        // redis-cli subscribes until it is killed: the window must cover two
        // Python client start-ups on a loaded CI machine, not just the wire.
        clients::run_client_async(cli, args, Duration::from_secs(20)).await
    });
    wait_for_consumers(&server, &topic, 1).await;
    // pynsq publishes 4 (2 PUB, 2 MPUB) into the topic: the redis-cli
    // subscriber's ephemeral channel gets them, and the queue channel
    // (created by BRPOP below) gets its own copy.
    server
        .broker()
        .topic(&topic)
        .expect("topic")
        .channel("resp")
        .expect("queue channel");
    let args = vec![
        "publish".to_string(),
        "--nsqd".to_string(),
        server.tcp_addr.to_string(),
        "--topic".to_string(),
        topic.clone(),
        "--count".to_string(),
        "4".to_string(),
    ];
    let out = clients::run_python("pynsq_scenarios.py", args, HARD_TIMEOUT).await;
    let sent = strings(&expect_success(&out)["sent"]);
    let out = redis_py(&server, "pop", &topic, &["--count", "4"]).await;
    let r = expect_success(&out);
    assert_eq!(strings(&r["received"]), sent, "{r}");
    let out = subscriber.await.expect("subscriber task");
    let lines = stdout_lines(&out);
    let bodies: Vec<&str> = lines
        .chunks(3)
        .filter(|c| c.first().map(String::as_str) == Some("message"))
        .filter_map(|c| c.get(2).map(String::as_str))
        .collect();
    assert_eq!(bodies, sent, "{}", describe(&out));
}

/// V2 publishes; a STOMP /topic subscriber (stomp.py) and a RESP subscriber
/// (redis-py) each get every message; then RESP publishes to STOMP and
/// STOMP sends to RESP. Skipped while plugins/stomp has not landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_and_resp_consumers_see_the_same_messages() {
    let stomp_wasm = PathBuf::from(env!("NSQ_GATEWAY_PLUGIN_DIR")).join("stomp.wasm");
    if !stomp_wasm.is_file() {
        eprintln!("skipped: {} is not built", stomp_wasm.display());
        return;
    }
    let stomp = PluginConfig {
        name: "stomp".into(),
        component: stomp_wasm,
        magics: vec!["CONN".into(), "STOM".into()],
        config: Default::default(),
        limits: resp_plugin(&[]).limits,
        override_v2: false,
    };
    let server = server_with(vec![resp_plugin(&[]), stomp]).await;
    let addr = server.tcp_addr.to_string();
    let topic = unique_topic("v2_fan");
    let stomp_consumer = |topic: &str, count: &str| {
        let args = vec![
            "consume".to_string(),
            "--addr".to_string(),
            addr.clone(),
            "--topic".to_string(),
            topic.to_string(),
            "--kind".to_string(),
            "topic".to_string(),
            "--count".to_string(),
            count.to_string(),
        ];
        tokio::spawn(clients::run_python(
            "stomp_scenarios.py",
            args,
            HARD_TIMEOUT,
        ))
    };
    let resp_consumer = |topic: &str, count: &str| {
        let args = vec![
            "subscribe".to_string(),
            "--addr".to_string(),
            addr.clone(),
            "--topic".to_string(),
            topic.to_string(),
            "--count".to_string(),
            count.to_string(),
        ];
        tokio::spawn(clients::run_python("resp_scenarios.py", args, HARD_TIMEOUT))
    };

    let s = stomp_consumer(&topic, "3");
    let r = resp_consumer(&topic, "3");
    wait_for_consumers(&server, &topic, 2).await;
    let mut v2 = server.v2().await;
    let sent = ["v2-0", "v2-1", "v2-2"];
    for body in sent {
        v2.write_all(&common::pub_cmd(&topic, body.as_bytes()))
            .await
            .expect("pub");
        let (kind, data) = common::read_frame_within(&mut v2, STEP).await;
        assert_eq!((kind, data.as_slice()), (0, &b"OK"[..]));
    }
    let from_stomp = expect_success(&s.await.expect("stomp task"));
    let from_resp = expect_success(&r.await.expect("resp task"));
    assert_eq!(strings(&from_stomp["received"]), sent);
    assert_eq!(strings(&from_resp["received"]), sent);

    // RESP publishes, STOMP consumes.
    let topic = unique_topic("resp_to_stomp");
    let s = stomp_consumer(&topic, "3");
    wait_for_consumers(&server, &topic, 1).await;
    let out = redis_py(&server, "publish", &topic, &["--count", "3"]).await;
    let pubs = expect_success(&out);
    let got = expect_success(&s.await.expect("stomp task"));
    assert_eq!(strings(&got["received"]), strings(&pubs["sent"]));

    // STOMP sends, RESP consumes.
    let topic = unique_topic("stomp_to_resp");
    let r = resp_consumer(&topic, "3");
    wait_for_consumers(&server, &topic, 1).await;
    let args = vec![
        "send".to_string(),
        "--addr".to_string(),
        addr.clone(),
        "--topic".to_string(),
        topic.clone(),
        "--kind".to_string(),
        "topic".to_string(),
        "--count".to_string(),
        "3".to_string(),
    ];
    let out = clients::run_python("stomp_scenarios.py", args, HARD_TIMEOUT).await;
    let sent = expect_success(&out);
    let got = expect_success(&r.await.expect("resp task"));
    assert_eq!(strings(&got["received"]), strings(&sent["sent"]));
}

/// A pipeline whose replies are far over the host's per-event output limit
/// (4 MiB) is answered in full: the plugin pauses at 1 MiB and resumes from
/// a 0 ms timer once the host has flushed.
#[tokio::test]
async fn long_pipelines_are_answered_in_full() {
    let server = server().await;
    let c = Raw::connect(&server).await;
    let big = "y".repeat(300_000);
    let mut input = Vec::new();
    for _ in 0..20 {
        input.extend(cmd(&["ECHO", &big]));
    }
    input.extend(cmd(&["PING"]));
    let (mut rd, mut wr) = c.stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&input).await.expect("write");
        wr
    });
    let want = format!("$300000\r\n{big}\r\n").repeat(20) + "+PONG\r\n";
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(STEP, rd.read_exact(&mut got))
        .await
        .expect("replies in time")
        .expect("read");
    assert!(got == want.as_bytes(), "replies differ");
    drop(writer.await);
}
