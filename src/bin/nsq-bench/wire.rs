//! Pure V2 frame encoding and decoding over byte buffers, with no IO, so it
//! can be tested over every partial prefix.

use bytes::{BufMut, BytesMut};

pub const MAGIC_V2: &[u8; 4] = b"  V2";
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
pub const FRAME_RESPONSE: i32 = 0;
pub const FRAME_ERROR: i32 = 1;
pub const FRAME_MESSAGE: i32 = 2;
/// `[u32 size][i32 frame type]`; `size` counts the type and the data.
pub const HEADER_LEN: usize = 8;
/// `[i64 timestamp][u16 attempts][16-byte id]` before the body.
pub const MESSAGE_HEADER_LEN: usize = 26;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame size {0} is below the minimum of 4")]
    FrameTooSmall(u32),
    #[error("frame size {size} exceeds the limit of {max}")]
    FrameTooLarge { size: usize, max: usize },
    #[error("message frame of {0} bytes is shorter than its 26-byte header")]
    MessageTooShort(usize),
}

impl From<WireError> for std::io::Error {
    fn from(e: WireError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// A message frame's payload, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageRef<'a> {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: &'a [u8; 16],
    pub body: &'a [u8],
}

/// Checks whether `buf` starts with a complete frame. Returns its type and
/// its total length (header included), or `None` when more bytes are needed.
pub fn check_frame(buf: &[u8], max: usize) -> Result<Option<(i32, usize)>, WireError> {
    let Some(size) = buf.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    if size < 4 {
        return Err(WireError::FrameTooSmall(size));
    }
    let size = size as usize;
    if size > max {
        return Err(WireError::FrameTooLarge { size, max });
    }
    let total = 4 + size;
    if buf.len() < total {
        return Ok(None);
    }
    let frame_type = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Ok(Some((frame_type, total)))
}

pub fn decode_message(data: &[u8]) -> Result<MessageRef<'_>, WireError> {
    if data.len() < MESSAGE_HEADER_LEN {
        return Err(WireError::MessageTooShort(data.len()));
    }
    let (ts, rest) = data.split_at(8);
    let (attempts, rest) = rest.split_at(2);
    let (id, body) = rest.split_at(16);
    let mut ts8 = [0u8; 8];
    ts8.copy_from_slice(ts);
    Ok(MessageRef {
        timestamp: i64::from_be_bytes(ts8),
        attempts: u16::from_be_bytes([attempts[0], attempts[1]]),
        // split_at(16) above makes this exactly 16 bytes long.
        id: id
            .try_into()
            .map_err(|_| WireError::MessageTooShort(data.len()))?,
        body,
    })
}

fn put_line(out: &mut BytesMut, parts: &[&[u8]]) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        out.extend_from_slice(p);
    }
    out.put_u8(b'\n');
}

pub fn put_identify(out: &mut BytesMut, json: &[u8]) {
    put_line(out, &[b"IDENTIFY"]);
    out.put_u32(json.len() as u32);
    out.extend_from_slice(json);
}

pub fn put_sub(out: &mut BytesMut, topic: &str, channel: &str) {
    put_line(out, &[b"SUB", topic.as_bytes(), channel.as_bytes()]);
}

pub fn put_rdy(out: &mut BytesMut, count: u64) {
    let mut n = itoa_buf();
    put_line(out, &[b"RDY", fmt_u64(count, &mut n)]);
}

pub fn put_fin(out: &mut BytesMut, id: &[u8; 16]) {
    out.extend_from_slice(b"FIN ");
    out.extend_from_slice(id);
    out.put_u8(b'\n');
}

pub fn put_nop(out: &mut BytesMut) {
    out.extend_from_slice(b"NOP\n");
}

/// `PUB <topic>\n[u32 size][bytes]`.
pub fn put_pub(out: &mut BytesMut, topic: &str, body: &[u8]) {
    put_line(out, &[b"PUB", topic.as_bytes()]);
    out.put_u32(body.len() as u32);
    out.extend_from_slice(body);
}

