//! Router tests for the nsqd-compatible HTTP API: every route and every
//! error response, called with `tower::ServiceExt::oneshot` and no socket.
//! Status codes, bodies and headers are checked exactly against nsqd 1.3.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use nsq_gateway::broker::{ClientInfo, ClientMeta};
use nsq_gateway::config::Config;
use nsq_gateway::server::{Context, Registry};

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn app_with(config: Config) -> (Router, Arc<Context>) {
    let ctx = Context::new(config, Registry::new());
    (nsq_gateway::http::router(ctx.clone()), ctx)
}

fn app() -> (Router, Arc<Context>) {
    app_with(Config::default())
}

/// Sends a request. `content_length` adds the header (a body without it is
/// streamed, like a chunked upload).
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: impl Into<Vec<u8>>,
    content_length: bool,
    extra: &[(&str, &str)],
) -> Resp {
    let body = body.into();
    let mut req = Request::builder().method(method).uri(uri);
    if content_length {
        req = req.header("content-length", body.len().to_string());
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Method::GET, uri, Vec::new(), false, &[]).await
}

async fn post(app: &Router, uri: &str, body: impl Into<Vec<u8>>) -> Resp {
    send(app, Method::POST, uri, body, true, &[]).await
}

/// Asserts nsqd's V1 error: status, `{"message":CODE}`, JSON and V1 headers.
fn assert_err(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.text(), format!("{{\"message\":\"{code}\"}}"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
}

/// Asserts a V1 success with an empty body.
fn assert_empty_ok(r: &Resp) {
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.text());
    assert_eq!(r.text(), "");
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
}

fn assert_ok_text(r: &Resp) {
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.text());
    assert_eq!(r.text(), "OK");
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
}

fn topic_depth(ctx: &Context, topic: &str) -> u64 {
    ctx.broker
        .existing_topic(topic)
        .map(|t| t.stats().depth)
        .unwrap_or_else(|| panic!("topic {topic} exists"))
}

fn small_limits() -> Config {
    Config {
        max_msg_size: 10,
        max_body_size: 40,
        ..Config::default()
    }
}

// ---- ping, unknown paths, wrong methods ----

#[tokio::test]
async fn ping_is_plain_ok() {
    let (app, _) = app();
    let r = get(&app, "/ping").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "OK");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.header("x-nsq-content-type"),
        None,
        "PlainText has no V1 header"
    );
}

