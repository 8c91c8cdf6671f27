//! The read path: popping the next record from the read segment, stepping
//! over truncated and corrupt records (logged), and moving on to the next
//! segment when one is read through.

use std::fs::File;
use std::io;

use crate::broker::Message;

use super::meta::Pos;
use super::reader::{SegmentReader, Step};
use super::{DiskQueue, Ticket};

impl DiskQueue {
    /// The next message, acked at once: for readers that are done with a
    /// record as soon as they have it. See `pop_tracked`.
    pub fn pop(&mut self) -> Option<Message> {
        let (msg, ticket) = self.pop_tracked()?;
        self.ack(ticket);
        Some(msg)
    }

    /// The next message and its ticket, or `None` when the queue is empty.
    /// Until the ticket is acked, the persisted read position stays at or
    /// before the record, so a crash delivers it again. Corrupt and
    /// truncated records are logged and skipped. An I/O error is logged and
    /// reported as `None`; the next call tries again.
    pub fn pop_tracked(&mut self) -> Option<(Message, Ticket)> {
        loop {
            let at_write_seg = self.read.seg == self.write_seg;
            if at_write_seg && self.read.off >= self.write_end() {
                if self.depth != 0 {
                    self.depth = 0;
                    self.meta_dirty = true;
                    self.read_dirty = true;
                }
                return None;
            }
            let limit = if at_write_seg {
                if self.read.off >= self.flushed
                    && let Err(e) = self.commit(self.write_buf.len(), false)
                {
                    tracing::warn!(queue = %self.name, error = %e, "disk queue flush for reading failed");
                    return None;
                }
                self.flushed
            } else {
                u64::MAX
            };
            let (off, max) = (self.read.off, self.opts.max_msg_size);
            let step = match self.reader_for(self.read.seg) {
                Ok(Some(r)) => r.next(off, limit, max).and_then(|step| match step {
                    Step::Corrupt(why, None) => r
                        .resync(off, why, limit, max)
                        .map(|next| Step::Corrupt(why, Some(next))),
                    other => Ok(other),
                }),
                Ok(None) => {
                    // A missing file before the write segment: nothing left there.
                    self.finish_read_segment();
                    continue;
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(Step::Record(msg, len)) => {
                    let ticket = self.track(self.read);
                    self.read.off += len as u64;
                    self.depth = self.depth.saturating_sub(1);
                    self.meta_dirty = true;
                    self.read_dirty = true;
                    self.count_ops(1);
                    return Some((msg, ticket));
                }
                Ok(Step::End) if at_write_seg => {
                    // Cannot happen: `flushed` is a record boundary past `read`.
                    self.read.off = limit;
                }
                Ok(Step::End) => self.finish_read_segment(),
                Ok(Step::Truncated { have }) => {
                    tracing::warn!(queue = %self.name, seg = self.read.seg, off, bytes = have, "disk queue record truncated; skipping the rest of the segment");
                    self.depth = self.depth.saturating_sub(1);
                    if at_write_seg {
                        self.read.off = limit;
                    } else {
                        self.finish_read_segment();
                    }
                }
                Ok(Step::Corrupt(why, next)) => {
                    // `next` is always set by the resync above.
                    let next = next.unwrap_or(off + 1);
                    tracing::warn!(queue = %self.name, seg = self.read.seg, off, ?why, skipped = next - off, "disk queue record corrupt; skipped");
                    self.read.off = next;
                    self.depth = self.depth.saturating_sub(1);
                    self.meta_dirty = true;
                    self.read_dirty = true;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.name, seg = self.read.seg, error = %e, "disk queue read failed");
                    return None;
                }
            }
        }
    }

    /// The reader for `seg`, opening it if needed; `None` if the file is gone.
    pub(super) fn reader_for(&mut self, seg: u64) -> io::Result<Option<&mut SegmentReader>> {
        if self.reader.as_ref().is_none_or(|r| r.seg != seg) {
            self.reader = None;
            match File::open(self.seg_path(seg)) {
                Ok(file) => self.reader = Some(SegmentReader::new(seg, file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self.reader.as_mut())
    }

    /// Moves the read position to the next segment and releases the
    /// segments the committed read position has left.
    pub(super) fn finish_read_segment(&mut self) {
        let done = self.read.seg;
        self.reader = None;
        self.read = Pos {
            seg: done + 1,
            off: 0,
        };
        self.meta_dirty = true;
        self.read_dirty = true;
        self.release_segments();
    }
}
