//! The Python plugin (`plugins/jsonl-py`, built with componentize-py by its
//! `build.sh`, once, into `target/plugins-py/`) inside the gateway: messages
//! cross between it and V2 both ways, its replies and errors, manual acks;
//! and the compiled-component cache: a second start reuses the entry, and a
//! corrupted entry is detected, recompiled and rewritten.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common;
use common::clients::{FileLock, lock_path, repo_root};
use common::plugins::{LineClient, line_plugin, plugin, small_limits};
use common::v2::V2Client;
use common::{STEP, TestServer, eventually, test_config};

/// `target/plugins-py/`: the built component, its stamp, and the compile
/// cache the Python tests share (so the 18 MB component compiles once).
fn out_dir() -> PathBuf {
    repo_root().join("target").join("plugins-py")
}

/// Builds `plugins/jsonl-py` unless the stamp says the same sources built it.
fn jsonl_component() -> PathBuf {
    let root = repo_root();
    let dir = root.join("plugins").join("jsonl-py");
    let out = out_dir().join("jsonl.wasm");
    let stamp = out_dir().join("jsonl.stamp");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let want = [
        read(&dir.join("app.py")),
        read(&dir.join("build.sh")),
        read(&root.join("wit").join("gateway.wit")),
    ]
    .join("\n--\n");
    let _lock = FileLock::acquire(&lock_path("jsonl-py"));
    if out.is_file() && read(&stamp) == want {
        return out;
    }
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .arg(&out)
        .status()
        .expect("run plugins/jsonl-py/build.sh");
    assert!(status.success(), "plugins/jsonl-py/build.sh failed");
    std::fs::write(&stamp, want).expect("write the stamp");
    out
}

/// A gateway with the JSONL plugin (and LINE), its compile cache shared.
async fn server() -> TestServer {
    let component = tokio::task::spawn_blocking(jsonl_component)
        .await
        .expect("build");
    let mut jsonl = plugin("jsonl", "unused", "{\"op", small_limits());
    jsonl.component = component;
    jsonl.limits.memory = 64 << 20;
    let mut config = test_config();
    config.plugin_cache_path = out_dir().join("cache").display().to_string();
    // One start at a time: the first compiles the component into the cache
    // (seconds of CPU), the others then load it instead of compiling too.
    static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = START.lock().await;
    TestServer::builder()
        .config(config)
        .plugin(jsonl)
        .start()
        .await
}

/// A JSONL client: one request line, one reply line.
async fn jsonl(server: &TestServer) -> LineClient {
    let mut c = LineClient::connect(server.tcp_addr, b"{\"op").await;
    // The magic is the start of the first request: finish it.
    c.writer
        .write_all(b"\":\"sub\",\"topic\":\"jsonl-hello\",\"channel\":\"c\"}\n")
        .await
        .expect("write");
    assert_eq!(reply(&mut c).await, json!({"ok": true}));
    c
}

