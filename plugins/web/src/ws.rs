//! RFC 6455 WebSocket framing for the server side, pure: `Decoder` turns
//! client bytes into whole messages (unmasking, reassembling fragments,
//! checking UTF-8 and the size limit before anything is buffered), and the
//! `encode_*` functions write unmasked server frames. Errors carry the close
//! code the connection must end with.

/// Frame opcodes (RFC 6455 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        self as u8 >= 8
    }
}

/// Close codes the plugin sends (RFC 6455 7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const BAD_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// One complete message (or control frame) from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The client's close: its code (none if the frame had no body) and reason.
    Close(Option<u16>, String),
}

/// A violation: the connection is closed with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

const fn err(code: u16, reason: &'static str) -> WsError {
    WsError { code, reason }
}

/// Reassembles messages from frames. Owns only the fragments of a message
/// in progress; the caller keeps the unparsed bytes.
#[derive(Debug)]
pub struct Decoder {
    /// Largest frame payload, and largest reassembled message.
    max: usize,
    /// Opcode and payload so far of a fragmented message.
    partial: Option<(Opcode, Vec<u8>)>,
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder { max, partial: None }
    }

    /// Decodes the next frame from the front of `buf`: `(event, used)`.
    /// `used == 0`: a whole frame has not arrived yet (keep `buf`). A
    /// fragment that does not end its message is used with no event, so
    /// callers loop until `used == 0`.
    pub fn next(&mut self, buf: &[u8]) -> Result<(Option<Event>, usize), WsError> {
        let Some(head) = parse_head(buf, self.max)? else {
            return Ok((None, 0));
        };
        let total = head.header_len + head.len;
        if buf.len() < total {
            return Ok((None, 0));
        }
        let mut payload = buf[head.header_len..total].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= head.mask[i % 4];
        }
        let event = match head.opcode {
            Opcode::Ping => Some(Event::Ping(payload)),
            Opcode::Pong => Some(Event::Pong(payload)),
            Opcode::Close => Some(close_event(&payload)?),
            Opcode::Continuation => {
                let Some((op, so_far)) = self.partial.as_mut() else {
                    return Err(err(close::PROTOCOL_ERROR, "continuation without a start"));
                };
                if so_far.len() + payload.len() > self.max {
                    return Err(err(close::TOO_BIG, "message too big"));
                }
                so_far.extend_from_slice(&payload);
                let op = *op;
                if head.fin {
                    let (_, whole) = self.partial.take().unwrap_or((op, Vec::new()));
                    Some(data_event(op, whole)?)
                } else {
                    None
                }
            }
            op @ (Opcode::Text | Opcode::Binary) => {
                if self.partial.is_some() {
                    return Err(err(
                        close::PROTOCOL_ERROR,
                        "new message inside a fragmented one",
                    ));
                }
                if head.fin {
                    Some(data_event(op, payload)?)
                } else {
                    self.partial = Some((op, payload));
                    None
                }
            }
        };
        Ok((event, total))
    }
}

fn data_event(op: Opcode, payload: Vec<u8>) -> Result<Event, WsError> {
    if op == Opcode::Text {
        String::from_utf8(payload)
            .map(Event::Text)
            .map_err(|_| err(close::BAD_DATA, "text frame is not UTF-8"))
    } else {
        Ok(Event::Binary(payload))
    }
}

fn close_event(payload: &[u8]) -> Result<Event, WsError> {
    match payload {
        [] => Ok(Event::Close(None, String::new())),
        [_] => Err(err(close::PROTOCOL_ERROR, "close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(err(close::PROTOCOL_ERROR, "invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| err(close::BAD_DATA, "close reason is not UTF-8"))?;
            Ok(Event::Close(Some(code), reason.to_owned()))
        }
    }
}

/// A frame header as read off the wire.
struct Head {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    /// Payload length, already checked against the limit.
    len: usize,
    /// Bytes of header (2..=14).
    header_len: usize,
}

/// Parses a client frame header; `Ok(None)` if `buf` is too short for it.
fn parse_head(buf: &[u8], max: usize) -> Result<Option<Head>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(err(close::PROTOCOL_ERROR, "reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode =
        Opcode::from_bits(b0 & 0x0f).ok_or(err(close::PROTOCOL_ERROR, "unknown opcode"))?;
    if b1 & 0x80 == 0 {
        return Err(err(close::PROTOCOL_ERROR, "client frames must be masked"));
    }
    let (len, at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(err(
                        close::PROTOCOL_ERROR,
                        "64-bit length with the top bit set",
                    ));
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(err(
            close::PROTOCOL_ERROR,
            "fragmented or long control frame",
        ));
    }
    if len > max as u64 {
        return Err(err(close::TOO_BIG, "frame too big"));
    }
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        // In range: at most `max`, a usize.
        len: len as usize,
        header_len: at + 4,
    }))
}