/// `MPUB <topic>\n[u32 body size][u32 count]([u32 len][bytes])*`.
pub fn put_mpub<'a>(
    out: &mut BytesMut,
    topic: &str,
    bodies: impl Iterator<Item = &'a [u8]> + Clone,
) {
    let (count, bytes) = bodies
        .clone()
        .fold((0u32, 4usize), |(n, b), body| (n + 1, b + 4 + body.len()));
    put_line(out, &[b"MPUB", topic.as_bytes()]);
    out.reserve(4 + bytes);
    out.put_u32(bytes as u32);
    out.put_u32(count);
    for body in bodies {
        out.put_u32(body.len() as u32);
        out.extend_from_slice(body);
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Formats `n` in decimal into the tail of `buf` without allocating.
fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: i32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(&frame_type.to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn message(attempts: u16, id: &[u8; 16], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&1_700_000_000_000_000_000i64.to_be_bytes());
        v.extend_from_slice(&attempts.to_be_bytes());
        v.extend_from_slice(id);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn check_frame_needs_every_byte() {
        let f = frame(FRAME_RESPONSE, b"OK");
        for cut in 0..f.len() {
            assert_eq!(check_frame(&f[..cut], 1024), Ok(None), "prefix {cut}");
        }
        assert_eq!(check_frame(&f, 1024), Ok(Some((FRAME_RESPONSE, f.len()))));
        let mut two = f.clone();
        two.extend_from_slice(&frame(FRAME_ERROR, b"E_INVALID x"));
        assert_eq!(check_frame(&two, 1024), Ok(Some((FRAME_RESPONSE, f.len()))));
        assert_eq!(
            check_frame(&two[f.len()..], 1024),
            Ok(Some((FRAME_ERROR, two.len() - f.len())))
        );
    }

    #[test]
    fn check_frame_rejects_bad_sizes() {
        assert_eq!(
            check_frame(&[0, 0, 0, 3, 0, 0, 0, 0], 1024),
            Err(WireError::FrameTooSmall(3))
        );
        assert_eq!(
            check_frame(&[0, 0, 4, 1], 1024),
            Err(WireError::FrameTooLarge {
                size: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn decode_message_fields() {
        let id = b"0123456789abcdef";
        let data = message(3, id, b"hello");
        let m = decode_message(&data).expect("valid message");
        assert_eq!(m.timestamp, 1_700_000_000_000_000_000);
        assert_eq!(m.attempts, 3);
        assert_eq!(m.id, id);
        assert_eq!(m.body, b"hello");
        let empty = message(1, id, b"");
        assert_eq!(decode_message(&empty).expect("empty body").body, b"");
        assert_eq!(
            decode_message(&data[..25]),
            Err(WireError::MessageTooShort(25))
        );
    }

    #[test]
    fn message_frame_round_trip() {
        let id = b"000000000000002a";
        let f = frame(FRAME_MESSAGE, &message(1, id, b"payload"));
        let (t, total) = check_frame(&f, 1024).expect("ok").expect("complete");
        assert_eq!((t, total), (FRAME_MESSAGE, f.len()));
        let m = decode_message(&f[HEADER_LEN..total]).expect("message");
        let mut out = BytesMut::new();
        put_fin(&mut out, m.id);
        assert_eq!(&out[..], b"FIN 000000000000002a\n");
    }

    #[test]
    fn encodes_commands() {
        let mut out = BytesMut::new();
        put_sub(&mut out, "t", "c");
        put_rdy(&mut out, 2500);
        put_rdy(&mut out, 0);
        put_nop(&mut out);
        assert_eq!(&out[..], b"SUB t c\nRDY 2500\nRDY 0\nNOP\n");

        let mut out = BytesMut::new();
        put_identify(&mut out, b"{}");
        assert_eq!(&out[..], b"IDENTIFY\n\x00\x00\x00\x02{}");
    }

    #[test]
    fn encodes_mpub() {
        let mut out = BytesMut::new();
        let bodies: [&[u8]; 2] = [b"ab", b"c"];
        put_mpub(&mut out, "topic", bodies.iter().copied());
        let mut want = b"MPUB topic\n".to_vec();
        want.extend_from_slice(&(4u32 + 6 + 5).to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(b"ab");
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(b"c");
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn formats_integers() {
        let mut b = itoa_buf();
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }
}
