//! Fuzz targets of the V2 codec: a byte stream of client commands (every
//! verb, with bodies and length prefixes) checked against the codec's own
//! contracts, a structured round trip (commands encoded as a client would,
//! split anywhere, parsed back equal), and IDENTIFY's JSON and negotiation.

use std::time::Duration;

use bytes::BytesMut;
use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::{Result as ArbResult, Unstructured};

use crate::broker::MessageId;
use crate::protocol::v2::codec::{Check, Limits};
use crate::protocol::v2::command::*;
use crate::protocol::v2::identify::{
    ClientSettings, Compression, IdentifyConfig, IdentifyData, negotiate,
};

/// Small limits, so the length checks are reached by small mutants.
const LIMITS: Limits = Limits {
    max_msg_size: 1024,
    max_body_size: 4096,
    max_req_timeout_ms: 3_600_000,
    max_line: 256,
};

/// The most a command may ask the buffer to hold: a full line, its length
/// prefix and the largest body.
const MAX_NEED: usize = LIMITS.max_line + 1 + 4 + LIMITS.max_body_size as usize;

/// One framed body command.
fn framed(line: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn mpub_body(msgs: &[&[u8]]) -> Vec<u8> {
    let mut v = (msgs.len() as u32).to_be_bytes().to_vec();
    for m in msgs {
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
    }
    v
}

/// One real instance of every command, as clients send them.
fn seeds() -> Vec<Vec<u8>> {
    let mut all = vec![
        b"NOP\n".to_vec(),
        b"CLS\r\n".to_vec(),
        b"RDY 100\n".to_vec(),
        b"RDY\n".to_vec(),
        b"FIN 0123456789abcdef\n".to_vec(),
        b"REQ 0123456789abcdef 1500\n".to_vec(),
        b"TOUCH 0123456789abcdef\n".to_vec(),
        b"SUB topic chan#ephemeral\n".to_vec(),
        framed(b"PUB t\n", b"hello"),
        framed(b"DPUB t 2500\n", b"later"),
        framed(b"MPUB t\n", &mpub_body(&[b"a", b"bc", b"def"])),
        framed(b"AUTH\n", b"secret"),
        framed(
            b"IDENTIFY\n",
            br#"{"client_id":"c","hostname":"h","feature_negotiation":true,"heartbeat_interval":30000,"output_buffer_size":16384,"output_buffer_timeout":250,"deflate":true,"deflate_level":6,"snappy":false,"sample_rate":0,"user_agent":"go-nsq/1.1.0","msg_timeout":60000}"#,
        ),
    ];
    // A session's worth of commands back to back.
    let stream: Vec<u8> = all.concat();
    all.push(stream);
    all
}

fn dict() -> Vec<&'static [u8]> {
    vec![
        b"IDENTIFY",
        b"AUTH",
        b"SUB",
        b"PUB",
        b"MPUB",
        b"DPUB",
        b"RDY",
        b"FIN",
        b"REQ",
        b"TOUCH",
        b"CLS",
        b"NOP",
        b"\n",
        b"\r\n",
        b" ",
        b"#ephemeral",
        b"0123456789abcdef",
    ]
}

/// What a parsed command must satisfy whatever the input was.
fn check_invariants(cmd: &Command) {
    let valid = |n: &str| is_valid_name(n.as_bytes());
    match cmd {
        Command::Pub(p) => {
            assert!(valid(&p.topic));
            assert!(!p.body.is_empty() && p.body.len() as u64 <= LIMITS.max_msg_size);
        }
        Command::Dpub(p) => {
            assert!(valid(&p.topic));
            assert!(p.delay_ms <= LIMITS.max_req_timeout_ms);
            assert!(!p.body.is_empty() && p.body.len() as u64 <= LIMITS.max_msg_size);
        }
        Command::Mpub(p) => {
            assert!(valid(&p.topic));
            assert!(!p.bodies.is_empty());
            let total: usize = p.bodies.iter().map(|b| 4 + b.len()).sum();
            assert!(4 + total as u64 <= LIMITS.max_body_size);
            for b in &p.bodies {
                assert!(!b.is_empty() && b.len() as u64 <= LIMITS.max_msg_size);
            }
        }
        Command::Sub(s) => assert!(valid(&s.topic) && valid(&s.channel)),
        Command::Auth(a) => assert!(a.secret.len() as u64 <= LIMITS.max_body_size),
        _ => {}
    }
}

