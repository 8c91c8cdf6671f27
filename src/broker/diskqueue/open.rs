//! Opening a disk queue from what is on disk: listing its segment files,
//! choosing the write segment (always a new one after the existing ones) and
//! the read position from the metadata, and recounting the depth after the
//! metadata's durable write end.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::time::Instant;

use super::meta::{self, Meta, Pos};
use super::reader::{SegmentReader, Step};
use super::{DiskQueue, DiskQueueOptions, MAX_UNACKED, encode_name};

impl DiskQueue {
    /// Opens (creating `dir` if needed) the queue `name`, resuming from its
    /// files: the read position comes from the metadata, the depth from the
    /// metadata plus a count of the records written after its last sync.
    pub fn open(dir: &Path, name: &str, opts: DiskQueueOptions) -> io::Result<DiskQueue> {
        if name.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty disk queue name",
            ));
        }
        fs::create_dir_all(dir)?;
        let prefix = format!("{}.diskqueue.", encode_name(name));
        let segs = list_segments(dir, &prefix)?;
        let total_bytes = segs.iter().map(|&(_, len)| len).sum();
        let meta_path = dir.join(format!("{prefix}meta.dat"));
        let meta = match meta::read(&meta_path) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "disk queue metadata unreadable; reading from the oldest segment");
                None
            }
        };
        // Never append to a segment that existed before: its tail may be torn.
        let write_seg = match (segs.last(), meta) {
            (Some(&(n, 0)), _) => n,
            (Some(&(n, _)), _) => n + 1,
            (None, Some(m)) => m.write.seg + 1,
            (None, None) => 0,
        };
        let first_from = |seg: u64| {
            segs.iter()
                .map(|&(n, _)| n)
                .find(|&n| n >= seg)
                .unwrap_or(write_seg)
        };
        let read = match meta {
            Some(m) if segs.iter().any(|&(n, _)| n == m.read.seg) => m.read,
            Some(m) => Pos {
                seg: first_from(m.read.seg),
                off: 0,
            },
            None => Pos {
                seg: first_from(0),
                off: 0,
            },
        };
        // The write segment starts empty, so a read position in it (or past
        // it, from a damaged file) can only be its start.
        let read = if read.seg >= write_seg {
            Pos {
                seg: write_seg,
                off: 0,
            }
        } else {
            read
        };
        let mut q = DiskQueue {
            name: name.to_owned(),
            dir: dir.to_owned(),
            prefix,
            opts,
            depth: 0,
            read,
            reader: None,
            write_seg,
            write_file: None,
            flushed: 0,
            write_buf: Vec::new(),
            unacked: VecDeque::new(),
            unacked_base: 0,
            // Files before the committed position are left over from a
            // crash between a metadata write and their deletion.
            first_seg: segs.first().map_or(read.seg, |&(n, _)| n.min(read.seg)),
            max_unacked: MAX_UNACKED,
            unacked_overflow_logged: false,
            total_bytes,
            data_unsynced: false,
            meta_dirty: false,
            read_dirty: false,
            meta_write_seg: u64::MAX,
            since_sync: 0,
            last_sync: Instant::now(),
            fsyncs: 0,
            bg: Arc::default(),
            fail_after: None,
            closed: false,
        };
        // Depth: trust the metadata up to its durable write end, count after.
        // A metadata write end past the file's length means the file lost
        // data after that sync (a torn tail): count everything instead.
        let durable = |m: &Meta| match segs.iter().find(|&&(n, _)| n == m.write.seg) {
            Some(&(_, len)) => len >= m.write.off,
            None => m.write.off == 0,
        };
        let (base, from) = match meta {
            Some(m) if m.write >= read && m.read == read && durable(&m) => (m.depth, m.write),
            _ => (0, read),
        };
        q.depth = base + q.count_from(from)?;
        Ok(q)
    }

    /// Records from `from` to the end of the segments before `write_seg`.
    pub(super) fn count_from(&self, from: Pos) -> io::Result<u64> {
        let mut count = 0;
        for (seg, _) in list_segments(&self.dir, &self.prefix)? {
            if seg < from.seg || seg >= self.write_seg {
                continue;
            }
            let file = match File::open(self.seg_path(seg)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut r = SegmentReader::new(seg, file);
            let mut off = if seg == from.seg { from.off } else { 0 };
            loop {
                match r.next(off, u64::MAX, self.opts.max_msg_size)? {
                    Step::Record(_, len) => {
                        count += 1;
                        off += len as u64;
                    }
                    Step::End | Step::Truncated { .. } => break,
                    Step::Corrupt(why, _) => {
                        off = r.resync(off, why, u64::MAX, self.opts.max_msg_size)?;
                    }
                }
            }
        }
        Ok(count)
    }
}

/// The segments of the queue whose files start with `prefix`, as
/// (number, length), sorted by number. Other queues' files never match:
/// what follows the prefix must be digits and `.dat`.
pub(super) fn list_segments(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, u64)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(num) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(".dat"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            // Not ours: no queue gets there, and numbering on from it could
            // overflow.
            .filter(|&n| n <= meta::MAX_SEGMENT)
        else {
            continue;
        };
        segs.push((num, entry.metadata()?.len()));
    }
    segs.sort_unstable();
    Ok(segs)
}
