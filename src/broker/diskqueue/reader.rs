//! Positional reads of one segment file through a read-ahead buffer:
//! decoding the record at an offset, and resyncing past a corrupt one to the
//! next record that checks out.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::broker::Message;

use super::record::{self, Corruption, Decoded, HEADER_LEN};

/// How much the reader asks the OS for at a time.
pub(super) const READ_CHUNK: usize = 256 << 10;

/// What the reader found at a position.
pub(super) enum Step {
    /// A checked record and the bytes it occupies.
    Record(Message, usize),
    /// No bytes at all at the position (up to the limit).
    End,
    /// A record cut short by the end of the file; `have` bytes of it exist.
    Truncated { have: usize },
    /// A corrupt record, and once resynced, where reading resumes.
    Corrupt(Corruption, Option<u64>),
}

/// Positional reads of one segment through a read-ahead buffer. Reads use
/// `pread`, so the file may grow under it (the write segment).
pub(super) struct SegmentReader {
    pub(super) seg: u64,
    file: File,
    /// Bytes of the file starting at `buf_off`.
    pub(super) buf: Vec<u8>,
    buf_off: u64,
}

impl SegmentReader {
    pub(super) fn new(seg: u64, file: File) -> Self {
        SegmentReader {
            seg,
            file,
            buf: Vec::new(),
            buf_off: 0,
        }
    }

    /// The bytes from `off`: at least `want` of them unless the file (or
    /// `limit`) ends first. `want` is bounded by the callers to
    /// `HEADER_LEN + max_msg_size` (or `READ_CHUNK`), which bounds `buf`.
    fn fill(&mut self, off: u64, want: usize, limit: u64) -> io::Result<&[u8]> {
        let end = self.buf_off + self.buf.len() as u64;
        if off < self.buf_off || off > end {
            self.buf.clear();
            self.buf_off = off;
        } else if end - off < want as u64 {
            // Compact only when more is needed, so a run of small records
            // does not move the buffer once per record.
            self.buf.drain(..(off - self.buf_off) as usize);
            self.buf_off = off;
        }
        let start = (off - self.buf_off) as usize;
        while self.buf.len() - start < want {
            let file_end = self.buf_off + self.buf.len() as u64;
            if file_end >= limit {
                break;
            }
            let room = (want - (self.buf.len() - start)).max(READ_CHUNK) as u64;
            let n = room.min(limit - file_end) as usize;
            let len = self.buf.len();
            self.buf.resize(len + n, 0);
            let got = match self.file.read_at(&mut self.buf[len..], file_end) {
                Ok(got) => got,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            };
            self.buf.truncate(len + got);
            if got == 0 {
                break;
            }
        }
        Ok(&self.buf[start..])
    }

    /// Decodes the record at `off`.
    pub(super) fn next(&mut self, off: u64, limit: u64, max_msg_size: u32) -> io::Result<Step> {
        let mut want = HEADER_LEN;
        loop {
            let have = self.fill(off, want, limit)?;
            if have.is_empty() {
                return Ok(Step::End);
            }
            match record::decode(have, max_msg_size) {
                Decoded::Record { msg, len } => return Ok(Step::Record(msg, len)),
                Decoded::Corrupt(why) => return Ok(Step::Corrupt(why, None)),
                Decoded::Incomplete { need } if need > want => want = need,
                Decoded::Incomplete { .. } => {
                    return Ok(Step::Truncated { have: have.len() });
                }
            }
        }
    }

    /// Where reading resumes after the corrupt record at `off`: the next
    /// position holding a whole record that checks out, or the end of the
    /// data. If only the body is damaged (checksum mismatch, length in
    /// bounds) the length is tried first; otherwise, and if that fails, the
    /// bytes after `off` are scanned for the sync marker.
    pub(super) fn resync(
        &mut self,
        off: u64,
        why: Corruption,
        limit: u64,
        max: u32,
    ) -> io::Result<u64> {
        if let Corruption::BadChecksum { len } = why {
            let next = off + record::encoded_len(len as usize) as u64;
            if matches!(self.next(next, limit, max)?, Step::Record(..)) {
                return Ok(next);
            }
        }
        let mut pos = off + 1;
        loop {
            let have = self.fill(pos, READ_CHUNK, limit)?;
            if have.len() < record::MAGIC.len() {
                return Ok(pos + have.len() as u64);
            }
            match record::find_magic(have) {
                Some(i) => {
                    let cand = pos + i as u64;
                    if matches!(self.next(cand, limit, max)?, Step::Record(..)) {
                        return Ok(cand);
                    }
                    pos = cand + 1;
                }
                // Keep the last bytes: a marker may straddle the chunk end.
                None => pos += (have.len() - (record::MAGIC.len() - 1)) as u64,
            }
        }
    }
}