/// Parses a stream of commands, asserting the codec's contracts on each:
/// `check` and `parse` agree, every shorter prefix of a complete command is
/// "incomplete" with a need that never passes the command's end, a need is
/// never beyond what the limits allow, and parsed commands are within limits.
fn v2_stream(data: &[u8]) -> Vec<String> {
    let mut buf = BytesMut::from(data);
    let mut outcomes = Vec::new();
    for _ in 0..32 {
        let before = buf.clone();
        let check = Command::check(&before, &LIMITS);
        match Command::parse(&mut buf, &LIMITS) {
            Ok(None) => {
                let Ok(Check::Incomplete(need)) = check else {
                    panic!("parse wants more bytes but check said {check:?}");
                };
                assert!(need > before.len(), "need {need} <= have {}", before.len());
                assert!(need <= MAX_NEED, "need {need} is beyond the limits");
                outcomes.push("incomplete".into());
                break;
            }
            Ok(Some(cmd)) => {
                let used = before.len() - buf.len();
                assert_eq!(check, Ok(Check::Complete(used)));
                assert!(used <= MAX_NEED);
                check_invariants(&cmd);
                for cut in [used - 1, used / 2, 1] {
                    if cut >= used {
                        continue;
                    }
                    match Command::check(&before[..cut], &LIMITS) {
                        Ok(Check::Incomplete(n)) => {
                            assert!(n > cut && n <= used, "prefix {cut} of {used} needs {n}")
                        }
                        other => panic!("prefix {cut} of a {used}-byte command gave {other:?}"),
                    }
                }
                outcomes.push(cmd.name().into());
            }
            Err(e) => {
                // `check` validates the framing only; a body's contents
                // (IDENTIFY JSON, MPUB elements) fail in `parse`.
                match check {
                    Err(c) => assert_eq!(c, e, "check and parse disagree"),
                    Ok(Check::Complete(_)) => {}
                    Ok(Check::Incomplete(n)) => panic!("parse failed, check wanted {n} bytes"),
                }
                let mut out = BytesMut::new();
                crate::protocol::v2::codec::write_error(&mut out, &e);
                outcomes.push(e.to_wire().chars().take(24).collect());
                break;
            }
        }
    }
    outcomes
}

#[test]
fn fuzz_v2_command_stream() {
    Fuzzer::new("v2_command_stream")
        .seeds(seeds())
        .dict(dict())
        .max_len(8192)
        .max_alloc(64 * 1024)
        .run(v2_stream);
}

/// A valid topic or channel name.
fn name(u: &mut Unstructured<'_>) -> ArbResult<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    let ephemeral = u.ratio(1, 4)?;
    let max = if ephemeral { 54 } else { 64 };
    let len = u.int_in_range(1..=max)?;
    let mut s = String::with_capacity(len + 10);
    for _ in 0..len {
        s.push(char::from(*u.choose(CHARS)?));
    }
    if ephemeral {
        s.push_str("#ephemeral");
    }
    Ok(s)
}

/// A message id as a parameter can carry it: any bytes but the separators.
fn id(u: &mut Unstructured<'_>) -> ArbResult<MessageId> {
    let mut raw: [u8; 16] = u.arbitrary()?;
    for b in &mut raw {
        if matches!(*b, b' ' | b'\n' | b'\r') {
            *b = b'x';
        }
    }
    Ok(MessageId(raw))
}

fn body(u: &mut Unstructured<'_>, max: usize) -> ArbResult<Vec<u8>> {
    let len = u.int_in_range(1..=max)?;
    let mut b = u.bytes(len.min(u.len()))?.to_vec();
    b.resize(len, b'.');
    Ok(b)
}

fn opt<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> ArbResult<T>,
) -> ArbResult<Option<T>> {
    Ok(if u.arbitrary()? { Some(f(u)?) } else { None })
}

