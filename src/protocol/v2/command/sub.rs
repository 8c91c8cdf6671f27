//! SUB: subscribe this connection to a topic's channel.

use super::{Params, channel_name, topic_name};
use crate::protocol::v2::error::ProtocolError;

/// `SUB <topic> <channel>\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// Validated topic name.
    pub topic: String,
    /// Validated channel name.
    pub channel: String,
}

impl Sub {
    pub(crate) fn parse(params: &Params<'_>) -> Result<Self, ProtocolError> {
        let (Some(topic), Some(channel)) = (params.get(1), params.get(2)) else {
            return Err(ProtocolError::invalid(
                "SUB insufficient number of parameters",
            ));
        };
        Ok(Sub {
            topic: topic_name("SUB", topic)?,
            channel: channel_name("SUB", channel)?,
        })
    }
}
