//! The V2 commands: one enum, one type per command (one file each), and the
//! line-level dispatch from a verb and its space-separated parameters to a
//! command, or, for commands that carry a body, to the header that tells the
//! codec how long that body is. Nothing here does IO.

mod auth;
mod cls;
mod dpub;
mod fin;
mod identify;
mod mpub;
mod nop;
mod pub_;
mod rdy;
mod req;
mod sub;
mod touch;

pub use auth::Auth;
pub use cls::Cls;
pub use dpub::Dpub;
pub use fin::Fin;
pub use identify::Identify;
pub use mpub::Mpub;
pub use nop::Nop;
pub use pub_::Pub;
pub use rdy::Rdy;
pub use req::Req;
pub use sub::Sub;
pub use touch::Touch;

use crate::broker::MessageId;
use crate::protocol::v2::codec::Limits;
use crate::protocol::v2::error::{ErrorCode, ProtocolError, go_quote};

/// One parsed client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Identify(Identify),
    Auth(Auth),
    Sub(Sub),
    Pub(Pub),
    Mpub(Mpub),
    Dpub(Dpub),
    Rdy(Rdy),
    Fin(Fin),
    Req(Req),
    Touch(Touch),
    Cls(Cls),
    Nop(Nop),
}

impl Command {
    /// The wire verb, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Identify(_) => "IDENTIFY",
            Command::Auth(_) => "AUTH",
            Command::Sub(_) => "SUB",
            Command::Pub(_) => "PUB",
            Command::Mpub(_) => "MPUB",
            Command::Dpub(_) => "DPUB",
            Command::Rdy(_) => "RDY",
            Command::Fin(_) => "FIN",
            Command::Req(_) => "REQ",
            Command::Touch(_) => "TOUCH",
            Command::Cls(_) => "CLS",
            Command::Nop(_) => "NOP",
        }
    }
}

/// Most parameters any command looks at. More are counted (AUTH cares) but
/// not kept, like nsqd which ignores surplus parameters.
const MAX_PARAMS: usize = 4;

/// The space-separated words of a command line, split exactly like nsqd's
/// `bytes.Split(line, " ")` (so two spaces make an empty parameter), without
/// allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'a> {
    /// The first `MAX_PARAMS` words; the verb is `parts[0]`.
    parts: [&'a [u8]; MAX_PARAMS],
    /// How many words the line has in total.
    count: usize,
}

impl<'a> Params<'a> {
    pub(crate) fn split(line: &'a [u8]) -> Self {
        let mut parts: [&[u8]; MAX_PARAMS] = [&[]; MAX_PARAMS];
        let mut count = 0;
        for word in line.split(|b| *b == b' ') {
            if count < MAX_PARAMS {
                parts[count] = word;
            }
            count += 1;
        }
        Params { parts, count }
    }

    pub(crate) fn verb(&self) -> &'a [u8] {
        self.parts[0]
    }

    /// Number of words including the verb (`len(params)` in nsqd).
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i < self.count && i < MAX_PARAMS {
            Some(self.parts[i])
        } else {
            None
        }
    }
}

/// A command whose line has been read; body commands still need their body.
#[derive(Debug)]
pub(crate) enum Head {
    /// The line was the whole command.
    Done(Command),
    /// A 4-byte length and a body follow.
    Body(BodyHead),
}

/// What a body command knows from its line alone.
#[derive(Debug)]
pub(crate) enum BodyHead {
    Identify,
    Auth,
    Pub { topic: String },
    Mpub { topic: String },
    Dpub { topic: String, delay_ms: u64 },
}

impl BodyHead {
    /// Validates a body length prefix before anything is allocated for it,
    /// with nsqd's codes and texts. Returns the body length in bytes.
    pub(crate) fn check_len(&self, len: i32, limits: &Limits) -> Result<usize, ProtocolError> {
        match self {
            BodyHead::Identify => identify::check_len(len, limits),
            BodyHead::Auth => auth::check_len(len, limits),
            BodyHead::Pub { .. } => pub_::check_len(len, limits),
            BodyHead::Mpub { .. } => mpub::check_len(len, limits),
            BodyHead::Dpub { .. } => dpub::check_len(len, limits),
        }
    }

    /// Builds the command from its complete body.
    pub(crate) fn finish(self, body: &[u8], limits: &Limits) -> Result<Command, ProtocolError> {
        Ok(match self {
            BodyHead::Identify => Command::Identify(Identify::from_body(body)?),
            BodyHead::Auth => Command::Auth(Auth::from_body(body)),
            BodyHead::Pub { topic } => Command::Pub(Pub::from_body(topic, body)),
            BodyHead::Mpub { topic } => Command::Mpub(Mpub::from_body(topic, body, limits)?),
            BodyHead::Dpub { topic, delay_ms } => {
                Command::Dpub(Dpub::from_body(topic, delay_ms, body))
            }
        })
    }
}

