//! REQ: put an in-flight message back, optionally after a delay.

use super::{Params, base10, lossy, message_id};
use crate::broker::MessageId;
use crate::protocol::v2::error::ProtocolError;

/// `REQ <message_id> <timeout_ms>\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Req {
    /// The in-flight message to requeue.
    pub id: MessageId,
    /// Requested delay; the session clamps it to `max-req-timeout` like
    /// nsqd 1.1+ instead of failing.
    pub delay_ms: u64,
}

impl Req {
    pub(crate) fn parse(params: &Params<'_>) -> Result<Self, ProtocolError> {
        let (Some(id), Some(delay)) = (params.get(1), params.get(2)) else {
            return Err(ProtocolError::invalid("REQ insufficient number of params"));
        };
        let id = message_id(id)?;
        let delay_ms = base10(delay).ok_or_else(|| {
            ProtocolError::invalid(format!("REQ could not parse timeout {}", lossy(delay)))
        })?;
        Ok(Req { id, delay_ms })
    }
}
