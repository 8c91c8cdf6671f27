//! The disk queue's metadata file: depth, read position and durable write
//! position, as a few lines of text (like nsqd's, so it can be read by eye),
//! replaced atomically by writing a temp file, fsyncing it and renaming it.
//!
//! ```text
//! nsq-gateway diskqueue v1
//! <depth>
//! <read segment>,<read offset>
//! <write segment>,<write offset>
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

const HEADER: &str = "nsq-gateway diskqueue v1";

/// Highest segment number taken from a file: far beyond what any queue
/// reaches (2^62 segments), so numbering never overflows after it however
/// many segments are rolled. A larger one is damage.
pub const MAX_SEGMENT: u64 = 1 << 62;

/// A position in the queue: a segment number and a byte offset inside it.
/// Ordered by segment, then offset, which is queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// What is persisted between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Records between `read` and `write` when the file was written.
    pub depth: u64,
    /// Next record to deliver. Records popped after this was written are
    /// delivered again after a crash (the at-least-once window).
    pub read: Pos,
    /// End of the data that was fsynced when this was written. Records after
    /// it are counted again at open, so `depth` stays right after a crash.
    pub write: Pos,
}

impl Meta {
    pub fn encode(&self) -> String {
        format!(
            "{HEADER}\n{}\n{},{}\n{},{}\n",
            self.depth, self.read.seg, self.read.off, self.write.seg, self.write.off
        )
    }

    /// Parses a file written by `encode`; `None` for anything else,
    /// including a segment number past `MAX_SEGMENT`, which no queue
    /// reaches (numbering on from it could overflow).
    pub fn decode(text: &str) -> Option<Meta> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let depth = lines.next()?.parse().ok()?;
        let read = parse_pos(lines.next()?)?;
        let write = parse_pos(lines.next()?)?;
        if lines.next().is_some() || read > write || write.seg > MAX_SEGMENT {
            return None;
        }
        Some(Meta { depth, read, write })
    }
}

fn parse_pos(line: &str) -> Option<Pos> {
    let (seg, off) = line.split_once(',')?;
    Some(Pos {
        seg: seg.parse().ok()?,
        off: off.parse().ok()?,
    })
}

/// Reads the metadata file. A missing file is `Ok(None)`; an unreadable or
/// malformed one is an error the caller logs before starting from the
/// oldest segment (redelivering rather than losing).
pub fn read(path: &Path) -> io::Result<Option<Meta>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Meta::decode(&text)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed metadata file"))
}

/// Replaces `path` with `meta` atomically: write `tmp`, fsync it, rename.
/// The directory is not fsynced: a lost rename only brings back an older
/// read position, which is the documented at-least-once window.
pub fn write(path: &Path, tmp: &Path, meta: &Meta) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(meta.encode().as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_junk() {
        let m = Meta {
            depth: 5,
            read: Pos { seg: 1, off: 20 },
            write: Pos { seg: 3, off: 0 },
        };
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        assert_eq!(Meta::decode(""), None);
        assert_eq!(Meta::decode("nsq-gateway diskqueue v1\n5\n1,2\n"), None);
        assert_eq!(Meta::decode(&m.encode().replace("3,0", "0,0")), None);
    }

    /// Found by `fuzz::disk`: a damaged file naming the last possible
    /// segment made `DiskQueue::open` overflow computing the next one.
    #[test]
    fn unreachable_segment_numbers_are_damage() {
        let text = "nsq-gateway diskqueue v1\n2\n0,0\n18446744073709551615,28793222\n";
        assert_eq!(Meta::decode(text), None);
        let text = format!("nsq-gateway diskqueue v1\n2\n0,0\n{},0\n", MAX_SEGMENT + 1);
        assert_eq!(Meta::decode(&text), None);
        let text = format!("nsq-gateway diskqueue v1\n2\n0,0\n{MAX_SEGMENT},0\n");
        assert!(Meta::decode(&text).is_some());
    }
}
