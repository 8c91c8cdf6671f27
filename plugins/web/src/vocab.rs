//! The JSON vocabulary spoken over `/ws`, pure: the `jsonl-py` plugin's
//! requests (`pub`, `sub`, `fin`, `req`) plus `stats`, parsed into one enum,
//! and the replies and deliveries (`{"ok":…}`, `{"msg":{…}}`) encoded as
//! text. A body that is not UTF-8 travels as base64 with
//! `"encoding":"base64"`, in both directions.

use std::io::Write;

use serde_json::{Map, Value};

use crate::base64;

/// Highest `prefetch` a `sub` may ask for (nsqd's default `max-rdy-count`).
pub const MAX_PREFETCH: u32 = 2500;

/// How a subscription's deliveries are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// FINed by the plugin once written to the socket.
    Auto,
    /// FINed or REQed by the client with `fin` / `req`.
    Manual,
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Pub {
        topic: String,
        body: Vec<u8>,
    },
    Sub {
        topic: String,
        /// `None`: a fresh `…#ephemeral` channel.
        channel: Option<String>,
        ack: Ack,
        /// `None`: the plugin's configured default.
        prefetch: Option<u32>,
    },
    Fin {
        id: String,
    },
    Req {
        id: String,
        delay_ms: u32,
    },
    Stats {
        topic: Option<String>,
    },
}

/// A parsed request and the client's optional `"ref"`, echoed in the reply
/// so a client can match replies among deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub request: Request,
    pub reference: Option<Value>,
}

/// Parses one request; the error is the reply's `"error"` text.
pub fn parse(text: &str) -> Result<Envelope, (String, Option<Value>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| (format!("bad JSON: {e}"), None))?;
    let Value::Object(obj) = value else {
        return Err(("a request is a JSON object".into(), None));
    };
    let reference = obj.get("ref").cloned();
    parse_object(&obj)
        .map(|request| Envelope {
            request,
            reference: reference.clone(),
        })
        .map_err(|e| (e, reference))
}

