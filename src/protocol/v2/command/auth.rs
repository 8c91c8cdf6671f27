//! AUTH: a secret for an auth server. No auth server is configured in this
//! broker, so the session answers E_AUTH_DISABLED like nsqd without
//! `--auth-http-address`; the framing is still exact so the error comes
//! after the body, as in nsqd.

use bytes::Bytes;

use super::{BodyHead, Params};
use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::{ErrorCode, ProtocolError};

/// `AUTH\n[u32 size][secret]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// The secret as sent; kept only long enough to answer.
    pub secret: Bytes,
}

impl Auth {
    pub(crate) fn from_body(body: &[u8]) -> Self {
        Auth {
            secret: Bytes::copy_from_slice(body),
        }
    }
}

pub(crate) fn parse_line(params: &Params<'_>) -> Result<BodyHead, ProtocolError> {
    if params.len() != 1 {
        return Err(ProtocolError::invalid("AUTH invalid number of parameters"));
    }
    Ok(BodyHead::Auth)
}

pub(crate) fn check_len(len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
    if i64::from(len) as i128 > limits.max_body_size as i128 {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("AUTH body too big {len} > {}", limits.max_body_size),
        ));
    }
    if len <= 0 {
        return Err(ProtocolError::new(
            ErrorCode::BadBody,
            format!("AUTH invalid body size {len}"),
        ));
    }
    Ok(len as usize)
}
