//! `POST /pub` and `POST /mpub` (newline-separated or nsqd's binary batch
//! format), with nsqd's checks in nsqd's order: the declared length first,
//! then the body read under its cap, then the topic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};

use super::HttpState;
use super::error::{ApiError, ApiResult, Reply};
use super::params::{Query, declared_too_big, parse_go_bool, read_capped};
use crate::broker::{Topic, names};

/// `POST /pub?topic=T[&defer=MS]`: one message, the body.
pub async fn pub_(
    State(st): State<Arc<HttpState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let max = st.ctx.config.max_msg_size;
    if declared_too_big(&headers, max) {
        return Err(ApiError::MsgTooBig);
    }
    let body = read_capped(body, max).await?.ok_or(ApiError::MsgTooBig)?;
    if body.is_empty() {
        return Err(ApiError::MsgEmpty);
    }
    let query = Query::parse(uri.query())?;
    let topic = topic_from_query(&st, &query)?;
    let defer = match query.get("defer") {
        Some(ms) => Some(parse_defer(ms, st.ctx.config.max_req_timeout)?),
        None => None,
    };
    match defer {
        Some(d) => topic.publish_deferred(body, d),
        None => topic.publish(body),
    }
    .map_err(ApiError::from_publish)?;
    Ok(Reply::Text("OK".into()))
}

/// `POST /mpub?topic=T[&binary=true]`: many messages, all or none.
pub async fn mpub(
    State(st): State<Arc<HttpState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let cfg = &st.ctx.config;
    if declared_too_big(&headers, cfg.max_body_size) {
        return Err(ApiError::BodyTooBig);
    }
    let query = Query::parse(uri.query())?;
    let topic = topic_from_query(&st, &query)?;
    // As in nsqd, a `binary` value that is not a Go boolean counts as true.
    let binary = query
        .get("binary")
        .is_some_and(|v| parse_go_bool(v).unwrap_or(true));
    let body = read_capped(body, cfg.max_body_size)
        .await?
        .ok_or(ApiError::BodyTooBig)?;
    let msgs = if binary {
        parse_binary(&body, cfg.max_msg_size, cfg.max_body_size)?
    } else {
        split_lines(&body, cfg.max_msg_size)?
    };
    topic.publish_many(msgs).map_err(ApiError::from_publish)?;
    Ok(Reply::Text("OK".into()))
}

/// nsqd's `getTopicFromQuery`: the topic named by `topic`, created if new.
pub fn topic_from_query(st: &HttpState, query: &Query) -> Result<Arc<Topic>, ApiError> {
    let name = query.get("topic").ok_or(ApiError::MissingArgTopic)?;
    if !names::is_valid_name(name) {
        return Err(ApiError::InvalidTopic);
    }
    st.ctx.broker.topic(name).map_err(|e| match e {
        crate::broker::BrokerError::InvalidTopicName(_) => ApiError::InvalidTopic,
        crate::broker::BrokerError::Exiting => ApiError::Exiting,
        _ => ApiError::InternalError,
    })
}

/// `defer` in milliseconds, between 0 and `max_req_timeout`.
pub(crate) fn parse_defer(ms: &str, max: Duration) -> Result<Duration, ApiError> {
    let ms: i64 = ms.parse().map_err(|_| ApiError::InvalidDefer)?;
    let ms = u64::try_from(ms).map_err(|_| ApiError::InvalidDefer)?;
    let d = Duration::from_millis(ms);
    if d > max {
        return Err(ApiError::InvalidDefer);
    }
    Ok(d)
}

/// Newline-separated messages. Empty lines are skipped, as nsqd does; a
/// line longer than `max_msg` is `MSG_TOO_BIG`.
pub(crate) fn split_lines(
    body: &bytes::Bytes,
    max_msg: u64,
) -> Result<Vec<bytes::Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut start = 0;
    for line in body.split(|&b| b == b'\n') {
        let end = start + line.len();
        if !line.is_empty() {
            if line.len() as u64 > max_msg {
                return Err(ApiError::MsgTooBig);
            }
            out.push(body.slice(start..end));
        }
        start = end + 1;
    }
    Ok(out)
}

