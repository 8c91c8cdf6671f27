//! nsqlookupd's TCP protocol `  V1`, the producer side, as pure functions:
//! commands are a line (`NAME params...\n`), IDENTIFY adds a 4-byte
//! big-endian length and a JSON body; every response is a 4-byte big-endian
//! length and its data (`OK`, the IDENTIFY JSON, or an `E_...` error text).

use serde::Serialize;

/// The magic that selects the lookup protocol.
pub const MAGIC_V1: &[u8; 4] = b"  V1";

/// Largest response accepted: the IDENTIFY answer is a few hundred bytes,
/// so anything near this is a damaged or hostile peer.
pub const MAX_RESPONSE: usize = 64 << 10;

/// What nsqlookupd is told about this node in IDENTIFY (nsqd's fields).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerInfo {
    pub broadcast_address: String,
    pub hostname: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
}

/// One command to a lookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Identify,
    Register {
        topic: String,
        channel: Option<String>,
    },
    Unregister {
        topic: String,
        channel: Option<String>,
    },
    Ping,
}

impl Command {
    /// The command's bytes; `info` is IDENTIFY's body.
    pub fn encode(&self, info: &PeerInfo, out: &mut Vec<u8>) {
        match self {
            Command::Identify => {
                out.extend_from_slice(b"IDENTIFY\n");
                // Serialising a struct of strings and integers cannot fail.
                let body = serde_json::to_vec(info).unwrap_or_default();
                let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&body);
            }
            Command::Register { topic, channel } => line(out, "REGISTER", topic, channel),
            Command::Unregister { topic, channel } => line(out, "UNREGISTER", topic, channel),
            Command::Ping => out.extend_from_slice(b"PING\n"),
        }
    }

    /// For logs: `REGISTER topic channel`.
    pub fn describe(&self) -> String {
        match self {
            Command::Identify => "IDENTIFY".into(),
            Command::Ping => "PING".into(),
            Command::Register { topic, channel } | Command::Unregister { topic, channel } => {
                let verb = if matches!(self, Command::Register { .. }) {
                    "REGISTER"
                } else {
                    "UNREGISTER"
                };
                match channel {
                    Some(c) => format!("{verb} {topic} {c}"),
                    None => format!("{verb} {topic}"),
                }
            }
        }
    }
}

fn line(out: &mut Vec<u8>, verb: &str, topic: &str, channel: &Option<String>) {
    out.extend_from_slice(verb.as_bytes());
    out.push(b' ');
    out.extend_from_slice(topic.as_bytes());
    if let Some(c) = channel {
        out.push(b' ');
        out.extend_from_slice(c.as_bytes());
    }
    out.push(b'\n');
}

/// A response, or why the bytes cannot be one.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Not all of it has arrived yet.
    Incomplete,
    /// A whole response and the bytes it took.
    Response(&'a [u8], usize),
}

/// Why a lookupd's answer was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("response length {0} exceeds the {MAX_RESPONSE}-byte limit")]
    TooLong(usize),
}

/// Decodes one size-prefixed response from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, WireError> {
    let Some(head) = buf.first_chunk::<4>() else {
        return Ok(Decoded::Incomplete);
    };
    let len = u32::from_be_bytes(*head) as usize;
    if len > MAX_RESPONSE {
        return Err(WireError::TooLong(len));
    }
    match buf.get(4..4 + len) {
        Some(body) => Ok(Decoded::Response(body, 4 + len)),
        None => Ok(Decoded::Incomplete),
    }
}

/// An `E_...` error text from the lookupd, if `body` is one.
pub fn error_text(body: &[u8]) -> Option<String> {
    body.starts_with(b"E_")
        .then(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PeerInfo {
        PeerInfo {
            broadcast_address: "10.0.0.1".into(),
            hostname: "h".into(),
            tcp_port: 4150,
            http_port: 4151,
            version: "1.3.0".into(),
        }
    }

    #[test]
    fn commands_are_nsqds_bytes() {
        let mut out = Vec::new();
        Command::Register {
            topic: "t".into(),
            channel: Some("c".into()),
        }
        .encode(&info(), &mut out);
        Command::Unregister {
            topic: "t".into(),
            channel: None,
        }
        .encode(&info(), &mut out);
        Command::Ping.encode(&info(), &mut out);
        assert_eq!(out, b"REGISTER t c\nUNREGISTER t\nPING\n");
        let mut out = Vec::new();
        Command::Identify.encode(&info(), &mut out);
        let body = br#"{"broadcast_address":"10.0.0.1","hostname":"h","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#;
        assert_eq!(&out[..9], b"IDENTIFY\n");
        assert_eq!(&out[9..13], &(body.len() as u32).to_be_bytes());
        assert_eq!(&out[13..], body);
    }

    #[test]
    fn responses_decode_over_every_prefix() {
        let whole = b"\x00\x00\x00\x02OKrest";
        for cut in 0..6 {
            assert_eq!(decode(&whole[..cut]), Ok(Decoded::Incomplete), "{cut}");
        }
        assert_eq!(decode(whole), Ok(Decoded::Response(b"OK", 6)));
        assert_eq!(
            decode(b"\xff\xff\xff\xff"),
            Err(WireError::TooLong(u32::MAX as usize))
        );
        assert_eq!(
            error_text(b"E_INVALID client must IDENTIFY").as_deref(),
            Some("E_INVALID client must IDENTIFY")
        );
        assert_eq!(error_text(b"OK"), None);
    }
}
