//! IDENTIFY: the client's metadata and feature requests, a JSON body. This
//! file only frames and decodes the body; the ranges, defaults and the
//! negotiated answer live in `v2::identify`.

use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::{ErrorCode, ProtocolError};
use crate::protocol::v2::identify::IdentifyData;

/// `IDENTIFY\n[u32 size][json]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    /// The decoded JSON, fields the client left out are `None`.
    pub data: IdentifyData,
}

impl Identify {
    pub(crate) fn from_body(body: &[u8]) -> Result<Self, ProtocolError> {
        let data = IdentifyData::from_json(body)?;
        Ok(Identify { data })
    }
}

/// nsqd checks the size limit before the sign.
pub(crate) fn check_len(len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    if i64::from(len) as i128 > limits.max_body_size as i128 {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("IDENTIFY body too big {len} > {}", limits.max_body_size),
        ));
    }
    if len <= 0 {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("IDENTIFY invalid body size {len}"),
        ));
    }
    Ok(len as usize)
}
