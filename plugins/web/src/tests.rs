//! WEB's session against the SDK's recording host: routing and error
//! responses, the upgrade and the JSON vocabulary over frames, auto and
//! manual acks, SSE events and keep-alives, the Origin check, auth, the
//! head timeout, and config validation.

use nsq_sdk::testing::{Call, Recorder, Session, connect_info, message, validate};
use nsq_sdk::{AuthError, BrokerError, Identity};
use serde_json::{Value, json};

use crate::Web;
use crate::ws::client_frame;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const M: [u8; 4] = [9, 8, 7, 6];

fn open() -> Session<Web> {
    Session::<Web>::open(b"GET ", &[])
}

fn upgrade_head(extra: &str) -> String {
    format!(
        "/ws HTTP/1.1\r\nHost: 127.0.0.1:4150\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A session upgraded to a WebSocket, output and calls cleared.
fn socket() -> Session<Web> {
    let mut s = open();
    s.data(upgrade_head("").as_bytes());
    let head = s.text();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(s.host.timer, None, "the head timer is disarmed");
    s
}

/// Unmasked server frames in `bytes`: (opcode, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let op = bytes[at] & 0x0f;
        let (len, head) = match bytes[at + 1] {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[at + 2..at + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        out.push((op, bytes[at + head..at + head + len].to_vec()));
        at += head + len;
    }
    out
}

/// The JSON text frames written so far.
fn replies(s: &mut Session<Web>) -> Vec<Value> {
    frames(&s.host.take_output())
        .into_iter()
        .map(|(op, p)| {
            assert_eq!(op, 1, "a text frame");
            serde_json::from_slice(&p).expect("JSON")
        })
        .collect()
}

fn send(s: &mut Session<Web>, v: Value) -> Vec<Value> {
    s.data(&client_frame(true, 1, M, v.to_string().as_bytes()));
    replies(s)
}

#[test]
fn serves_the_console_page_and_closes() {
    let mut s = open();
    assert_eq!(s.host.timer, Some(10_000), "head timeout armed at connect");
    s.data(b"/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let page = s.text();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    for id in [
        "topic",
        "channel",
        "subscribe",
        "messages",
        "pub-topic",
        "pub-body",
        "publish",
        "topics",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "#{id}");
    }
    assert!(s.host.closed);
}

#[test]
fn error_responses() {
    for (magic, rest, status) in [
        (b"GET ", "/nope HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"POST", " /ws HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
        (b"GET ", "/ HTTP/9\r\n\r\n", "400 Bad Request"),
        (b"GET ", "/sse HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (
            b"GET ",
            "/ws HTTP/1.1\r\nHost: h\r\n\r\n",
            "400 Bad Request",
        ),
    ] {
        let mut s = Session::<Web>::open(magic, &[]);
        s.data(rest.as_bytes());
        let text = s.text();
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{rest:?}: {text}"
        );
        assert!(text.contains("Content-Type: text/plain"));
        assert!(s.host.closed, "{rest:?}");
        s.data(b"more");
        assert_eq!(s.text(), "", "nothing after the response");
    }
}

#[test]
fn slow_loris_gets_408_at_the_timer() {
    let mut s = Session::<Web>::open(b"GET ", &[("header_timeout_ms", "500")]);
    assert_eq!(s.host.timer, Some(500));
    s.data(b"/ HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(s.text(), "");
    s.timer();
    assert!(s.text().starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    assert!(s.host.closed);
}

#[test]
fn publish_subscribe_auto_ack() {
    let mut s = socket();
    s.host.channels = 2;
    let r = send(&mut s, json!({"op":"pub","topic":"t","body":"hi","ref":1}));
    assert_eq!(r, [json!({"ok":true,"channels":2,"ref":1})]);
    let r = send(&mut s, json!({"op":"sub","topic":"t","channel":"c"}));
    assert_eq!(
        r,
        [json!({"ok":true,"topic":"t","channel":"c","prefetch":100})]
    );
    s.messages(0, vec![message(1, b"one"), message(2, b"\xff\x00")]);
    let r = replies(&mut s);
    assert_eq!(r[0]["msg"]["body"], "one");
    assert_eq!(r[0]["msg"]["topic"], "t");
    assert_eq!(r[1]["msg"]["body"], "/wA=");
    assert_eq!(r[1]["msg"]["encoding"], "base64");
    assert_eq!(
        s.calls(),
        [
            Call::Publish {
                topic: "t".into(),
                body: b"hi".to_vec()
            },
            Call::Subscribe {
                topic: "t".into(),
                channel: "c".into()
            },
            Call::SetReady { sub: 0, count: 100 },
            Call::FinishMany {
                sub: 0,
                ids: vec![format!("{:016x}", 1), format!("{:016x}", 2)]
            },
        ]
    );
}

#[test]
fn manual_acks_and_ephemeral_channels() {
    let mut s = socket();
    let r = send(
        &mut s,
        json!({"op":"sub","topic":"t","ack":"manual","prefetch":3}),
    );
    let channel = r[0]["channel"].as_str().unwrap_or_default();
    assert!(is_ephemeral_name(channel), "{channel}");
    assert_eq!(r[0]["prefetch"], 3);
    s.calls();
    s.messages(0, vec![message(7, b"x"), message(8, b"y")]);
    assert_eq!(replies(&mut s).len(), 2);
    assert_eq!(s.calls(), [], "nothing FINed by the plugin");
    let id7 = format!("{:016x}", 7);
    let id8 = format!("{:016x}", 8);
    assert_eq!(
        send(&mut s, json!({"op":"fin","id":id7})),
        [json!({"ok":true})]
    );
    assert_eq!(
        send(&mut s, json!({"op":"req","id":id8,"delay_ms":50})),
        [json!({"ok":true})]
    );
    let r = send(&mut s, json!({"op":"fin","id":id7}));
    assert_eq!(r[0]["ok"], false, "already acknowledged");
    assert_eq!(
        s.calls(),
        [
            Call::Finish { sub: 0, id: id7 },
            Call::Requeue {
                sub: 0,
                id: id8,
                delay_ms: 50
            }
        ]
    );
}

#[test]
fn broker_errors_and_bad_requests_are_replies() {
    let mut s = socket();
    s.host.fail_next("publish", BrokerError::InvalidTopicName);
    let r = send(&mut s, json!({"op":"pub","topic":"bad name","body":"x"}));
    assert_eq!(r[0]["ok"], false);
    assert!(
        r[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid topic name")
    );
    let r = send(&mut s, json!({"op":"what"}));
    assert_eq!(r[0]["error"], "unknown op \"what\"");
    s.data(&client_frame(true, 1, M, b"{nope"));
    assert!(
        replies(&mut s)[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("bad JSON")
    );
    assert!(!s.host.closed);
}

#[test]
fn control_frames_and_fragments() {
    let mut s = socket();
    // A ping, then a request in two fragments with a ping between, in one chunk.
    let mut chunk = client_frame(true, 9, M, b"p1");
    chunk.extend(client_frame(false, 1, M, br#"{"op":"pub","#));
    chunk.extend(client_frame(true, 9, M, b"p2"));
    chunk.extend(client_frame(true, 0, M, br#""topic":"t","body":"b"}"#));
    // Fed a byte at a time, as a slow client would.
    for b in &chunk {
        s.data(&[*b]);
    }
    let f = frames(&s.host.take_output());
    assert_eq!(f[0], (10, b"p1".to_vec()));
    assert_eq!(f[1], (10, b"p2".to_vec()));
    assert_eq!(f[2].0, 1);
    // The close handshake: the code is echoed and the connection ends.
    s.data(&client_frame(true, 8, M, b"\x03\xe8bye"));
    assert_eq!(frames(&s.host.take_output()), [(8, b"\x03\xe8".to_vec())]);
    assert!(s.host.closed);
}

#[test]
fn oversized_and_bad_frames_close_with_their_codes() {
    let mut s = Session::<Web>::open(b"GET ", &[("max_frame_bytes", "1000")]);
    s.data(upgrade_head("").as_bytes());
    s.text();
    // Only the header of a 1001-byte frame: refused before the payload.
    s.data(&client_frame(true, 2, M, &[0; 1001])[..8]);
    let f = frames(&s.host.take_output());
    assert_eq!(f[0].0, 8);
    assert_eq!(&f[0].1[..2], &1009u16.to_be_bytes());
    // Input is drained (and dropped) until the linger timer ends it.
    assert!(!s.host.closed);
    s.data(&[0; 500]);
    assert_eq!(s.text(), "");
    assert_eq!(s.host.timer, Some(1000));
    s.timer();
    assert!(s.host.closed);

    let mut s = socket();
    s.data(&client_frame(true, 1, M, b"\xc3"));
    assert_eq!(
        &frames(&s.host.take_output())[0].1[..2],
        &1007u16.to_be_bytes()
    );
    let mut s = socket();
    let mut unmasked = client_frame(true, 1, M, b"x");
    unmasked[1] &= 0x7f;
    s.data(&unmasked);
    assert_eq!(
        &frames(&s.host.take_output())[0].1[..2],
        &1002u16.to_be_bytes()
    );
}

#[test]
fn bytes_behind_the_upgrade_are_frames() {
    let mut s = open();
    let mut bytes = upgrade_head("").into_bytes();
    bytes.extend(client_frame(true, 9, M, b"early"));
    s.data(&bytes);
    let out = s.host.take_output();
    let body = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(frames(&out[body..]), [(10, b"early".to_vec())]);
}

#[test]
fn stats_over_the_socket() {
    let mut s = socket();
    s.host.stats = vec![nsq_sdk::TopicStats {
        name: "t".into(),
        depth: 3,
        message_count: 9,
        paused: false,
        channels: vec![nsq_sdk::ChannelStats {
            name: "c".into(),
            depth: 2,
            in_flight: 1,
            deferred: 0,
            message_count: 9,
            requeue_count: 0,
            timeout_count: 0,
            clients: 1,
            paused: false,
        }],
    }];
    let r = send(&mut s, json!({"op":"stats","ref":"s"}));
    assert_eq!(r[0]["ref"], "s");
    assert_eq!(r[0]["topics"][0]["name"], "t");
    assert_eq!(r[0]["topics"][0]["channels"][0]["in_flight"], 1);
}

#[test]
fn origin_check() {
    let cases = [
        (&[][..], "Origin: http://127.0.0.1:4150\r\n", true),
        (&[], "", true),
        (&[], "Origin: http://evil.example\r\n", false),
        (&[], "Origin: null\r\n", false),
        (
            &[("allowed_origins", "https://app.example, http://x")][..],
            "Origin: https://app.example\r\n",
            true,
        ),
        (
            &[("allowed_origins", "https://app.example")][..],
            "Origin: http://127.0.0.1:4150\r\n",
            false,
        ),
        (
            &[("allowed_origins", "*")][..],
            "Origin: http://anything\r\n",
            true,
        ),
    ];
    for (config, header, allowed) in cases {
        let mut s = Session::<Web>::open(b"GET ", config);
        s.data(upgrade_head(header).as_bytes());
        let text = s.text();
        let want = if allowed {
            "HTTP/1.1 101"
        } else {
            "HTTP/1.1 403"
        };
        assert!(text.starts_with(want), "{config:?} {header:?}: {text}");
    }
}

#[test]
fn sse_events_fin_and_keepalive() {
    let mut s = Session::<Web>::open(b"GET ", &[("sse_keepalive_ms", "1000")]);
    s.data(b"/sse?topic=t HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = s.text();
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n: keep-alive\n\n"));
    assert_eq!(s.host.timer, Some(1000));
    let calls = s.calls();
    match &calls[..] {
        [
            Call::Subscribe { topic, channel },
            Call::SetReady { sub: 0, count: 100 },
        ] => assert!(topic == "t" && is_ephemeral_name(channel), "{calls:?}"),
        other => panic!("{other:?}"),
    }
    s.messages(0, vec![message(1, b"a\nb"), message(2, b"c")]);
    assert_eq!(
        s.text(),
        format!(
            "id: {:016x}\ndata: a\ndata: b\n\nid: {:016x}\ndata: c\n\n",
            1, 2
        )
    );
    assert_eq!(
        s.calls(),
        [Call::FinishMany {
            sub: 0,
            ids: vec![format!("{:016x}", 1), format!("{:016x}", 2)]
        }]
    );
    s.timer();
    assert_eq!(s.text(), ": keep-alive\n\n");
    assert_eq!(s.host.timer, Some(1000));
}

#[test]
fn sse_with_a_named_channel_and_a_refused_one() {
    let mut s = open();
    s.data(b"/sse?topic=t&channel=c%231 HTTP/1.1\r\n\r\n");
    assert!(s.calls().contains(&Call::Subscribe {
        topic: "t".into(),
        channel: "c#1".into()
    }));
    let mut s = open();
    s.host
        .fail_next("subscribe", BrokerError::InvalidChannelName);
    s.data(b"/sse?topic=t&channel=c%231 HTTP/1.1\r\n\r\n");
    assert!(s.text().starts_with("HTTP/1.1 400 Bad Request\r\n"));
}

fn auth_session() -> Session<Web> {
    let mut host = Recorder::default();
    host.auth_required = true;
    Session::open_with(connect_info(b"GET ", &[]), host)
}

#[test]
fn auth_by_bearer_or_query() {
    let mut s = auth_session();
    s.data(upgrade_head("").as_bytes());
    assert!(s.text().starts_with("HTTP/1.1 401 Unauthorized\r\n"));

    let mut s = auth_session();
    s.data(upgrade_head("Authorization: Bearer s3cret\r\n").as_bytes());
    assert_eq!(s.text(), "", "nothing until the answer");
    assert_eq!(
        s.calls(),
        [Call::Authenticate {
            secret: "s3cret".into()
        }]
    );
    s.authenticated(Ok(Identity {
        identity: "me".into(),
        identity_url: String::new(),
        permission_count: 1,
    }));
    assert!(s.text().starts_with("HTTP/1.1 101"));

    let mut s = auth_session();
    s.data(b"/sse?topic=t&secret=q HTTP/1.1\r\n\r\n");
    assert_eq!(s.calls(), [Call::Authenticate { secret: "q".into() }]);
    s.authenticated(Err(AuthError::Failed));
    assert!(s.text().starts_with("HTTP/1.1 401 Unauthorized\r\n"));
    assert!(s.host.closed);

    // The page itself needs no secret: its socket sends one.
    let mut s = auth_session();
    s.data(b"/ HTTP/1.1\r\n\r\n");
    assert!(s.text().starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn config_is_validated() {
    assert_eq!(
        validate::<Web>(&[
            ("max_frame_bytes", "4096"),
            ("allowed_origins", "http://a"),
            ("header_timeout_ms", "100"),
            ("prefetch", "5"),
            ("max_subscriptions", "2"),
            ("sse_keepalive_ms", "100"),
        ]),
        Ok(())
    );
    let e = validate::<Web>(&[("prefetch", "0"), ("typo", "1")]).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
}

#[test]
fn subscription_limit() {
    let mut s = Session::<Web>::open(b"GET ", &[("max_subscriptions", "1")]);
    s.data(upgrade_head("").as_bytes());
    s.text();
    assert_eq!(send(&mut s, json!({"op":"sub","topic":"t"}))[0]["ok"], true);
    let r = send(&mut s, json!({"op":"sub","topic":"u"}));
    assert_eq!(r[0]["error"], "too many subscriptions (at most 1)");
}

/// `web-<16 hex digits>#ephemeral`, and a different name every time.
fn is_ephemeral_name(name: &str) -> bool {
    name.strip_prefix("web-")
        .and_then(|rest| rest.strip_suffix("#ephemeral"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn ephemeral_channel_names_are_random() {
    let a = crate::ephemeral_channel(1, 0);
    let b = crate::ephemeral_channel(1, 0);
    assert!(is_ephemeral_name(&a) && is_ephemeral_name(&b), "{a} {b}");
    assert_ne!(a, b);
}
