//! RDY: how many messages the client is ready to have in flight.

use super::{Params, base10, lossy};
use crate::protocol::v2::error::ProtocolError;

/// `RDY <count>\n`; a bare `RDY` means 1, as in nsqd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rdy {
    /// The count as sent; the session checks it against `max-rdy-count`.
    pub count: u64,
}

impl Rdy {
    pub(crate) fn parse(params: &Params<'_>) -> Result<Self, ProtocolError> {
        let count = match params.get(1) {
            None => 1,
            Some(raw) => base10(raw).ok_or_else(|| {
                ProtocolError::invalid(format!("RDY could not parse count {}", lossy(raw)))
            })?,
        };
        Ok(Rdy { count })
    }
}
