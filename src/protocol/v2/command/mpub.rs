//! MPUB: publish several messages to a topic atomically.

use bytes::Bytes;

use super::{BodyHead, Params, topic_name};
use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::{ErrorCode, ProtocolError};

/// `MPUB <topic>\n[u32 size][u32 count]([u32 size][body])*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpub {
    /// Validated topic name.
    pub topic: String,
    /// The bodies in order, each validated against `max-msg-size`.
    pub bodies: Vec<Bytes>,
}

impl Mpub {
    /// Splits a complete MPUB body. The count is bounded by what the body
    /// size allows (nsqd's `(max_body_size - 4) / 5`) before the vector is
    /// allocated, and every inner size is checked before it is used.
    pub(crate) fn from_body(
        topic: String,
        body: &[u8],
        limits: &Limits,
    ) -> Result<Self, ProtocolError> {
        let Some(count) = read_i32(body, 0) else {
            return Err(ProtocolError::new(
                ErrorCode::BadBody,
                "MPUB failed to read message count",
            ));
        };
        let max_messages = (limits.max_body_size.saturating_sub(4) / 5) as i64;
        if count <= 0 || i64::from(count) > max_messages {
            return Err(ProtocolError::new(
                ErrorCode::BadBody,
                format!("MPUB invalid message count {count}"),
            ));
        }
        // Each message takes at least 5 bytes, which also bounds the count by
        // the bytes actually received.
        let capacity = (count as usize).min(body.len() / 5);
        let mut bodies = Vec::with_capacity(capacity);
        let mut pos = 4;
        for i in 0..count {
            let Some(size) = read_i32(body, pos) else {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB failed to read message({i}) body size"),
                ));
            };
            pos += 4;
            if size <= 0 {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB invalid message({i}) body size {size}"),
                ));
            }
            if size as u64 > limits.max_msg_size {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB message too big {size} > {}", limits.max_msg_size),
                ));
            }
            let end = pos + size as usize;
            let Some(msg) = body.get(pos..end) else {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    "MPUB failed to read message body",
                ));
            };
            bodies.push(Bytes::copy_from_slice(msg));
            pos = end;
        }
        if pos != body.len() {
            // nsqd would read the surplus as the next command; a body that
            // does not match its size is a client bug, so say so.
            return Err(ProtocolError::new(
                ErrorCode::BadBody,
                format!(
                    "MPUB body size {} does not match its messages ({pos})",
                    body.len()
                ),
            ));
        }
        Ok(Mpub { topic, bodies })
    }
}

fn read_i32(buf: &[u8], pos: usize) -> Option<i32> {
    let raw = buf.get(pos..pos + 4)?;
    Some(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

pub(crate) fn parse_line(params: &Params<'_>) -> Result<BodyHead, ProtocolError> {
    let Some(topic) = params.get(1) else {
        return Err(ProtocolError::invalid(
            "MPUB insufficient number of parameters",
        ));
    };
    // nsqd really does repeat the code inside this one description.
    let topic = topic_name("E_BAD_TOPIC MPUB", topic)?;
    Ok(BodyHead::Mpub { topic })
}

/// nsqd checks the sign before the size.
pub(crate) fn check_len(len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    if len <= 0 {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("MPUB invalid body size {len}"),
        ));
    }
    if len as u64 > limits.max_body_size {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("MPUB body too big {len} > {}", limits.max_body_size),
        ));
    }
    Ok(len as usize)
}