#[tokio::test]
async fn unknown_path_is_404_not_found() {
    let (app, _) = app();
    for uri in ["/nope", "/topic", "/topic/explode", "/config", "/"] {
        assert_err(&get(&app, uri).await, 404, "NOT_FOUND");
    }
    assert_err(
        &post(&app, "/channel/frobnicate", "").await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn known_path_wrong_method_is_405() {
    let (app, _) = app();
    assert_err(&get(&app, "/pub?topic=t").await, 405, "METHOD_NOT_ALLOWED");
    let r = get(&app, "/mpub?topic=t").await;
    assert_err(&r, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST"));
    assert_err(
        &get(&app, "/topic/create?topic=t").await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_err(
        &get(&app, "/channel/pause").await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    assert_err(&post(&app, "/ping", "").await, 405, "METHOD_NOT_ALLOWED");
    assert_err(&post(&app, "/stats", "").await, 405, "METHOD_NOT_ALLOWED");
    assert_err(&post(&app, "/metrics", "").await, 405, "METHOD_NOT_ALLOWED");
    let r = send(&app, Method::DELETE, "/config/log_level", "", false, &[]).await;
    assert_err(&r, 405, "METHOD_NOT_ALLOWED");
}

// ---- /pub ----

#[tokio::test]
async fn pub_publishes_and_creates_the_topic() {
    let (app, ctx) = app();
    let r = post(&app, "/pub?topic=orders", "hello").await;
    assert_ok_text(&r);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(topic_depth(&ctx, "orders"), 1);
    let t = ctx.broker.existing_topic("orders").expect("topic");
    assert_eq!(t.stats().message_bytes, 5);
}

#[tokio::test]
async fn pub_with_defer_defers() {
    let (app, ctx) = app();
    let topic = ctx.broker.topic("later").expect("topic");
    let ch = topic.channel("c").expect("channel");
    assert_ok_text(&post(&app, "/pub?topic=later&defer=60000", "x").await);
    let s = ch.stats();
    assert_eq!((s.depth, s.deferred_count), (0, 1));
    assert_ok_text(&post(&app, "/pub?topic=later&defer=0", "y").await);
    assert_eq!(ch.stats().depth, 1);
}

#[tokio::test]
async fn pub_errors_are_nsqds() {
    let (app, ctx) = app_with(small_limits());
    assert_err(&post(&app, "/pub", "x").await, 400, "MISSING_ARG_TOPIC");
    assert_err(&post(&app, "/pub?topic=", "x").await, 400, "INVALID_TOPIC");
    assert_err(
        &post(&app, "/pub?topic=bad!name", "x").await,
        400,
        "INVALID_TOPIC",
    );
    assert_err(
        &post(&app, "/pub?topic=%zz", "x").await,
        400,
        "INVALID_REQUEST",
    );
    assert_err(&post(&app, "/pub?topic=t", "").await, 400, "MSG_EMPTY");
    // Declared too big: refused before the body is read.
    assert_err(
        &post(&app, "/pub?topic=t", "01234567890").await,
        413,
        "MSG_TOO_BIG",
    );
    // Streamed without a length: the capped read refuses it.
    let r = send(
        &app,
        Method::POST,
        "/pub?topic=t",
        "01234567890",
        false,
        &[],
    )
    .await;
    assert_err(&r, 413, "MSG_TOO_BIG");
    // Exactly the limit is fine.
    assert_ok_text(&post(&app, "/pub?topic=t", "0123456789").await);
    for bad in ["-1", "abc", "1.5", "3600001"] {
        let r = post(&app, &format!("/pub?topic=t&defer={bad}"), "x").await;
        assert_err(&r, 400, "INVALID_DEFER");
    }
    // nsqd checks the body before the topic.
    assert_err(&post(&app, "/pub", "").await, 400, "MSG_EMPTY");
    assert_eq!(topic_depth(&ctx, "t"), 1);
}

#[tokio::test]
async fn pub_to_a_full_queue_is_503() {
    let (app, _) = app_with(Config {
        mem_queue_size: 1,
        ..Config::default()
    });
    assert_ok_text(&post(&app, "/pub?topic=full", "1").await);
    assert_err(&post(&app, "/pub?topic=full", "2").await, 503, "PUB_FAILED");
    assert_err(
        &post(&app, "/mpub?topic=full", "3\n4").await,
        503,
        "PUB_FAILED",
    );
}

// ---- /mpub ----

#[tokio::test]
async fn mpub_text_splits_lines_and_skips_empty_ones() {
    let (app, ctx) = app();
    assert_ok_text(&post(&app, "/mpub?topic=m", "a\nbb\n\nccc\n").await);
    assert_eq!(topic_depth(&ctx, "m"), 3);
    // `binary=false` is text too.
    assert_ok_text(&post(&app, "/mpub?topic=m&binary=false", "d\ne").await);
    assert_eq!(topic_depth(&ctx, "m"), 5);
}

fn binary_batch(msgs: &[&[u8]]) -> Vec<u8> {
    let mut v = (msgs.len() as u32).to_be_bytes().to_vec();
    for m in msgs {
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
    }
    v
}

#[tokio::test]
async fn mpub_binary_publishes_every_message() {
    let (app, ctx) = app();
    let body = binary_batch(&[b"one", b"with\nnewline", b"\0\x01"]);
    assert_ok_text(&post(&app, "/mpub?topic=b&binary=true", body.clone()).await);
    assert_eq!(topic_depth(&ctx, "b"), 3);
    // An unrecognised `binary` value counts as true, as in nsqd.
    assert_ok_text(&post(&app, "/mpub?topic=b&binary=yes", body).await);
    assert_eq!(topic_depth(&ctx, "b"), 6);
}

#[tokio::test]
async fn mpub_errors_are_nsqds() {
    let (app, ctx) = app_with(small_limits());
    assert_err(&post(&app, "/mpub", "a").await, 400, "MISSING_ARG_TOPIC");
    assert_err(
        &post(&app, "/mpub?topic=a/b", "a").await,
        400,
        "INVALID_TOPIC",
    );
    let big = "a\n".repeat(21);
    assert_err(
        &post(&app, "/mpub?topic=t", big.clone()).await,
        413,
        "BODY_TOO_BIG",
    );
    let r = send(&app, Method::POST, "/mpub?topic=t", big, false, &[]).await;
    assert_err(&r, 413, "BODY_TOO_BIG");
    assert_err(
        &post(&app, "/mpub?topic=t", "ok\n01234567890").await,
        413,
        "MSG_TOO_BIG",
    );
    let bin = "/mpub?topic=t&binary=true";
    assert_err(&post(&app, bin, vec![0, 0]).await, 413, "BAD_BODY");
    assert_err(&post(&app, bin, binary_batch(&[])).await, 413, "BAD_BODY");
    assert_err(
        &post(&app, bin, binary_batch(&[b"01234567890"])).await,
        413,
        "BAD_MESSAGE",
    );
    let mut truncated = binary_batch(&[b"abc"]);
    truncated.pop();
    assert_err(&post(&app, bin, truncated).await, 413, "BAD_MESSAGE");
    // Nothing of a refused batch was published.
    assert_eq!(topic_depth(&ctx, "t"), 0);
}

// ---- /topic/* ----

#[tokio::test]
async fn topic_admin_routes() {
    let (app, ctx) = app();
    assert_empty_ok(&post(&app, "/topic/create?topic=adm", "").await);
    assert!(ctx.broker.existing_topic("adm").is_some());
    assert_ok_text(&post(&app, "/pub?topic=adm", "x").await);
    assert_empty_ok(&post(&app, "/topic/pause?topic=adm", "").await);
    assert!(ctx.broker.existing_topic("adm").expect("topic").is_paused());
    assert_empty_ok(&post(&app, "/topic/unpause?topic=adm", "").await);
    assert!(!ctx.broker.existing_topic("adm").expect("topic").is_paused());
    assert_empty_ok(&post(&app, "/topic/empty?topic=adm", "").await);
    assert_eq!(topic_depth(&ctx, "adm"), 0);
    assert_empty_ok(&post(&app, "/topic/delete?topic=adm", "").await);
    assert!(ctx.broker.existing_topic("adm").is_none());
}

#[tokio::test]
async fn topic_admin_errors() {
    let (app, _) = app();
    for route in ["create", "delete", "empty", "pause", "unpause"] {
        let r = post(&app, &format!("/topic/{route}"), "").await;
        assert_err(&r, 400, "MISSING_ARG_TOPIC");
        let r = post(&app, &format!("/topic/{route}?topic=%"), "").await;
        assert_err(&r, 400, "INVALID_REQUEST");
    }
    assert_err(
        &post(&app, "/topic/create?topic=b@d", "").await,
        400,
        "INVALID_TOPIC",
    );
    assert_err(
        &post(&app, "/topic/empty?topic=b@d", "").await,
        400,
        "INVALID_TOPIC",
    );
    for route in ["delete", "empty", "pause", "unpause"] {
        let r = post(&app, &format!("/topic/{route}?topic=ghost"), "").await;
        assert_err(&r, 404, "TOPIC_NOT_FOUND");
    }
    // nsqd does not validate the name on delete: a bad one is not found.
    assert_err(
        &post(&app, "/topic/delete?topic=b@d", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );
}

// ---- /channel/* ----

#[tokio::test]
async fn channel_admin_routes() {
    let (app, ctx) = app();
    assert_empty_ok(&post(&app, "/topic/create?topic=ct", "").await);
    assert_empty_ok(&post(&app, "/channel/create?topic=ct&channel=ch", "").await);
    let topic = ctx.broker.existing_topic("ct").expect("topic");
    let ch = topic.existing_channel("ch").expect("channel");
    assert_ok_text(&post(&app, "/pub?topic=ct", "x").await);
    assert_eq!(ch.stats().depth, 1);
    assert_empty_ok(&post(&app, "/channel/pause?topic=ct&channel=ch", "").await);
    assert!(ch.is_paused());
    assert_empty_ok(&post(&app, "/channel/unpause?topic=ct&channel=ch", "").await);
    assert!(!ch.is_paused());
    assert_empty_ok(&post(&app, "/channel/empty?topic=ct&channel=ch", "").await);
    assert_eq!(ch.stats().depth, 0);
    assert_empty_ok(&post(&app, "/channel/delete?topic=ct&channel=ch", "").await);
    assert!(topic.existing_channel("ch").is_none());
}

#[tokio::test]
async fn channel_admin_errors() {
    let (app, _) = app();
    assert_empty_ok(&post(&app, "/topic/create?topic=ct", "").await);
    for route in ["create", "delete", "empty", "pause", "unpause"] {
        let path = format!("/channel/{route}");
        let r = post(&app, &path, "").await;
        assert_err(&r, 400, "MISSING_ARG_TOPIC");
        let r = post(&app, &format!("{path}?topic=b@d&channel=c"), "").await;
        assert_err(&r, 400, "INVALID_ARG_TOPIC");
        let r = post(&app, &format!("{path}?topic=ct"), "").await;
        assert_err(&r, 400, "MISSING_ARG_CHANNEL");
        let r = post(&app, &format!("{path}?topic=ct&channel=b@d"), "").await;
        assert_err(&r, 400, "INVALID_ARG_CHANNEL");
        let r = post(&app, &format!("{path}?topic=ghost&channel=c"), "").await;
        assert_err(&r, 404, "TOPIC_NOT_FOUND");
        let r = post(&app, &format!("{path}?topic=ct&channel=c;x"), "").await;
        assert_err(&r, 400, "INVALID_REQUEST");
    }
    for route in ["delete", "empty", "pause", "unpause"] {
        let r = post(&app, &format!("/channel/{route}?topic=ct&channel=nope"), "").await;
        assert_err(&r, 404, "CHANNEL_NOT_FOUND");
    }
}

// ---- /stats ----

fn subscriber(ctx: &Context, topic: &str, channel: &str) -> nsq_gateway::broker::Consumer {
    let ch = ctx
        .broker
        .topic(topic)
        .and_then(|t| t.channel(channel))
        .expect("channel");
    let client = ClientInfo::new(
        ctx.broker.next_client_id(),
        "127.0.0.1:5555".parse().expect("addr"),
        "V2",
    );
    client.set_meta(ClientMeta {
        client_id: "cid".into(),
        hostname: "box".into(),
        user_agent: "test/1.0".into(),
        sample_rate: 0,
        ..ClientMeta::default()
    });
    ch.subscribe(Arc::new(client)).expect("subscribe")
}

#[tokio::test]
async fn stats_json_has_nsqds_shape() {
    let (app, ctx) = app();
    let _consumer = subscriber(&ctx, "st", "c1");
    assert_ok_text(&post(&app, "/pub?topic=st", "hello").await);
    let r = get(&app, "/stats?format=json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let v = r.json();
    for key in [
        "version",
        "health",
        "start_time",
        "topics",
        "memory",
        "producers",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["health"], "OK");
    assert!(v["start_time"].as_i64().unwrap_or(0) > 1_000_000_000);
    let t = &v["topics"][0];
    for key in [
        "topic_name",
        "channels",
        "depth",
        "backend_depth",
        "message_count",
        "message_bytes",
        "paused",
        "e2e_processing_latency",
    ] {
        assert!(t.get(key).is_some(), "topic missing {key}: {t}");
    }
    assert_eq!(t["topic_name"], "st");
    assert_eq!(t["message_count"], 1);
    assert_eq!(t["message_bytes"], 5);
    assert_eq!(t["e2e_processing_latency"]["count"], 0);
    let c = &t["channels"][0];
    for key in [
        "channel_name",
        "depth",
        "backend_depth",
        "in_flight_count",
        "deferred_count",
        "message_count",
        "requeue_count",
        "timeout_count",
        "client_count",
        "clients",
        "paused",
        "e2e_processing_latency",
    ] {
        assert!(c.get(key).is_some(), "channel missing {key}: {c}");
    }
    assert_eq!(c["channel_name"], "c1");
    assert_eq!(c["depth"], 1);
    assert_eq!(c["client_count"], 1);
    let cl = &c["clients"][0];
    for key in [
        "client_id",
        "hostname",
        "version",
        "remote_address",
        "state",
        "ready_count",
        "in_flight_count",
        "message_count",
        "finish_count",
        "requeue_count",
        "connect_ts",
        "sample_rate",
        "deflate",
        "snappy",
        "user_agent",
        "tls",
        "tls_cipher_suite",
        "tls_version",
        "tls_negotiated_protocol",
        "tls_negotiated_protocol_is_mutual",
        "protocol",
    ] {
        assert!(cl.get(key).is_some(), "client missing {key}: {cl}");
    }
    assert_eq!(cl["client_id"], "cid");
    assert_eq!(cl["hostname"], "box");
    assert_eq!(cl["version"], "V2");
    assert_eq!(cl["protocol"], "V2");
    assert_eq!(cl["state"], 3);
    assert_eq!(cl["remote_address"], "127.0.0.1:5555");
    assert_eq!(cl["user_agent"], "test/1.0");
    assert!(cl.get("authed").is_none(), "authed is omitempty");
    // Extensions: connections per protocol and per plugin.
    assert!(v["protocols"].is_array());
    assert_eq!(v["plugins"], serde_json::json!([]));
}

#[tokio::test]
async fn stats_filters_and_flags() {
    let (app, ctx) = app();
    let _a = subscriber(&ctx, "alpha", "x");
    let _b = subscriber(&ctx, "alpha", "y");
    let _c = subscriber(&ctx, "beta", "y");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| {
                t["channels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |c| {
                        format!(
                            "{}/{}",
                            t["topic_name"].as_str().unwrap_or(""),
                            c["channel_name"].as_str().unwrap_or("")
                        )
                    })
            })
            .collect()
    };
    let v = get(&app, "/stats?format=json").await.json();
    assert_eq!(names(&v), ["alpha/x", "alpha/y", "beta/y"]);
    let v = get(&app, "/stats?format=json&topic=alpha").await.json();
    assert_eq!(names(&v), ["alpha/x", "alpha/y"]);
    let v = get(&app, "/stats?format=json&channel=y").await.json();
    assert_eq!(names(&v), ["alpha/y", "beta/y"]);
    let v = get(&app, "/stats?format=json&topic=alpha&channel=x")
        .await
        .json();
    assert_eq!(names(&v), ["alpha/x"]);
    let v = get(&app, "/stats?format=json&topic=nope").await.json();
    assert_eq!(v["topics"], serde_json::json!([]));

    let v = get(&app, "/stats?format=json&include_clients=false")
        .await
        .json();
    assert_eq!(
        v["topics"][0]["channels"][0]["clients"],
        serde_json::json!([])
    );
    assert_eq!(v["topics"][0]["channels"][0]["client_count"], 1);
    let v = get(&app, "/stats?format=json&include_mem=0").await.json();
    assert!(v.get("memory").is_none());
    let v = get(&app, "/stats?format=json&include_mem=true")
        .await
        .json();
    assert!(v["memory"]["heap_in_use_bytes"].as_u64().unwrap_or(0) > 0);
    assert_err(&get(&app, "/stats?topic=%zz").await, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn stats_text_is_the_default_format() {
    let (app, ctx) = app();
    let _c = subscriber(&ctx, "tx", "chan");
    assert_ok_text(&post(&app, "/pub?topic=tx", "hello").await);
    assert_empty_ok(&post(&app, "/channel/pause?topic=tx&channel=chan", "").await);
    let r = get(&app, "/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = r.text();
    assert!(text.starts_with("nsq-gateway v"), "{text}");
    assert!(text.contains("\nstart_time "), "{text}");
    assert!(text.contains("\nuptime "), "{text}");
    assert!(text.contains("\nHealth: OK\n"), "{text}");
    assert!(text.contains("\nMemory:\n"), "{text}");
    assert!(
        text.contains(
            "\n   [tx             ] depth: 0     be-depth: 0     msgs: 1        e2e%: \n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "   *P [chan                     ] depth: 1     be-depth: 0     inflt: 0    def: 0    re-q: 0     timeout: 0     msgs: 1        e2e%: \n"
        ),
        "{text}"
    );
    assert!(text.contains("        [V2 box:5555 test/1.0    ] state: 3 inflt: 0    rdy: 0    fin: 0        re-q: 0        msgs: 0        connected: "), "{text}");
    assert!(text.contains("\nProducers: None\n"), "{text}");

    let r = get(&app, "/stats?format=text&include_mem=false&topic=none").await;
    let text = r.text();
    assert!(!text.contains("Memory:"), "{text}");
    assert!(text.contains("\nTopics: None\n"), "{text}");
}

// ---- /info and /config ----

#[tokio::test]
async fn info_reports_version_and_limits() {
    let (app, _) = app();
    let r = get(&app, "/info").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let v = r.json();
    assert!(
        v["version"]
            .as_str()
            .unwrap_or("")
            .starts_with("1.3.0+nsq-gateway.")
    );
    assert_eq!(v["tcp_port"], 4150);
    assert_eq!(v["http_port"], 4151);
    assert_eq!(v["max_heartbeat_interval"], 60_000_000_000u64);
    assert_eq!(v["max_output_buffer_size"], 65_536);
    assert_eq!(v["max_output_buffer_timeout"], 30_000_000_000u64);
    assert_eq!(v["max_deflate_level"], 6);
    for key in ["broadcast_address", "hostname", "start_time"] {
        assert!(v.get(key).is_some(), "{key}");
    }
}

#[tokio::test]
async fn config_reads_options() {
    let (app, _) = app();
    let r = get(&app, "/config/mem_queue_size").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "10000".into()));
    let r = get(&app, "/config/tcp_address").await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, "0.0.0.0:4150".into())
    );
    let r = get(&app, "/config/msg_timeout").await;
    assert_eq!(r.text(), "60000000000");
    let r = get(&app, "/config/nsqlookupd_tcp_addresses").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "[]".into()));
    assert_err(
        &get(&app, "/config/no_such_option").await,
        400,
        "INVALID_OPTION",
    );
    assert_err(&get(&app, "/config/plugins").await, 400, "INVALID_OPTION");
}

async fn put(app: &Router, uri: &str, body: &str) -> Resp {
    send(app, Method::PUT, uri, body, true, &[]).await
}

#[tokio::test]
async fn config_changes_runtime_options() {
    let (app, _) = app();
    let r = put(&app, "/config/log_level", "debug").await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, "debug".into()));
    assert_eq!(get(&app, "/config/log_level").await.text(), "debug");
    let addrs = r#"["127.0.0.1:4160","10.0.0.1:4160"]"#;
    let r = put(&app, "/config/nsqlookupd_tcp_addresses", addrs).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, addrs.into()));
    assert_eq!(
        get(&app, "/config/nsqlookupd_tcp_addresses").await.text(),
        addrs
    );

    assert_err(
        &put(&app, "/config/log_level", "loud").await,
        400,
        "INVALID_VALUE",
    );
    assert_err(
        &put(&app, "/config/nsqlookupd_tcp_addresses", "{").await,
        400,
        "INVALID_VALUE",
    );
    assert_err(
        &put(&app, "/config/log_level", "").await,
        413,
        "INVALID_VALUE",
    );
    let (small, _) = app_with(small_limits());
    assert_err(
        &put(&small, "/config/log_level", "01234567890").await,
        413,
        "INVALID_VALUE",
    );
    assert_err(
        &put(&app, "/config/mem_queue_size", "5").await,
        400,
        "INVALID_OPTION",
    );
}

