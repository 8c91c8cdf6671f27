//! DPUB: publish one message that becomes visible after a delay.

use bytes::Bytes;

use super::{BodyHead, Params, base10, lossy, topic_name};
use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::ProtocolError;

/// `DPUB <topic> <defer_ms>\n[u32 size][body]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dpub {
    /// Validated topic name.
    pub topic: String,
    /// Delay in milliseconds, already within `max-req-timeout`.
    pub delay_ms: u64,
    /// The message body, in its own allocation.
    pub body: Bytes,
}

impl Dpub {
    pub(crate) fn from_body(topic: String, delay_ms: u64, body: &[u8]) -> Self {
        Dpub {
            topic,
            delay_ms,
            body: Bytes::copy_from_slice(body),
        }
    }
}

pub(crate) fn parse_line(params: &Params<'_>, limits: &Limits) -> Result<BodyHead, ProtocolError> {
    let (Some(topic), Some(delay)) = (params.get(1), params.get(2)) else {
        return Err(ProtocolError::invalid(
            "DPUB insufficient number of parameters",
        ));
    };
    let topic = topic_name("DPUB", topic)?;
    let Some(delay_ms) = base10(delay) else {
        return Err(ProtocolError::invalid(format!(
            "DPUB could not parse timeout {}",
            lossy(delay)
        )));
    };
    if delay_ms > limits.max_req_timeout_ms {
        return Err(ProtocolError::invalid(format!(
            "DPUB timeout {delay_ms} out of range 0-{}",
            limits.max_req_timeout_ms
        )));
    }
    Ok(BodyHead::Dpub { topic, delay_ms })
}

pub(crate) fn check_len(len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    super::pub_::message_len("DPUB", len, limits)
}
