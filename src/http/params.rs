//! Query-string and body helpers with nsqd's semantics: the query parses as
//! Go's `url.ParseQuery` does (first value wins, `+` is a space, a bad `%`
//! escape or a `;` separator is `INVALID_REQUEST`), and request bodies are
//! read under a byte cap checked against `Content-Length` before any read.

use std::future::poll_fn;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};

use super::error::ApiError;

/// Decoded query parameters, in request order.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        let mut failed = false;
        for part in raw.unwrap_or("").split('&') {
            if part.contains(';') {
                failed = true;
                continue;
            }
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match (unescape(k), unescape(v)) {
                (Some(k), Some(v)) => pairs.push((k, v)),
                _ => failed = true,
            }
        }
        if failed {
            return Err(ApiError::InvalidRequest);
        }
        Ok(Query { pairs })
    }

    /// The first value of `key`, if the key is present at all.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Go's `QueryUnescape`: `+` is a space, `%XX` a byte; `None` on a bad escape.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// nsqd's `boolParams`: `true`/`1` and `false`/`0`; anything else is `None`.
pub fn bool_param(v: Option<&str>) -> Option<bool> {
    match v? {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// True when the request announces a body longer than `max`.
pub fn declared_too_big(headers: &HeaderMap, max: u64) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

/// Reads the body, stopping as soon as it passes `max` bytes: `Ok(None)`
/// then, without reading the rest. A failing read is `INTERNAL_ERROR`, as
/// in nsqd.
pub async fn read_capped(body: Body, max: u64) -> Result<Option<Bytes>, ApiError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| ApiError::InternalError)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > max {
            return Ok(None);
        }
        // The common case is one frame: keep it without copying.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    Ok(Some(match first {
        Some(f) => f,
        None => buf.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parses_like_go() {
        let q = Query::parse(Some("topic=a%2Bb&topic=second&x=1+2&flag&=v")).expect("parses");
        assert_eq!(q.get("topic"), Some("a+b"));
        assert_eq!(q.get("x"), Some("1 2"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(None).expect("empty").get("topic"), None);
    }

    #[test]
    fn bad_queries_are_invalid_request() {
        for bad in ["topic=%zz", "topic=%4", "a=1;b=2", "%=1"] {
            assert_eq!(
                Query::parse(Some(bad)).err(),
                Some(ApiError::InvalidRequest),
                "{bad}"
            );
        }
    }

    #[test]
    fn bools_follow_nsqd() {
        assert_eq!(bool_param(Some("1")), Some(true));
        assert_eq!(bool_param(Some("false")), Some(false));
        assert_eq!(bool_param(Some("yes")), None);
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("nope"), None);
    }

    #[tokio::test]
    async fn capped_read_stops_past_the_limit() {
        let got = read_capped(Body::from("abcd"), 4).await.expect("read");
        assert_eq!(got.as_deref(), Some(&b"abcd"[..]));
        let got = read_capped(Body::from("abcde"), 4).await.expect("read");
        assert_eq!(got, None);
    }
}
