//! FIN: a message was handled; forget it.

use super::{Params, message_id};
use crate::broker::MessageId;
use crate::protocol::v2::error::ProtocolError;

/// `FIN <message_id>\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fin {
    /// The in-flight message to finish.
    pub id: MessageId,
}

impl Fin {
    pub(crate) fn parse(params: &Params<'_>) -> Result<Self, ProtocolError> {
        let Some(id) = params.get(1) else {
            return Err(ProtocolError::invalid("FIN insufficient number of params"));
        };
        Ok(Fin {
            id: message_id(id)?,
        })
    }
}
