//! Errors the V2 protocol reports to clients: a machine-readable code rendered
//! to nsqd's exact strings, a description, and whether the error closes the
//! connection (nsqd's `FatalClientErr`) or not (`ClientErr`). On the wire an
//! error frame carries `"<CODE> <description>"`, exactly as nsqd writes it.

use std::fmt;

/// nsqd's error codes, as sent in `E_*` error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Invalid,
    BadBody,
    BadTopic,
    BadChannel,
    BadMessage,
    PubFailed,
    MpubFailed,
    DpubFailed,
    FinFailed,
    ReqFailed,
    TouchFailed,
    SubFailed,
    TooManyChannelConsumers,
    IdentifyFailed,
    AuthDisabled,
    AuthFailed,
    AuthFirst,
    Unauthorized,
    BadProtocol,
}

impl ErrorCode {
    /// The code exactly as nsqd spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "E_INVALID",
            ErrorCode::BadBody => "E_BAD_BODY",
            ErrorCode::BadTopic => "E_BAD_TOPIC",
            ErrorCode::BadChannel => "E_BAD_CHANNEL",
            ErrorCode::BadMessage => "E_BAD_MESSAGE",
            ErrorCode::PubFailed => "E_PUB_FAILED",
            ErrorCode::MpubFailed => "E_MPUB_FAILED",
            ErrorCode::DpubFailed => "E_DPUB_FAILED",
            ErrorCode::FinFailed => "E_FIN_FAILED",
            ErrorCode::ReqFailed => "E_REQ_FAILED",
            ErrorCode::TouchFailed => "E_TOUCH_FAILED",
            ErrorCode::SubFailed => "E_SUB_FAILED",
            ErrorCode::TooManyChannelConsumers => "E_TOO_MANY_CHANNEL_CONSUMERS",
            ErrorCode::IdentifyFailed => "E_IDENTIFY_FAILED",
            ErrorCode::AuthDisabled => "E_AUTH_DISABLED",
            ErrorCode::AuthFailed => "E_AUTH_FAILED",
            ErrorCode::AuthFirst => "E_AUTH_FIRST",
            ErrorCode::Unauthorized => "E_UNAUTHORIZED",
            ErrorCode::BadProtocol => "E_BAD_PROTOCOL",
        }
    }

    /// Only a failed FIN, REQ or TOUCH leaves the connection open: every
    /// other error is a `FatalClientErr` in nsqd.
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            ErrorCode::FinFailed | ErrorCode::ReqFailed | ErrorCode::TouchFailed
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to the client with an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {description}")]
pub struct ProtocolError {
    /// Machine-readable code; clients switch on it.
    pub code: ErrorCode,
    /// Human-readable text, nsqd's wording where nsqd has one.
    pub description: String,
    /// Whether the connection is closed after the error frame is sent.
    pub fatal: bool,
}

impl ProtocolError {
    /// An error with the fatality nsqd gives its code.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        ProtocolError {
            code,
            description: description.into(),
            fatal: code.is_fatal(),
        }
    }

    /// Shorthand for the most common code.
    pub fn invalid(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, description)
    }

    /// The error frame payload: `"<CODE> <description>"`.
    pub fn to_wire(&self) -> String {
        self.to_string()
    }
}

/// Quotes `s` the way Go's `%q` does, so error texts that embed a client's
/// topic or channel name match nsqd byte for byte.
pub fn go_quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        let (ch, len) = match std::str::from_utf8(rest) {
            Ok(v) => match v.chars().next() {
                Some(c) => (Some(c), c.len_utf8()),
                None => break,
            },
            Err(e) if e.valid_up_to() > 0 => {
                let valid = &rest[..e.valid_up_to()];
                // valid_up_to() > 0 guarantees at least one char.
                match std::str::from_utf8(valid)
                    .ok()
                    .and_then(|v| v.chars().next())
                {
                    Some(c) => (Some(c), c.len_utf8()),
                    None => (None, 1),
                }
            }
            Err(_) => (None, 1),
        };
        match ch {
            None => out.push_str(&format!("\\x{:02x}", rest[0])),
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\u{7}') => out.push_str("\\a"),
            Some('\u{8}') => out.push_str("\\b"),
            Some('\u{c}') => out.push_str("\\f"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some('\u{b}') => out.push_str("\\v"),
            Some(c) if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            Some(c) if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            Some(c) => out.push(c),
        }
        rest = &rest[len..];
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_render_to_nsqd_strings() {
        assert_eq!(ErrorCode::Invalid.to_string(), "E_INVALID");
        assert_eq!(ErrorCode::BadBody.to_string(), "E_BAD_BODY");
        assert_eq!(ErrorCode::MpubFailed.to_string(), "E_MPUB_FAILED");
        assert_eq!(ErrorCode::AuthDisabled.to_string(), "E_AUTH_DISABLED");
        assert_eq!(ErrorCode::BadProtocol.to_string(), "E_BAD_PROTOCOL");
    }

    #[test]
    fn only_fin_req_touch_failures_are_non_fatal() {
        let all = [
            ErrorCode::Invalid,
            ErrorCode::BadBody,
            ErrorCode::BadTopic,
            ErrorCode::BadChannel,
            ErrorCode::BadMessage,
            ErrorCode::PubFailed,
            ErrorCode::MpubFailed,
            ErrorCode::DpubFailed,
            ErrorCode::FinFailed,
            ErrorCode::ReqFailed,
            ErrorCode::TouchFailed,
            ErrorCode::SubFailed,
            ErrorCode::TooManyChannelConsumers,
            ErrorCode::IdentifyFailed,
            ErrorCode::AuthDisabled,
            ErrorCode::AuthFailed,
            ErrorCode::AuthFirst,
            ErrorCode::Unauthorized,
            ErrorCode::BadProtocol,
        ];
        for code in all {
            let non_fatal = matches!(
                code,
                ErrorCode::FinFailed | ErrorCode::ReqFailed | ErrorCode::TouchFailed
            );
            assert_eq!(ProtocolError::new(code, "x").fatal, !non_fatal, "{code}");
        }
    }

    #[test]
    fn wire_text_is_code_space_description() {
        let e = ProtocolError::invalid("invalid command FOO");
        assert_eq!(e.to_wire(), "E_INVALID invalid command FOO");
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote(b"abc"), "\"abc\"");
        assert_eq!(go_quote(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote(b"a\nb\x01"), "\"a\\nb\\x01\"");
        assert_eq!(go_quote(b"\xff!"), "\"\\xff!\"");
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
        assert_eq!(go_quote(b"t\x7f"), "\"t\\x7f\"");
    }
}