fn parse_object(obj: &Map<String, Value>) -> Result<Request, String> {
    let op = obj.get("op").and_then(Value::as_str).unwrap_or("");
    Ok(match op {
        "pub" => Request::Pub {
            topic: string(obj, "topic")?,
            body: body(obj)?,
        },
        "sub" => Request::Sub {
            topic: string(obj, "topic")?,
            channel: optional_string(obj, "channel")?.filter(|c| !c.is_empty()),
            ack: match obj.get("ack").map(|v| v.as_str()) {
                None | Some(Some("auto")) => Ack::Auto,
                Some(Some("manual")) => Ack::Manual,
                _ => return Err(r#""ack" must be "auto" or "manual""#.into()),
            },
            prefetch: match obj.get("prefetch") {
                None => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|n| (1..=u64::from(MAX_PREFETCH)).contains(n))
                        .map(|n| n as u32)
                        .ok_or_else(|| format!(r#""prefetch" must be 1..={MAX_PREFETCH}"#))?,
                ),
            },
        },
        "fin" => Request::Fin {
            id: string(obj, "id")?,
        },
        "req" => Request::Req {
            id: string(obj, "id")?,
            delay_ms: match obj.get("delay_ms") {
                None => 0,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(r#""delay_ms" must be a non-negative integer"#)?,
            },
        },
        "stats" => Request::Stats {
            topic: optional_string(obj, "topic")?,
        },
        "" => return Err(r#"missing "op""#.into()),
        other => return Err(format!("unknown op {other:?}")),
    })
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    optional_string(obj, key)?.ok_or_else(|| format!("\"{key}\" must be a string"))
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

fn body(obj: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let text = string(obj, "body")?;
    match obj.get("encoding").and_then(Value::as_str) {
        None if obj.get("encoding").is_none() => Ok(text.into_bytes()),
        Some("utf-8") => Ok(text.into_bytes()),
        Some("base64") => base64::decode(&text).ok_or_else(|| "\"body\" is not base64".into()),
        _ => Err(r#""encoding" must be "base64" or "utf-8""#.into()),
    }
}

/// `{"ok":true[, fields…][,"ref":…]}`.
pub fn ok(fields: Map<String, Value>, reference: Option<&Value>) -> String {
    let mut obj = Map::new();
    obj.insert("ok".into(), Value::Bool(true));
    obj.extend(fields);
    if let Some(r) = reference {
        obj.insert("ref".into(), r.clone());
    }
    Value::Object(obj).to_string()
}

/// `{"ok":false,"error":…[,"ref":…]}`.
pub fn error(text: &str, reference: Option<&Value>) -> String {
    let mut obj = Map::new();
    obj.insert("ok".into(), Value::Bool(false));
    obj.insert("error".into(), Value::String(text.into()));
    if let Some(r) = reference {
        obj.insert("ref".into(), r.clone());
    }
    Value::Object(obj).to_string()
}

/// A delivered message, as the client sees it.
pub struct Delivery<'a> {
    pub topic: &'a str,
    pub channel: &'a str,
    pub id: &'a str,
    pub attempts: u16,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// Appends `{"msg":{"topic","channel","id","attempts","timestamp","body"[,"encoding":"base64"]}}`.
/// Written by hand rather than through `serde_json::Value`: this is the
/// per-message path, and building a map per delivery cost more than the
/// rest of the delivery together.
pub fn write_delivery(d: &Delivery<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"msg":{"topic":"#);
    json_string(d.topic, out);
    out.extend_from_slice(br#","channel":"#);
    json_string(d.channel, out);
    out.extend_from_slice(br#","id":"#);
    json_string(d.id, out);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        r#","attempts":{},"timestamp":{},"body":"#,
        d.attempts, d.timestamp
    );
    match std::str::from_utf8(d.body) {
        Ok(text) => json_string(text, out),
        Err(_) => {
            out.push(b'"');
            out.extend_from_slice(base64::encode(d.body).as_bytes());
            out.extend_from_slice(br#"","encoding":"base64"#);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"}}");
}

/// `delivery` as a `String` (tests and callers without a buffer).
pub fn delivery(d: &Delivery<'_>) -> String {
    let mut out = Vec::new();
    write_delivery(d, &mut out);
    // Only UTF-8 went in: `&str` pieces, ASCII escapes and base64.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `s` as a JSON string: quotes, backslashes and control
/// characters escaped, everything else copied in runs.
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => br#"\""#,
            b'\\' => br"\\",
            b'\n' => br"\n",
            b'\r' => br"\r",
            b'\t' => br"\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(text: &str) -> Request {
        parse(text).expect("valid").request
    }

    fn fails(text: &str) -> String {
        parse(text).expect_err("invalid").0
    }

    #[test]
    fn requests() {
        assert_eq!(
            req(r#"{"op":"pub","topic":"t","body":"hi"}"#),
            Request::Pub {
                topic: "t".into(),
                body: b"hi".to_vec()
            }
        );
        assert_eq!(
            req(r#"{"op":"pub","topic":"t","body":"/w==","encoding":"base64"}"#),
            Request::Pub {
                topic: "t".into(),
                body: vec![0xff]
            }
        );
        assert_eq!(
            req(r#"{"op":"sub","topic":"t","channel":"c","ack":"manual","prefetch":5}"#),
            Request::Sub {
                topic: "t".into(),
                channel: Some("c".into()),
                ack: Ack::Manual,
                prefetch: Some(5)
            }
        );
        assert_eq!(
            req(r#"{"op":"sub","topic":"t","channel":""}"#),
            Request::Sub {
                topic: "t".into(),
                channel: None,
                ack: Ack::Auto,
                prefetch: None
            }
        );
        assert_eq!(
            req(r#"{"op":"req","id":"x","delay_ms":10}"#),
            Request::Req {
                id: "x".into(),
                delay_ms: 10
            }
        );
        assert_eq!(req(r#"{"op":"stats"}"#), Request::Stats { topic: None });
        let env = parse(r#"{"op":"fin","id":"x","ref":7}"#).unwrap();
        assert_eq!(env.reference, Some(json!(7)));
    }

    #[test]
    fn bad_requests() {
        assert!(fails("{").starts_with("bad JSON"));
        assert_eq!(fails("[1]"), "a request is a JSON object");
        assert_eq!(fails("{}"), r#"missing "op""#);
        assert_eq!(fails(r#"{"op":"nope"}"#), r#"unknown op "nope""#);
        assert_eq!(
            fails(r#"{"op":"pub","topic":1,"body":""}"#),
            r#""topic" must be a string"#
        );
        assert!(fails(r#"{"op":"sub","topic":"t","ack":"x"}"#).contains("ack"));
        assert!(fails(r#"{"op":"sub","topic":"t","prefetch":0}"#).contains("prefetch"));
        assert!(fails(r#"{"op":"sub","topic":"t","prefetch":2501}"#).contains("prefetch"));
        assert!(fails(r#"{"op":"req","id":"x","delay_ms":-1}"#).contains("delay_ms"));
        assert!(
            fails(r#"{"op":"pub","topic":"t","body":"!","encoding":"base64"}"#).contains("base64")
        );
        assert_eq!(
            parse(r#"{"op":"x","ref":"a"}"#).unwrap_err().1,
            Some(json!("a"))
        );
    }

    #[test]
    fn replies_and_deliveries() {
        assert_eq!(ok(Map::new(), None), r#"{"ok":true}"#);
        let mut f = Map::new();
        f.insert("channels".into(), json!(2));
        // Keys come out sorted (serde_json without `preserve_order`).
        assert_eq!(
            ok(f, Some(&json!(1))),
            r#"{"channels":2,"ok":true,"ref":1}"#
        );
        assert_eq!(error("x \"y\"", None), r#"{"error":"x \"y\"","ok":false}"#);
        let d = |body: &'static [u8]| Delivery {
            topic: "t",
            channel: "c",
            id: "0123456789abcdef",
            attempts: 1,
            timestamp: 5,
            body,
        };
        let v: Value = serde_json::from_str(&delivery(&d(b"h\"i"))).unwrap();
        assert_eq!(v["msg"]["body"], "h\"i");
        assert!(v["msg"].get("encoding").is_none());
        let v: Value = serde_json::from_str(&delivery(&d(b"\xff\x00"))).unwrap();
        let text = delivery(&d("\x01\"\\\n\r\t\u{e9}\u{2028}".as_bytes()));
        let v2: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v2["msg"]["body"], "\u{1}\"\\\n\r\t\u{e9}\u{2028}", "{text}");
        assert_eq!(
            (v["msg"]["body"].as_str(), v["msg"]["encoding"].as_str()),
            (Some("/wA="), Some("base64"))
        );
        assert_eq!(v["msg"]["id"], "0123456789abcdef");
    }
}