/// nsqd's binary MPUB body: `[u32 count]` then `count` times `[u32 size][body]`,
/// big-endian, read as signed 32-bit like nsqd's `readMPUB`.
pub(crate) fn parse_binary(
    body: &bytes::Bytes,
    max_msg: u64,
    max_body: u64,
) -> Result<Vec<bytes::Bytes>, ApiError> {
    let read_len = |at: usize| -> Option<i32> {
        let b = body.get(at..at.checked_add(4)?)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = read_len(0).ok_or(ApiError::BadBody)?;
    // 4 bytes of count, then at least 4 bytes of size and 1 of body each.
    let max_count = (max_body.saturating_sub(4) / 5) as i64;
    if count <= 0 || i64::from(count) > max_count {
        return Err(ApiError::BadBody);
    }
    // `count` is bounded by the body size just read, so this allocation is too.
    let mut out = Vec::with_capacity((count as usize).min(body.len() / 5));
    let mut at = 4usize;
    for _ in 0..count {
        let size = read_len(at).ok_or(ApiError::BadMessage)?;
        if size <= 0 || size as u64 > max_msg {
            return Err(ApiError::BadMessage);
        }
        at += 4;
        let end = at + size as usize;
        if end > body.len() {
            return Err(ApiError::BadMessage);
        }
        out.push(body.slice(at..end));
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(msgs: &[&[u8]]) -> Bytes {
        let mut v = (msgs.len() as u32).to_be_bytes().to_vec();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u32).to_be_bytes());
            v.extend_from_slice(m);
        }
        Bytes::from(v)
    }

    #[test]
    fn binary_batches_parse() {
        let got = parse_binary(&batch(&[b"a", b"bc"]), 10, 100).expect("parses");
        assert_eq!(
            got,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
    }

    #[test]
    fn binary_errors_are_nsqds() {
        let e = |b: Bytes| parse_binary(&b, 4, 100).err();
        assert_eq!(e(Bytes::from_static(b"\0\0")), Some(ApiError::BadBody));
        assert_eq!(e(batch(&[])), Some(ApiError::BadBody));
        assert_eq!(
            e(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])),
            Some(ApiError::BadBody)
        );
        // More messages than the body size allows.
        assert_eq!(
            e(Bytes::from_static(&[0, 0, 0, 50])),
            Some(ApiError::BadBody)
        );
        assert_eq!(e(batch(&[b"toolong"])), Some(ApiError::BadMessage));
        assert_eq!(e(batch(&[b""])), Some(ApiError::BadMessage));
        let mut short = batch(&[b"abc"]).to_vec();
        short.pop();
        assert_eq!(e(Bytes::from(short)), Some(ApiError::BadMessage));
        let mut missing = batch(&[b"abc"]).to_vec();
        missing[3] = 2;
        assert_eq!(e(Bytes::from(missing)), Some(ApiError::BadMessage));
    }

    #[test]
    fn lines_split_and_skip_empties() {
        let body = Bytes::from_static(b"a\n\nbc\n");
        let got = split_lines(&body, 10).expect("splits");
        assert_eq!(
            got,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
        assert_eq!(
            split_lines(&Bytes::from_static(b"a\nabcdef"), 3).err(),
            Some(ApiError::MsgTooBig)
        );
    }

    #[test]
    fn defer_is_bounded() {
        let max = Duration::from_secs(60);
        assert_eq!(parse_defer("1500", max), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_defer("0", max), Ok(Duration::ZERO));
        for bad in ["-1", "x", "60001", "1.5", ""] {
            assert_eq!(parse_defer(bad, max), Err(ApiError::InvalidDefer), "{bad}");
        }
    }
}
