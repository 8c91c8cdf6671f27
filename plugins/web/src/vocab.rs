//! The JSON vocabulary spoken over `/ws`, pure: the `jsonl-py` plugin's
//! requests (`pub`, `sub`, `fin`, `req`) plus `stats`, parsed into one enum,
//! and the replies and deliveries (`{"ok":…}`, `{"msg":{…}}`) encoded as
//! text. A body that is not UTF-8 travels as base64 with
//! `"encoding":"base64"`, in both directions.

use serde_json::{Map, Value, json};

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

/// `{"msg":{"topic","channel","id","attempts","timestamp","body"[,"encoding":"base64"]}}`.
pub fn delivery(d: &Delivery<'_>) -> String {
    let mut msg = json!({
        "topic": d.topic,
        "channel": d.channel,
        "id": d.id,
        "attempts": d.attempts,
        "timestamp": d.timestamp,
    });
    match std::str::from_utf8(d.body) {
        Ok(text) => msg["body"] = Value::String(text.into()),
        Err(_) => {
            msg["body"] = Value::String(base64::encode(d.body));
            msg["encoding"] = Value::String("base64".into());
        }
    }
    json!({ "msg": msg }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            (v["msg"]["body"].as_str(), v["msg"]["encoding"].as_str()),
            (Some("/wA="), Some("base64"))
        );
        assert_eq!(v["msg"]["id"], "0123456789abcdef");
    }
}
