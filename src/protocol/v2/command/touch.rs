//! TOUCH: the client needs more time for an in-flight message.

use super::{Params, message_id};
use crate::broker::MessageId;
use crate::protocol::v2::error::ProtocolError;

/// `TOUCH <message_id>\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// The in-flight message whose timeout restarts.
    pub id: MessageId,
}

impl Touch {
    pub(crate) fn parse(params: &Params<'_>) -> Result<Self, ProtocolError> {
        let Some(id) = params.get(1) else {
            return Err(ProtocolError::invalid(
                "TOUCH insufficient number of params",
            ));
        };
        Ok(Touch {
            id: message_id(id)?,
        })
    }
}