/// IDENTIFY data and its JSON, with keys left out or `null` at random.
fn identify(u: &mut Unstructured<'_>) -> ArbResult<(IdentifyData, Vec<u8>)> {
    let data = IdentifyData {
        client_id: opt(u, |u| u.arbitrary())?,
        hostname: opt(u, |u| u.arbitrary())?,
        heartbeat_interval: opt(u, |u| u.arbitrary())?,
        output_buffer_size: opt(u, |u| u.arbitrary())?,
        output_buffer_timeout: opt(u, |u| u.arbitrary())?,
        feature_negotiation: opt(u, |u| u.arbitrary())?,
        tls_v1: opt(u, |u| u.arbitrary())?,
        deflate: opt(u, |u| u.arbitrary())?,
        deflate_level: opt(u, |u| u.arbitrary())?,
        snappy: opt(u, |u| u.arbitrary())?,
        sample_rate: opt(u, |u| u.arbitrary())?,
        user_agent: opt(u, |u| u.arbitrary())?,
        msg_timeout: opt(u, |u| u.arbitrary())?,
    };
    let mut map = serde_json::Map::new();
    let mut put =
        |u: &mut Unstructured<'_>, k: &str, v: Option<serde_json::Value>| -> ArbResult<()> {
            match v {
                Some(v) => {
                    map.insert(k.into(), v);
                }
                None if u.arbitrary()? => {
                    map.insert(k.into(), serde_json::Value::Null);
                }
                None => {}
            }
            Ok(())
        };
    use serde_json::Value as V;
    let d = &data;
    put(u, "client_id", d.client_id.clone().map(V::from))?;
    put(u, "hostname", d.hostname.clone().map(V::from))?;
    put(u, "heartbeat_interval", d.heartbeat_interval.map(V::from))?;
    put(u, "output_buffer_size", d.output_buffer_size.map(V::from))?;
    put(
        u,
        "output_buffer_timeout",
        d.output_buffer_timeout.map(V::from),
    )?;
    put(u, "feature_negotiation", d.feature_negotiation.map(V::from))?;
    put(u, "tls_v1", d.tls_v1.map(V::from))?;
    put(u, "deflate", d.deflate.map(V::from))?;
    put(u, "deflate_level", d.deflate_level.map(V::from))?;
    put(u, "snappy", d.snappy.map(V::from))?;
    put(u, "sample_rate", d.sample_rate.map(V::from))?;
    put(u, "user_agent", d.user_agent.clone().map(V::from))?;
    put(u, "msg_timeout", d.msg_timeout.map(V::from))?;
    if u.ratio(1, 4)? {
        // Unknown keys are ignored, as Go does.
        map.insert("unknown_key".into(), V::from(vec![1, 2, 3]));
    }
    let json = serde_json::to_vec(&V::Object(map)).unwrap_or_default();
    Ok((data, json))
}

/// One command and the bytes a client sends for it.
fn command(u: &mut Unstructured<'_>) -> ArbResult<(Command, Vec<u8>)> {
    let max_msg = LIMITS.max_msg_size as usize;
    Ok(match u.int_in_range(0..=11)? {
        0 => (Command::Nop(Nop), b"NOP\n".to_vec()),
        1 => (Command::Cls(Cls), b"CLS\r\n".to_vec()),
        2 => {
            let count: u64 = u.arbitrary()?;
            (
                Command::Rdy(Rdy { count }),
                format!("RDY {count}\n").into_bytes(),
            )
        }
        3..=5 => {
            let id = id(u)?;
            let (cmd, mut line) = match u.int_in_range(0..=2)? {
                0 => (Command::Fin(Fin { id }), b"FIN ".to_vec()),
                1 => (Command::Touch(Touch { id }), b"TOUCH ".to_vec()),
                _ => {
                    let delay_ms: u64 = u.arbitrary()?;
                    let mut l = b"REQ ".to_vec();
                    l.extend_from_slice(&id.0);
                    l.extend_from_slice(format!(" {delay_ms}\n").as_bytes());
                    return Ok((Command::Req(Req { id, delay_ms }), l));
                }
            };
            line.extend_from_slice(&id.0);
            line.push(b'\n');
            (cmd, line)
        }
        6 => {
            let (topic, channel) = (name(u)?, name(u)?);
            let line = format!("SUB {topic} {channel}\n").into_bytes();
            (Command::Sub(Sub { topic, channel }), line)
        }
        7 => {
            let topic = name(u)?;
            let b = body(u, max_msg)?;
            let wire = framed(format!("PUB {topic}\n").as_bytes(), &b);
            (
                Command::Pub(Pub {
                    topic,
                    body: b.into(),
                }),
                wire,
            )
        }
        8 => {
            let topic = name(u)?;
            let delay_ms = u.int_in_range(0..=LIMITS.max_req_timeout_ms)?;
            let b = body(u, max_msg)?;
            let wire = framed(format!("DPUB {topic} {delay_ms}\n").as_bytes(), &b);
            (
                Command::Dpub(Dpub {
                    topic,
                    delay_ms,
                    body: b.into(),
                }),
                wire,
            )
        }
        9 => {
            let topic = name(u)?;
            let mut bodies = Vec::new();
            let mut room = LIMITS.max_body_size as usize - 4;
            loop {
                if room < 5 || (!bodies.is_empty() && u.ratio(1, 3)?) {
                    break;
                }
                let b = body(u, (room - 4).min(max_msg))?;
                room -= 4 + b.len();
                bodies.push(b);
            }
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let wire = framed(format!("MPUB {topic}\n").as_bytes(), &mpub_body(&refs));
            let bodies = bodies.into_iter().map(Into::into).collect();
            (Command::Mpub(Mpub { topic, bodies }), wire)
        }
        10 => {
            let secret = body(u, LIMITS.max_body_size as usize)?;
            let wire = framed(b"AUTH\n", &secret);
            (
                Command::Auth(Auth {
                    secret: secret.into(),
                }),
                wire,
            )
        }
        _ => {
            let (data, json) = identify(u)?;
            if json.len() as u64 > LIMITS.max_body_size {
                return Ok((Command::Nop(Nop), b"NOP\n".to_vec()));
            }
            (
                Command::Identify(Identify { data }),
                framed(b"IDENTIFY\n", &json),
            )
        }
    })
}

