//! The pure V2 codec: framing of client commands over a byte buffer (no IO),
//! and encoding of server frames. "Not enough bytes yet" is a normal
//! outcome, never an error. Every length read from the wire is checked
//! against its limit before anything is allocated or awaited for it, and a
//! command line is capped so a client that never sends `\n` cannot grow the
//! buffer.
//!
//! Server frames are `[u32 size][u32 type][data]`, `size` counting the type
//! and the data; a message frame's data is
//! `[i64 timestamp ns][u16 attempts][16-byte id][body]`.

use bytes::{Buf, BufMut, BytesMut};

use super::command::{self, Command, Head, Params};
use super::error::ProtocolError;
use crate::broker::Message;

/// Frame type of responses (`OK`, `_heartbeat_`, `CLOSE_WAIT`, IDENTIFY JSON).
pub const FRAME_TYPE_RESPONSE: u32 = 0;
/// Frame type of `E_*` errors.
pub const FRAME_TYPE_ERROR: u32 = 1;
/// Frame type of delivered messages.
pub const FRAME_TYPE_MESSAGE: u32 = 2;

/// Bytes of a message frame before the body: size, type, timestamp,
/// attempts, id.
pub const MESSAGE_FRAME_OVERHEAD: usize = 4 + 4 + 8 + 2 + 16;

/// Longest command line accepted (without its `\n`). The longest legitimate
/// line is an old-style `SUB` with two 64-byte names plus client ids.
pub const DEFAULT_MAX_LINE: usize = 1024;

/// The limits the codec enforces, taken from the server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `--max-msg-size`: largest PUB/DPUB body and MPUB element.
    pub max_msg_size: u64,
    /// `--max-body-size`: largest MPUB (and IDENTIFY/AUTH) body.
    pub max_body_size: u64,
    /// `--max-req-timeout` in ms: largest DPUB delay.
    pub max_req_timeout_ms: u64,
    /// Longest command line; see `DEFAULT_MAX_LINE`.
    pub max_line: usize,
}

impl Default for Limits {
    /// nsqd's defaults.
    fn default() -> Self {
        Limits {
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            max_req_timeout_ms: 60 * 60 * 1000,
            max_line: DEFAULT_MAX_LINE,
        }
    }
}

/// Outcome of `Command::check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The buffer starts with a complete command of this many bytes.
    Complete(usize),
    /// More bytes are needed: the buffer must hold at least this many bytes
    /// before checking again makes sense. Never more than the limits allow.
    Incomplete(usize),
}

/// Where the framing of the first command in a buffer stands.
enum Framing {
    Incomplete(usize),
    Line {
        head: Head,
        len: usize,
    },
    Body {
        head: command::BodyHead,
        start: usize,
        end: usize,
    },
}

fn frame(buf: &[u8], limits: &Limits) -> Result<Framing, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_line + 1)];
    let Some(nl) = window.iter().position(|b| *b == b'\n') else {
        if buf.len() > limits.max_line {
            return Err(ProtocolError::invalid(format!(
                "command line longer than {} bytes",
                limits.max_line
            )));
        }
        return Ok(Framing::Incomplete(buf.len() + 1));
    };
    let mut line = &buf[..nl];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    let line_len = nl + 1;
    let params = Params::split(line);
    match command::head(&params, limits)? {
        Head::Body(head) => {
            let Some(raw) = buf.get(line_len..line_len + 4) else {
                return Ok(Framing::Incomplete(line_len + 4));
            };
            let len = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let body_len = head.check_len(len, limits)?;
            let start = line_len + 4;
            let end = start + body_len;
            if buf.len() < end {
                return Ok(Framing::Incomplete(end));
            }
            Ok(Framing::Body { head, start, end })
        }
        head => Ok(Framing::Line {
            head,
            len: line_len,
        }),
    }
}

impl Command {
    /// Checks whether `buf` starts with a complete command, validating the
    /// line and any length prefix (but not yet the body's contents).
    pub fn check(buf: &[u8], limits: &Limits) -> Result<Check, ProtocolError> {
        Ok(match frame(buf, limits)? {
            Framing::Incomplete(n) => Check::Incomplete(n),
            Framing::Line { len, .. } => Check::Complete(len),
            Framing::Body { end, .. } => Check::Complete(end),
        })
    }

    /// Parses the first command of `buf` and removes it from the buffer.
    /// `Ok(None)` means more bytes are needed and leaves `buf` untouched.
    /// Errors are all fatal: the connection ends after reporting them.
    pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Command>, ProtocolError> {
        match frame(buf, limits)? {
            Framing::Incomplete(_) => Ok(None),
            Framing::Line { head, len } => {
                buf.advance(len);
                match head {
                    Head::Done(cmd) => Ok(Some(cmd)),
                    // frame() only returns Line for commands without a body.
                    Head::Body(_) => Err(ProtocolError::invalid("internal framing error")),
                }
            }
            Framing::Body { head, start, end } => {
                let cmd = head.finish(&buf[start..end], limits);
                buf.advance(end);
                cmd.map(Some)
            }
        }
    }

    /// How many bytes `buf` must hold before parsing can make progress
    /// (`buf.len()` or less when a command is already complete).
    pub fn needed(buf: &[u8], limits: &Limits) -> usize {
        match Command::check(buf, limits) {
            Ok(Check::Incomplete(n)) => n,
            _ => buf.len(),
        }
    }
}

/// Appends a frame of `frame_type` carrying `data`.
pub fn write_frame(out: &mut BytesMut, frame_type: u32, data: &[u8]) {
    out.reserve(8 + data.len());
    out.put_u32(4 + data.len() as u32);
    out.put_u32(frame_type);
    out.put_slice(data);
}

/// Appends a response frame (`OK`, `_heartbeat_`, JSON...).
pub fn write_response(out: &mut BytesMut, data: &[u8]) {
    write_frame(out, FRAME_TYPE_RESPONSE, data);
}

/// Appends an error frame with nsqd's `"<CODE> <description>"` text.
pub fn write_error(out: &mut BytesMut, err: &ProtocolError) {
    write_frame(out, FRAME_TYPE_ERROR, err.to_wire().as_bytes());
}

/// Size on the wire of a message frame for `body_len` bytes of body.
pub fn message_frame_len(body_len: usize) -> usize {
    MESSAGE_FRAME_OVERHEAD + body_len
}

/// Appends a message frame.
pub fn write_message(out: &mut BytesMut, msg: &Message) {
    out.reserve(message_frame_len(msg.body.len()));
    out.put_u32((message_frame_len(msg.body.len()) - 4) as u32);
    out.put_u32(FRAME_TYPE_MESSAGE);
    out.put_i64(msg.timestamp);
    out.put_u16(msg.attempts);
    out.put_slice(msg.id.as_bytes());
    out.put_slice(&msg.body);
}

#[cfg(test)]
mod tests;