// ---- /metrics ----

#[tokio::test]
async fn metrics_expose_topics_channels_and_process() {
    let (app, ctx) = app();
    let _c = subscriber(&ctx, "mt", "mc");
    assert_ok_text(&post(&app, "/pub?topic=mt", "hello").await);
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for line in [
        "nsq_topic_depth{topic=\"mt\"} 0",
        "nsq_topic_messages_total{topic=\"mt\"} 1",
        "nsq_channel_depth{topic=\"mt\",channel=\"mc\"} 1",
        "nsq_channel_clients{topic=\"mt\",channel=\"mc\"} 1",
        "nsq_channel_messages_total{topic=\"mt\",channel=\"mc\"} 1",
        "# TYPE nsq_channel_messages_total counter",
        "nsq_topics 1",
        "nsq_channels 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for name in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "missing {name} in\n{text}"
        );
    }
    assert!(!text.contains("# EOF"));
    assert!(
        !text.contains("..\n"),
        "help texts end in one period: {text}"
    );

    let r = send(
        &app,
        Method::GET,
        "/metrics",
        "",
        false,
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE nsq_channel_messages counter\n"),
        "{text}"
    );

    // A deleted topic vanishes from the next scrape.
    drop(_c);
    assert_empty_ok(&post(&app, "/topic/delete?topic=mt", "").await);
    let text = get(&app, "/metrics").await.text();
    assert!(!text.contains("topic=\"mt\""), "{text}");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn bodies_past_axums_default_limit_are_accepted_up_to_max_body_size() {
    let (app, ctx) = app();
    // 3 MiB: over axum's 2 MiB default extractor limit, under max-body-size.
    let line = format!("{}\n", "x".repeat(1023));
    let body = line.repeat(3 * 1024);
    assert_ok_text(&post(&app, "/mpub?topic=big", body).await);
    assert_eq!(topic_depth(&ctx, "big"), 3 * 1024);
    let body = "y".repeat(1_048_576);
    assert_ok_text(&post(&app, "/pub?topic=big", body).await);
}