/// Appends one unmasked, final server frame.
pub fn encode(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode as u8);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and a reason (cut to fit 125 bytes).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(Opcode::Close, &payload, out);
}

/// A masked client frame, for tests and the fuzz seeds.
#[cfg(test)]
pub fn client_frame(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Feeds `bytes` through a decoder in one go, collecting events.
    fn decode_all(max: usize, bytes: &[u8]) -> Result<Vec<Event>, WsError> {
        let mut d = Decoder::new(max);
        let mut at = 0;
        let mut events = Vec::new();
        loop {
            let (ev, n) = d.next(&bytes[at..])?;
            if n == 0 {
                return Ok(events);
            }
            at += n;
            events.extend(ev);
        }
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 5.7: "Hello", masked.
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(100, &frame),
            Ok(vec![Event::Text("Hello".into())])
        );
        for cut in 0..frame.len() {
            assert_eq!(Decoder::new(100).next(&frame[..cut]), Ok((None, 0)));
        }
    }

    #[test]
    fn lengths_7_16_64() {
        for n in [0, 125, 126, 65535, 65536, 70000] {
            let body = vec![b'x'; n];
            let f = client_frame(true, 2, M, &body);
            assert_eq!(
                decode_all(1 << 20, &f),
                Ok(vec![Event::Binary(body.clone())])
            );
            let mut out = Vec::new();
            encode(Opcode::Binary, &body, &mut out);
            assert_eq!(out.len(), f.len() - 4, "server frames are unmasked");
        }
    }

    #[test]
    fn fragments_with_a_ping_between() {
        let mut b = client_frame(false, 1, M, "héllo ".as_bytes());
        b.extend(client_frame(true, 9, M, b"p"));
        b.extend(client_frame(false, 0, M, b"w"));
        b.extend(client_frame(true, 0, M, b"orld"));
        assert_eq!(
            decode_all(100, &b),
            Ok(vec![
                Event::Ping(b"p".to_vec()),
                Event::Text("héllo world".into())
            ])
        );
        // A UTF-8 sequence split across fragments is fine.
        let e = "é".as_bytes();
        let mut b = client_frame(false, 1, M, &e[..1]);
        b.extend(client_frame(true, 0, M, &e[1..]));
        assert_eq!(decode_all(100, &b), Ok(vec![Event::Text("é".into())]));
    }

    #[test]
    fn violations_and_their_codes() {
        let code = |bytes: &[u8]| decode_all(10, bytes).unwrap_err().code;
        let mut unmasked = client_frame(true, 1, M, b"hi");
        unmasked[1] &= 0x7f;
        assert_eq!(code(&unmasked), close::PROTOCOL_ERROR);
        assert_eq!(
            code(&client_frame(true, 0x41, M, b"")),
            close::PROTOCOL_ERROR
        );
        assert_eq!(code(&client_frame(true, 3, M, b"")), close::PROTOCOL_ERROR);
        assert_eq!(code(&client_frame(false, 9, M, b"")), close::PROTOCOL_ERROR);
        assert_eq!(code(&client_frame(true, 0, M, b"x")), close::PROTOCOL_ERROR);
        assert_eq!(code(&client_frame(true, 1, M, b"\xff")), close::BAD_DATA);
        assert_eq!(code(&client_frame(true, 2, M, &[0; 11])), close::TOO_BIG);
        // Too big is seen from the header alone, before the payload arrives.
        assert_eq!(
            Decoder::new(10).next(&client_frame(true, 2, M, &[0; 11])[..4]),
            Err(err(close::TOO_BIG, "frame too big"))
        );
        let mut frags = client_frame(false, 2, M, &[0; 6]);
        frags.extend(client_frame(true, 0, M, &[0; 6]));
        assert_eq!(code(&frags), close::TOO_BIG);
        let mut two_starts = client_frame(false, 1, M, b"a");
        two_starts.extend(client_frame(true, 1, M, b"b"));
        assert_eq!(code(&two_starts), close::PROTOCOL_ERROR);
        assert_eq!(
            code(&client_frame(true, 8, M, b"\x03")),
            close::PROTOCOL_ERROR
        );
        assert_eq!(
            code(&client_frame(true, 8, M, b"\x03\xed")),
            close::PROTOCOL_ERROR
        );
        assert_eq!(
            code(&client_frame(true, 8, M, b"\x03\xe8\xff")),
            close::BAD_DATA
        );
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            decode_all(10, &client_frame(true, 8, M, b"\x03\xe8bye")),
            Ok(vec![Event::Close(Some(1000), "bye".into())])
        );
        assert_eq!(
            decode_all(10, &client_frame(true, 8, M, b"")),
            Ok(vec![Event::Close(None, String::new())])
        );
        let mut out = Vec::new();
        encode_close(1009, &"é".repeat(100), &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