async fn reply(c: &mut LineClient) -> Value {
    let line = c.read_line().await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

async fn request(c: &mut LineClient, req: Value) -> Value {
    c.send(&req.to_string()).await;
    reply(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_publishes_and_the_python_plugin_consumes() {
    let server = server().await;
    let mut c = jsonl(&server).await;
    let sub = json!({"op": "sub", "topic": "py-in", "channel": "py"});
    assert_eq!(request(&mut c, sub).await, json!({"ok": true}));
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.publish("py-in", b"from v2 \xe2\x9c\x93").await;
    let got = reply(&mut c).await;
    let msg = &got["msg"];
    assert_eq!(msg["body"], "from v2 \u{2713}", "{got}");
    assert_eq!(msg["attempts"], 1, "{got}");
    assert_eq!(msg["id"].as_str().map(str::len), Some(16), "{got}");
    assert!(msg["timestamp"].as_i64().unwrap_or(0) > 0, "{got}");
    // Auto-acknowledged once written.
    eventually(STEP, "FINed", async || {
        let stats = server.broker().stats(Some("py-in"));
        let ch = stats.first()?.channels.first()?.clone();
        (ch.in_flight_count == 0 && ch.message_count == 1 && ch.depth == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_plugin_publishes_and_v2_consumes() {
    let server = server().await;
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.subscribe("py-out", "v2").await;
    v2.ready(1).await;
    let mut other = V2Client::connect(server.tcp_addr).await;
    other.subscribe("py-out", "other").await;
    let mut c = jsonl(&server).await;
    let pub_ = json!({"op": "pub", "topic": "py-out", "body": "from python"});
    assert_eq!(
        request(&mut c, pub_).await,
        json!({"ok": true, "channels": 2})
    );
    let (id, attempts, body) = v2.message().await;
    assert_eq!((attempts, body.as_slice()), (1, &b"from python"[..]));
    v2.finish(&id).await;
    // A topic without channels: published, received by none.
    let lonely = json!({"op": "pub", "topic": "py-lonely", "body": "x"});
    assert_eq!(
        request(&mut c, lonely).await,
        json!({"ok": true, "channels": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_manual_acknowledgement() {
    let server = server().await;
    let mut c = jsonl(&server).await;
    let err = |text: &str| json!({"ok": false, "error": text});
    c.send("not json").await;
    let bad = reply(&mut c).await;
    assert!(
        bad["error"].as_str().unwrap_or("").starts_with("bad JSON"),
        "{bad}"
    );
    assert_eq!(
        request(&mut c, json!({"op": "nope"})).await,
        err("unknown op 'nope'")
    );
    assert_eq!(
        request(&mut c, json!({"op": "pub", "topic": "t"})).await,
        err("\"body\" must be a string")
    );
    assert_eq!(
        request(
            &mut c,
            json!({"op": "pub", "topic": "bad name!", "body": "x"})
        )
        .await,
        err("invalid_topic_name")
    );
    let manual = json!({"op": "sub", "topic": "py-manual", "channel": "c", "ack": "manual"});
    assert_eq!(request(&mut c, manual).await, json!({"ok": true}));
    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.publish("py-manual", b"one").await;
    let first = reply(&mut c).await;
    let id = first["msg"]["id"].as_str().expect("id").to_string();
    // REQ: delivered again, attempt 2; then FIN.
    let req = json!({"op": "req", "id": id});
    assert_eq!(request(&mut c, req).await, json!({"ok": true}));
    let again = reply(&mut c).await;
    assert_eq!(again["msg"]["attempts"], 2, "{again}");
    assert_eq!(again["msg"]["body"], "one", "{again}");
    let fin = json!({"op": "fin", "id": again["msg"]["id"]});
    assert_eq!(request(&mut c, fin.clone()).await, json!({"ok": true}));
    assert_eq!(
        request(&mut c, fin).await,
        err(&format!(
            "message {} is not in flight on a manual subscription",
            again["msg"]["id"].as_str().unwrap_or("")
        ))
    );
    eventually(STEP, "FINed", async || {
        let stats = server.broker().stats(Some("py-manual"));
        let ch = stats.first()?.channels.first()?.clone();
        (ch.in_flight_count == 0 && ch.requeue_count == 1).then_some(())
    })
    .await;
}

/// The cache entries (wasmtime's files) under `dir`, with their bytes.
fn entries(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let modules = dir.join("wasmtime").join("modules");
    for version in std::fs::read_dir(modules).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(version.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = file.path();
            if p.extension().is_none() {
                let bytes = std::fs::read(&p).expect("read entry");
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

async fn line_server(cache: &Path) -> TestServer {
    let mut config = test_config();
    config.plugin_cache_path = cache.display().to_string();
    let server = TestServer::builder()
        .config(config)
        .plugin(line_plugin())
        .start()
        .await;
    let mut c = LineClient::line(server.tcp_addr).await;
    assert_eq!(c.request("PING").await, "PONG");
    server
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_detected_and_rewritten() {
    let cache = common::temp_data_dir().join("cache");
    // Cold: compiled, one entry written.
    line_server(&cache)
        .await
        .shutdown()
        .await
        .expect("shutdown");
    let cold = entries(&cache);
    assert_eq!(cold.len(), 1, "{cold:?}");
    let (path, good) = cold[0].clone();
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    // Warm: reused as it is.
    line_server(&cache)
        .await
        .shutdown()
        .await
        .expect("shutdown");
    assert_eq!(entries(&cache), cold);
    assert_eq!(
        std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        modified
    );
    // One flipped byte in the middle: detected, recompiled and rewritten.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).expect("corrupt");
    line_server(&cache)
        .await
        .shutdown()
        .await
        .expect("shutdown");
    assert_eq!(entries(&cache), vec![(path.clone(), good.clone())]);
    // Truncated: the same.
    std::fs::write(&path, &good[..good.len() / 3]).expect("truncate");
    line_server(&cache)
        .await
        .shutdown()
        .await
        .expect("shutdown");
    assert_eq!(entries(&cache), vec![(path, good)]);
}

#[tokio::test]
async fn plugin_cache_path_off_writes_nothing() {
    let data = common::temp_data_dir();
    let mut config = test_config();
    config.data_path = data.clone();
    config.plugin_cache_path = "off".into();
    let server = TestServer::builder()
        .config(config)
        .plugin(line_plugin())
        .start()
        .await;
    let mut c = LineClient::line(server.tcp_addr).await;
    assert_eq!(c.request("PING").await, "PONG");
    assert!(!data.join("plugin-cache").exists());
    // The default: under data_path.
    let data = common::temp_data_dir();
    let mut config = test_config();
    config.data_path = data.clone();
    let _server = TestServer::builder()
        .config(config)
        .plugin(line_plugin())
        .start()
        .await;
    assert_eq!(entries(&data.join("plugin-cache")).len(), 1);
}