/// Dispatches a command line on its verb.
pub(crate) fn head(params: &Params<'_>, limits: &Limits) -> Result<Head, ProtocolError> {
    Ok(match params.verb() {
        b"IDENTIFY" => Head::Body(BodyHead::Identify),
        b"AUTH" => Head::Body(auth::parse_line(params)?),
        b"SUB" => Head::Done(Command::Sub(Sub::parse(params)?)),
        b"PUB" => Head::Body(pub_::parse_line(params)?),
        b"MPUB" => Head::Body(mpub::parse_line(params)?),
        b"DPUB" => Head::Body(dpub::parse_line(params, limits)?),
        b"RDY" => Head::Done(Command::Rdy(Rdy::parse(params)?)),
        b"FIN" => Head::Done(Command::Fin(Fin::parse(params)?)),
        b"REQ" => Head::Done(Command::Req(Req::parse(params)?)),
        b"TOUCH" => Head::Done(Command::Touch(Touch::parse(params)?)),
        b"CLS" => Head::Done(Command::Cls(Cls)),
        b"NOP" => Head::Done(Command::Nop(Nop)),
        other => {
            return Err(ProtocolError::invalid(format!(
                "invalid command {}",
                String::from_utf8_lossy(other)
            )));
        }
    })
}

/// nsqd's topic/channel name rule: 1 to 64 bytes of `[.a-zA-Z0-9_-]`,
/// optionally ending in `#ephemeral`.
pub(crate) fn is_valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let base = name.strip_suffix(b"#ephemeral").unwrap_or(name);
    !base.is_empty()
        && base
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validates a topic name, answering E_BAD_TOPIC with nsqd's text for `verb`
/// (`"<prefix> topic name %q is not valid"`).
pub(crate) fn topic_name(prefix: &str, raw: &[u8]) -> Result<String, ProtocolError> {
    if is_valid_name(raw) {
        // Valid names are ASCII, so this conversion is lossless.
        Ok(String::from_utf8_lossy(raw).into_owned())
    } else {
        Err(ProtocolError::new(
            ErrorCode::BadTopic,
            format!("{prefix} topic name {} is not valid", go_quote(raw)),
        ))
    }
}

/// Validates a channel name, answering E_BAD_CHANNEL with nsqd's text.
pub(crate) fn channel_name(prefix: &str, raw: &[u8]) -> Result<String, ProtocolError> {
    if is_valid_name(raw) {
        Ok(String::from_utf8_lossy(raw).into_owned())
    } else {
        Err(ProtocolError::new(
            ErrorCode::BadChannel,
            format!("{prefix} channel name {} is not valid", go_quote(raw)),
        ))
    }
}

/// A message id parameter: exactly 16 bytes, else nsqd's fatal
/// `E_INVALID Invalid Message ID`.
pub(crate) fn message_id(raw: &[u8]) -> Result<MessageId, ProtocolError> {
    MessageId::from_slice(raw).ok_or_else(|| ProtocolError::invalid("Invalid Message ID"))
}

/// nsqd's `ByteToBase10`: digits only (an empty string is 0), no sign, and
/// overflow wraps like Go's uint64 arithmetic.
pub(crate) fn base10(raw: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &d in raw {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
    }
    Some(n)
}

/// Lossy text of a client parameter for error messages (`%s` in Go).
pub(crate) fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_like_go() {
        let p = Params::split(b"SUB  a b c d e");
        assert_eq!(p.len(), 7);
        assert_eq!(p.verb(), b"SUB");
        assert_eq!(p.get(1), Some(&b""[..]));
        assert_eq!(p.get(2), Some(&b"a"[..]));
        assert_eq!(p.get(5), None);
        let p = Params::split(b"");
        assert_eq!(p.len(), 1);
        assert_eq!(p.verb(), b"");
    }

    #[test]
    fn base10_like_go() {
        assert_eq!(base10(b""), Some(0));
        assert_eq!(base10(b"0042"), Some(42));
        assert_eq!(base10(b"-1"), None);
        assert_eq!(base10(b"1x"), None);
        assert_eq!(base10(b"18446744073709551616"), Some(0));
    }

    #[test]
    fn names() {
        assert!(is_valid_name(b"a.b_c-d"));
        assert!(is_valid_name(b"t#ephemeral"));
        assert!(!is_valid_name(b"#ephemeral"));
        assert!(!is_valid_name(b"a b"));
        assert!(!is_valid_name(&[b'a'; 65]));
        assert!(is_valid_name(&[b'a'; 64]));
    }
}