/// Encodes commands as a client would, delivers the bytes in arbitrary
/// chunks, and checks the parser gives the same commands back.
fn v2_round_trip(data: &[u8]) -> usize {
    let mut u = Unstructured::new(data);
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    while sent.len() < 16 {
        let Ok((cmd, bytes)) = command(&mut u) else {
            break;
        };
        sent.push(cmd);
        wire.extend_from_slice(&bytes);
        if u.is_empty() {
            break;
        }
    }
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in fuzzkit::chunks(&wire, &mut u) {
        buf.extend_from_slice(chunk);
        while let Some(cmd) = Command::parse(&mut buf, &LIMITS)
            .unwrap_or_else(|e| panic!("valid input rejected: {}", e.to_wire()))
        {
            got.push(cmd);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(got, sent);
    sent.len()
}

#[test]
fn fuzz_v2_round_trip() {
    Fuzzer::new("v2_round_trip")
        .seed([0u8; 64])
        .seed((0..=255u8).collect::<Vec<_>>())
        .max_len(4096)
        .run(v2_round_trip);
}

/// IDENTIFY's JSON decoding and negotiation: never a panic, and a success
/// always lands within nsqd's ranges.
fn v2_identify(data: &[u8]) -> String {
    let cfg = IdentifyConfig::default();
    let current = ClientSettings::defaults(&cfg);
    let body = match data.split_first() {
        // A first byte of 0 asks for a generated, well-formed JSON object, so
        // the negotiation ranges are reached as often as the JSON decoder.
        Some((0, rest)) => match identify(&mut Unstructured::new(rest)) {
            Ok((_, json)) => json,
            Err(_) => return "short".into(),
        },
        _ => data.to_vec(),
    };
    let parsed = match IdentifyData::from_json(&body) {
        Ok(d) => d,
        Err(e) => return e.to_wire(),
    };
    match negotiate(&parsed, &current, &cfg) {
        Ok(n) => {
            let s = &n.settings;
            if let Some(h) = s.heartbeat_interval {
                assert!(h <= cfg.max_heartbeat_interval.max(cfg.client_timeout / 2));
            }
            assert!(s.output_buffer_size as u64 <= cfg.max_output_buffer_size);
            assert!(s.msg_timeout <= cfg.max_msg_timeout.max(cfg.msg_timeout));
            assert!(s.sample_rate <= 99);
            if let Some(t) = s.output_buffer_timeout {
                assert!(t <= cfg.max_output_buffer_timeout && t >= Duration::from_millis(1));
            }
            match n.compression {
                Some(Compression::Deflate(level)) => assert!(level <= 9),
                Some(Compression::Snappy) | None => {}
            }
            if n.response != b"OK" {
                let v: serde_json::Value =
                    serde_json::from_slice(&n.response).expect("the answer is JSON");
                assert!(v.is_object());
            }
            format!("ok {:?}", n.compression)
        }
        Err(e) => e.description.chars().take(30).collect(),
    }
}

#[test]
fn fuzz_v2_identify() {
    Fuzzer::new("v2_identify")
        .seed(br#"{"client_id":"c","feature_negotiation":true,"heartbeat_interval":30000,"output_buffer_size":16384,"output_buffer_timeout":250,"deflate":true,"deflate_level":6,"sample_rate":10,"user_agent":"go-nsq/1.1.0","msg_timeout":60000}"#)
        .seed(br#"{"snappy":true,"feature_negotiation":true,"deflate":true}"#)
        .seed(b"null")
        .seed([0u8; 48])
        .dict([
            &b"\"heartbeat_interval\":"[..],
            b"\"output_buffer_size\":",
            b"\"output_buffer_timeout\":",
            b"\"deflate_level\":",
            b"\"sample_rate\":",
            b"\"msg_timeout\":",
            b"\"feature_negotiation\":true",
            b"\"snappy\":true",
            b"\"deflate\":true",
            b"-1",
            b"null",
            b"1e400",
            b"[[[[[[[[",
            b"\\u0000",
        ])
        .max_len(2048)
        .max_alloc(64 * 1024)
        .run(v2_identify);
}
