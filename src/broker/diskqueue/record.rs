//! The disk queue's record codec, pure and without IO: how one `Message` is
//! laid out in a segment file, how a record is checked (sync marker, length
//! bound, checksum) before anything is allocated for it, and how to find the
//! next sync marker after a corrupt record.
//!
//! Layout, all integers little-endian, 38 bytes of header then the body:
//!
//! ```text
//! [4 magic D5 9A 3C 71][u32 body len][u32 crc32][i64 timestamp][u16 attempts][16 id][body]
//! ```
//!
//! The CRC-32 (IEEE, `crc32fast`) covers the length field and everything after
//! the checksum, so a damaged length is caught like a damaged body. The magic
//! is the resync marker: after corruption the reader scans for it and accepts
//! a candidate only if its length is in bounds and its checksum matches.

use bytes::Bytes;

use crate::broker::{MSG_ID_LEN, Message, MessageId};

/// Sync marker at the start of every record. Not ASCII, so text bodies do
/// not contain it by accident.
pub const MAGIC: [u8; 4] = [0xD5, 0x9A, 0x3C, 0x71];

/// Bytes before the body: magic, length, crc, timestamp, attempts, id.
pub const HEADER_LEN: usize = 4 + 4 + 4 + 8 + 2 + MSG_ID_LEN;

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The bytes at the record position are not the sync marker.
    BadMagic,
    /// The length prefix is larger than `max_msg_size`; the record boundary
    /// after it is unknown.
    TooLong(u32),
    /// The checksum does not match; `len` is the (possibly damaged) length.
    BadChecksum { len: u32 },
}

/// The outcome of decoding at one position.
#[derive(Debug)]
pub enum Decoded {
    /// A whole, checked record occupying `len` bytes.
    Record {
        msg: Message,
        len: usize,
    },
    /// Not enough bytes yet; `need` is the record's total size so far as known.
    Incomplete {
        need: usize,
    },
    Corrupt(Corruption),
}

/// Bytes a record with a body of `body_len` bytes occupies.
pub fn encoded_len(body_len: usize) -> usize {
    HEADER_LEN + body_len
}

/// Appends `msg` as one record. The caller has checked the body length
/// against `max_msg_size`, which is a `u32`, so the cast cannot truncate.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let len = msg.body.len() as u32;
    let ts = msg.timestamp.to_le_bytes();
    let attempts = msg.attempts.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&ts);
    h.update(&attempts);
    h.update(&msg.id.0);
    h.update(&msg.body);
    out.reserve(encoded_len(msg.body.len()));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&ts);
    out.extend_from_slice(&attempts);
    out.extend_from_slice(&msg.id.0);
    out.extend_from_slice(&msg.body);
}

/// Decodes the record at the start of `buf`. The length is checked against
/// `max_msg_size` before the body is looked at, so a damaged length never
/// makes the caller read or allocate more than `HEADER_LEN + max_msg_size`.
pub fn decode(buf: &[u8], max_msg_size: u32) -> Decoded {
    if buf.len() < MAGIC.len() {
        return Decoded::Incomplete { need: HEADER_LEN };
    }
    if buf[..4] != MAGIC {
        return Decoded::Corrupt(Corruption::BadMagic);
    }
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete { need: HEADER_LEN };
    }
    let len = u32_at(buf, 4);
    if len > max_msg_size {
        return Decoded::Corrupt(Corruption::TooLong(len));
    }
    let total = encoded_len(len as usize);
    if buf.len() < total {
        return Decoded::Incomplete { need: total };
    }
    let stored = u32_at(buf, 8);
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[4..8]);
    h.update(&buf[12..total]);
    if h.finalize() != stored {
        return Decoded::Corrupt(Corruption::BadChecksum { len });
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&buf[12..20]);
    let mut id = [0u8; MSG_ID_LEN];
    id.copy_from_slice(&buf[22..22 + MSG_ID_LEN]);
    let msg = Message {
        id: MessageId(id),
        timestamp: i64::from_le_bytes(ts),
        attempts: u16::from_le_bytes([buf[20], buf[21]]),
        body: Bytes::copy_from_slice(&buf[HEADER_LEN..total]),
    };
    Decoded::Record { msg, len: total }
}

/// Offset of the first sync marker in `buf`, if any.
pub fn find_magic(buf: &[u8]) -> Option<usize> {
    buf.windows(MAGIC.len()).position(|w| w == MAGIC)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &'static [u8]) -> Message {
        Message {
            id: MessageId::from_u64(42),
            timestamp: -7,
            attempts: 3,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn round_trip_and_every_prefix_is_incomplete() {
        let mut buf = Vec::new();
        encode(&msg(b"hello"), &mut buf);
        assert_eq!(buf.len(), encoded_len(5));
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut], 1024), Decoded::Incomplete { .. }),
                "prefix {cut}"
            );
        }
        match decode(&buf, 1024) {
            Decoded::Record { msg: m, len } => {
                assert_eq!(len, buf.len());
                assert_eq!(m.id, MessageId::from_u64(42));
                assert_eq!((m.timestamp, m.attempts), (-7, 3));
                assert_eq!(&m.body[..], b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&msg(b"some body"), &mut buf);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                matches!(
                    decode(&bad, 1024),
                    Decoded::Corrupt(_) | Decoded::Incomplete { .. }
                ),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn length_over_the_bound_is_rejected_before_the_body() {
        let mut buf = Vec::new();
        encode(&msg(b"x"), &mut buf);
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&buf[..HEADER_LEN], 1024),
            Decoded::Corrupt(Corruption::TooLong(u32::MAX))
        ));
    }
}
