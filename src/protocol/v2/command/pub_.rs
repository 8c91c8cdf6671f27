//! PUB: publish one message to a topic.

use bytes::Bytes;

use super::{BodyHead, Params, topic_name};
use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::{ErrorCode, ProtocolError};

/// `PUB <topic>\n[u32 size][body]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pub {
    /// Validated topic name.
    pub topic: String,
    /// The message body, in its own allocation so a queued message never
    /// pins a whole read buffer.
    pub body: Bytes,
}

impl Pub {
    pub(crate) fn from_body(topic: String, body: &[u8]) -> Self {
        Pub {
            topic,
            body: Bytes::copy_from_slice(body),
        }
    }
}

pub(crate) fn parse_line(params: &Params<'_>) -> Result<BodyHead, ProtocolError> {
    let Some(topic) = params.get(1) else {
        return Err(ProtocolError::invalid(
            "PUB insufficient number of parameters",
        ));
    };
    Ok(BodyHead::Pub {
        topic: topic_name("PUB", topic)?,
    })
}

pub(crate) fn check_len(len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    message_len("PUB", len, limits)
}

/// PUB and DPUB: nsqd checks the sign before the size.
pub(crate) fn message_len(verb: &str, len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    if len <= 0 {
        return Err(ProtocolError::new(
            ErrorCode::BadMessage,
            format!("{verb} invalid message body size {len}"),
        ));
    }
    if len as u64 > limits.max_msg_size {
        return Err(ProtocolError::new(
            ErrorCode::BadMessage,
            format!("{verb} message too big {len} > {}", limits.max_msg_size),
        ));
    }
    Ok(len as usize)
}
