//! The write path: appending a batch of records with one write(2), fsyncing
//! it in `Always` mode, cutting a failed write back to the last record
//! boundary, rolling to a new segment, and giving space back when the
//! `max_total_bytes` cap is hit.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::broker::Message;

use super::reader::Step;
use super::record;
use super::{DiskQueue, DiskQueueError, SyncPolicy};

impl DiskQueue {
    /// Appends one message. See `put_batch`.
    pub fn put(&mut self, msg: &Message) -> Result<(), DiskQueueError> {
        self.put_batch(std::slice::from_ref(msg))
    }

    /// Appends `msgs` as one unit: all or none are accepted. In `Always` mode
    /// this is one write and one fsync. On an error nothing of the batch is
    /// kept and the queue stays usable.
    pub fn put_batch(&mut self, msgs: &[Message]) -> Result<(), DiskQueueError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut bytes = 0u64;
        for m in msgs {
            if m.body.len() > self.opts.max_msg_size as usize {
                return Err(DiskQueueError::MessageTooLarge {
                    size: m.body.len(),
                    max: self.opts.max_msg_size,
                });
            }
            bytes += record::encoded_len(m.body.len()) as u64;
        }
        if let Some(limit) = self.opts.max_total_bytes
            && self.total_bytes + bytes > limit
        {
            self.reclaim_write_segment()?;
            if self.total_bytes + bytes > limit {
                return Err(DiskQueueError::Full {
                    used: self.total_bytes,
                    needed: bytes,
                    limit,
                });
            }
        }
        let end = self.write_end();
        if end > 0 && end + bytes > self.opts.max_bytes_per_file {
            self.roll()?;
        }
        let mark = self.write_buf.len();
        for m in msgs {
            record::encode(m, &mut self.write_buf);
        }
        // One write per call, so an acknowledged publish has reached the
        // kernel (survives a process crash); `Always` also fsyncs it.
        self.commit(mark, self.opts.sync == SyncPolicy::Always)?;
        self.total_bytes += bytes;
        self.depth += msgs.len() as u64;
        self.meta_dirty = true;
        self.count_ops(msgs.len() as u64);
        Ok(())
    }

    /// Writes `write_buf` at `flushed` (and fsyncs it if `fsync`). On failure
    /// the file is cut back to `flushed` and the buffer to `keep` bytes (the
    /// records of the failing batch are dropped, older ones kept for the next
    /// attempt). If the file cannot be cut back, the segment is abandoned
    /// (the reader will skip its torn tail) and writing goes on in a new one.
    pub(super) fn commit(&mut self, keep: usize, fsync: bool) -> io::Result<()> {
        if self.write_buf.is_empty() && !fsync {
            return Ok(());
        }
        if self.write_file.is_none() {
            let path = self.seg_path(self.write_seg);
            let opened = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path)
                // Make the new file's directory entry durable: Always mode
                // promises that an acknowledged record survives power loss.
                .and_then(|f| File::open(&self.dir)?.sync_all().map(|()| f));
            match opened {
                Ok(f) => {
                    self.fsyncs += 1;
                    self.write_file = Some(Arc::new(f));
                }
                Err(e) => {
                    self.write_buf.truncate(keep);
                    return Err(e);
                }
            }
        }
        let Some(file) = &self.write_file else {
            return Err(io::Error::other("write segment not open"));
        };
        let start = self.flushed;
        let mut result = write_at_with_fault(file, &self.write_buf, start, &mut self.fail_after);
        if result.is_ok() && fsync {
            result = file.sync_data();
            self.fsyncs += 1;
        }
        match result {
            Ok(()) => {
                self.flushed += self.write_buf.len() as u64;
                self.write_buf.clear();
                self.data_unsynced = !fsync;
                Ok(())
            }
            Err(e) => {
                self.write_buf.truncate(keep);
                if let Err(cut) = file.set_len(start) {
                    tracing::warn!(queue = %self.name, seg = self.write_seg, error = %cut, "cannot cut back a failed write; abandoning the segment");
                    self.write_file = None;
                    self.write_seg += 1;
                    self.flushed = 0;
                    self.data_unsynced = false;
                }
                Err(e)
            }
        }
    }

    /// Called when the cap is hit while the reader is in the write segment,
    /// whose space would otherwise never come back (only finished segments
    /// are deleted): finishes it, and deletes it at once if it is all read.
    pub(super) fn reclaim_write_segment(&mut self) -> io::Result<()> {
        // Segments read to their end are deleted by the next pop; do it now.
        while self.read.seg < self.write_seg {
            let (off, max) = (self.read.off, self.opts.max_msg_size);
            let at_end = match self.reader_for(self.read.seg)? {
                Some(r) => matches!(r.next(off, u64::MAX, max)?, Step::End),
                None => {
                    self.finish_read_segment();
                    continue;
                }
            };
            if !at_end {
                return Ok(());
            }
            self.finish_read_segment();
        }
        let end = self.write_end();
        if self.read.seg != self.write_seg || end == 0 {
            return Ok(());
        }
        self.roll()?;
        if self.read.off >= end {
            self.finish_read_segment();
        }
        Ok(())
    }

    /// Finishes `write_seg` (written out and fsynced) and starts the next.
    pub(super) fn roll(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() || self.data_unsynced {
            self.commit(self.write_buf.len(), true)?;
        }
        self.write_file = None;
        self.write_seg += 1;
        self.flushed = 0;
        self.data_unsynced = false;
        self.meta_dirty = true;
        Ok(())
    }
}

/// Writes `buf` at `off`, honouring the test fault: with `Some(n)`, a write
/// longer than `n` writes `n` bytes and then fails.
fn write_at_with_fault(
    file: &File,
    buf: &[u8],
    off: u64,
    fault: &mut Option<u64>,
) -> io::Result<()> {
    if let Some(left) = *fault {
        if (buf.len() as u64) > left {
            *fault = None;
            file.write_all_at(&buf[..left as usize], off)?;
            return Err(io::Error::other("injected write error"));
        }
        *fault = Some(left - buf.len() as u64);
    }
    file.write_all_at(buf, off)
}
