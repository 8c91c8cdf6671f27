//! The append-only disk queue behind one topic or channel: messages that do
//! not fit in the memory queue are appended to numbered segment files and
//! read back in order, with a checksum per record, an fsync policy, and a
//! read position that survives restarts. It is synchronous and owned by one
//! queue, because it is called under that queue's `std::sync::Mutex`.
//!
//! Files, for a queue named `name` in `dir` (the name is percent-encoded:
//! every byte outside `[A-Za-z0-9._-]` becomes `%XX`, so `topic:channel` is
//! stored as `topic%3Achannel`):
//! - `<name>.diskqueue.<NNNNNN>.dat`: segments, rolled before a write would
//!   take one past `max_bytes_per_file` (a single batch larger than that gets
//!   a segment of its own). Records are described in [`record`].
//! - `<name>.diskqueue.meta.dat`: depth and positions, see [`meta`].
//!
//! Guarantees. With [`SyncPolicy::Always`], `put` returns only after the
//! record is fsynced, so an acknowledged message survives power loss. With
//! [`SyncPolicy::Batch`], every `put_batch` hands its records to the kernel
//! with one write before it returns, so they survive any crash of the
//! process; the fsync is periodic (every `sync_every` puts plus pops or
//! `sync_timeout`) and runs in the background (see [`syncer`]): a sync that
//! falls due while the last one still runs is retried by the next put or
//! pop, and the put or pop that reaches twice `sync_every` waits for it. So
//! a power loss may lose up to about twice `sync_every` messages.
//!
//! Acknowledged reads. `pop_tracked` hands out each record with a
//! [`Ticket`]; the queue keeps the start of every popped record until its
//! ticket comes back through `ack`. The read position written to the
//! metadata is the *committed* one: the start of the oldest record popped
//! and not acked (or the next unread record). So after a crash everything
//! not acked is read again (at least once; duplicates are expected), and a
//! segment file is deleted only once the committed position has left it.
//! The record of unacked pops is bounded by [`MAX_UNACKED`]; past it the
//! oldest is given up (logged), so one message held for very long cannot
//! grow it without limit. The write end is never taken from the
//! metadata: every open starts a new segment after the existing ones, so a
//! torn tail left by a crash is just a truncated record at the end of a
//! finished segment, which the reader logs and steps over.

pub(crate) mod meta;
pub(crate) mod record;
mod syncer;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Message;
use meta::{Meta, Pos};
use record::{Corruption, Decoded, HEADER_LEN};

/// Most records popped and not yet acked that a queue remembers; past it
/// the oldest is treated as acked (its crash safety given up, logged). A
/// slot is 24 bytes, so this is at most 24 MiB for a queue whose oldest
/// message stays unfinished while a million later ones pass it.
pub const MAX_UNACKED: usize = 1 << 20;
/// How much the reader asks the OS for at a time.
const READ_CHUNK: usize = 256 << 10;

/// When data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every `sync_every` messages (puts plus pops) or `sync_timeout`, as nsqd.
    Batch,
    /// Every `put`/`put_batch` is fsynced before it returns.
    Always,
}

/// Limits and fsync policy of a disk queue, with nsqd's defaults.
#[derive(Debug, Clone)]
pub struct DiskQueueOptions {
    /// Segment size at which a new file is started.
    pub max_bytes_per_file: u64,
    /// Messages (put or popped) between syncs in `Batch` mode; 0 acts as 1.
    pub sync_every: u64,
    /// Longest time dirty data waits for a sync, via `maybe_sync`.
    pub sync_timeout: Duration,
    pub sync: SyncPolicy,
    /// Largest body accepted, and the bound that tells a damaged length
    /// prefix from a real one.
    pub max_msg_size: u32,
    /// Cap on the bytes of segment files; `None` means no cap. Space is
    /// given back when a fully consumed segment is deleted; when the cap is
    /// hit while the reader is in the write segment, that segment is
    /// finished early so that reading it through frees it.
    pub max_total_bytes: Option<u64>,
}

impl Default for DiskQueueOptions {
    fn default() -> Self {
        DiskQueueOptions {
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            sync: SyncPolicy::Batch,
            max_msg_size: 1024 * 1024,
            max_total_bytes: None,
        }
    }
}

/// Why a put failed. The queue stays usable after any of them.
#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    #[error("message body of {size} bytes exceeds max-msg-size {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("disk queue full: {used} + {needed} bytes exceeds the cap of {limit}")]
    Full { used: u64, needed: u64, limit: u64 },
    #[error("disk queue I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A popped record, as handed to `ack`: its pop sequence number.
pub type Ticket = u64;

/// One queue's segment files. See the module docs for the guarantees.
pub struct DiskQueue {
    /// The queue's name as given, for logs.
    name: String,
    dir: PathBuf,
    /// `<encoded name>.diskqueue.`, the start of every file name.
    prefix: String,
    opts: DiskQueueOptions,
    /// Records not yet popped. Exact unless records were skipped as
    /// corrupt; reset to 0 whenever the reader catches up with the writer.
    depth: u64,
    /// Next record to pop.
    read: Pos,
    /// Open handle and read-ahead buffer for `read.seg`.
    reader: Option<SegmentReader>,
    /// Segment being appended to; always the last one.
    write_seg: u64,
    /// Opened lazily, so a queue that never spills creates no file.
    write_file: Option<Arc<File>>,
    /// Bytes of `write_seg` handed to the OS; always a record boundary, and
    /// the reader never reads past it in `write_seg`.
    flushed: u64,
    /// Encoded records of the `put_batch` in progress, written with one
    /// write(2) before it returns (reused, so a put allocates nothing).
    write_buf: Vec<u8>,
    /// Start of every record popped since the committed read position, and
    /// whether it was acked: the persisted read position is the first slot
    /// (see the module docs). Acked slots at the front are dropped at once.
    unacked: VecDeque<(Pos, bool)>,
    /// Ticket of `unacked[0]`; tickets below it are acked already.
    unacked_base: Ticket,
    /// Oldest segment whose file may still exist: files before the
    /// committed read position's segment are deleted up to it.
    first_seg: u64,
    /// `MAX_UNACKED`, lowered by tests.
    max_unacked: usize,
    /// The `max_unacked` overflow was logged (once per queue).
    unacked_overflow_logged: bool,
    /// Bytes in all segment files plus `write_buf`, for `max_total_bytes`.
    total_bytes: u64,
    /// Bytes were written to `write_file` since its last fsync.
    data_unsynced: bool,
    /// Depth or a position changed since the metadata was last written.
    meta_dirty: bool,
    /// Pops moved the read position since the metadata was written. The
    /// periodic sync writes the metadata only then, or when the write
    /// segment changed: after puts alone the data fsync is enough, since
    /// open recounts the records after the metadata's write end (at most
    /// about one segment), which halves the fsyncs of a put-only backlog.
    read_dirty: bool,
    /// `write_seg` when the metadata was last written (`u64::MAX`: never).
    meta_write_seg: u64,
    /// Puts and pops since the last sync, against `sync_every`.
    since_sync: u64,
    last_sync: Instant,
    /// fsync calls made, for tests and stats.
    fsyncs: u64,
    /// The periodic syncs handed to the background pool (`Batch` mode).
    bg: Arc<syncer::Tracker>,
    /// Test hook: the number of bytes that may still be written before a
    /// write fails (after writing that many, like a short write).
    fail_after: Option<u64>,
    /// Set by `delete` so that `Drop` does not write the files back.
    closed: bool,
}

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

    /// Remembers a popped record starting at `start`; returns its ticket.
    fn track(&mut self, start: Pos) -> Ticket {
        if self.unacked.len() >= self.max_unacked {
            if !self.unacked_overflow_logged {
                self.unacked_overflow_logged = true;
                tracing::warn!(queue = %self.name, limit = self.max_unacked, "too many messages popped past an unfinished one; giving up the crash safety of the oldest");
            }
            self.unacked.pop_front();
            self.unacked_base += 1;
            self.trim_acked();
        }
        self.unacked.push_back((start, false));
        self.unacked_base + self.unacked.len() as u64 - 1
    }

    /// Marks a popped record done. Once every record before it is done too,
    /// the committed read position passes it (persisted at the next sync)
    /// and segment files left behind are deleted. Unknown or repeated
    /// tickets (from before `empty`, or acked twice) are ignored.
    pub fn ack(&mut self, ticket: Ticket) {
        let Some(i) = ticket
            .checked_sub(self.unacked_base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if let Some(slot) = self.unacked.get_mut(i) {
            slot.1 = true;
            if i == 0 {
                self.trim_acked();
            }
        }
    }

    /// Drops the acked slots at the front; if the committed read position
    /// moved, marks the metadata dirty and releases finished segments.
    fn trim_acked(&mut self) {
        let mut moved = false;
        while self.unacked.front().is_some_and(|s| s.1) {
            self.unacked.pop_front();
            self.unacked_base += 1;
            moved = true;
        }
        if moved {
            self.meta_dirty = true;
            self.read_dirty = true;
            self.release_segments();
        }
    }

    /// The read position a restart resumes from: the oldest unacked pop,
    /// or the next record when every pop was acked.
    fn committed(&self) -> Pos {
        self.unacked.front().map_or(self.read, |s| s.0)
    }

    /// Records popped and not acked (including acked ones behind an
    /// unacked one, which a restart reads again too).
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Messages waiting.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// The metadata as of now: committed read position, and the depth
    /// counted from it.
    fn meta_now(&self) -> Meta {
        Meta {
            depth: self.depth + self.unacked.len() as u64,
            read: self.committed(),
            write: Pos {
                seg: self.write_seg,
                off: self.flushed,
            },
        }
    }

    /// Writes out the buffer, fsyncs the data and writes the metadata.
    pub fn sync(&mut self) -> io::Result<()> {
        self.sync_inner(true)
    }

    /// `sync`, except that the periodic kind (`full == false`) skips the
    /// metadata when only puts within one segment changed it. Runs on the
    /// calling thread, after any background sync of this queue.
    fn sync_inner(&mut self, full: bool) -> io::Result<()> {
        self.bg.wait_idle();
        if let Some(e) = self.bg.take_error() {
            tracing::warn!(queue = %self.name, error = %e, "disk queue background sync failed; syncing again");
            self.redo_background_sync();
        }
        if !self.write_buf.is_empty() {
            self.commit(self.write_buf.len(), true)?;
        } else if self.data_unsynced {
            if let Some(f) = &self.write_file {
                f.sync_data()?;
                self.fsyncs += 1;
            }
            self.data_unsynced = false;
        }
        let meta_due = full || self.read_dirty || self.write_seg != self.meta_write_seg;
        if self.meta_dirty && meta_due {
            let m = self.meta_now();
            meta::write(&self.meta_path(), &self.meta_tmp_path(), &m)?;
            self.fsyncs += 1;
            self.meta_dirty = false;
            self.read_dirty = false;
            self.meta_write_seg = self.write_seg;
        }
        self.since_sync = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if anything is dirty and `sync_timeout` has passed since the
    /// last sync. The broker calls this periodically. `Instant` is tokio's,
    /// like the rest of the broker, so paused-time tests drive it.
    pub fn maybe_sync(&mut self, now: Instant) -> io::Result<()> {
        let dirty = self.since_sync > 0
            || !self.write_buf.is_empty()
            || self.data_unsynced
            || self.meta_dirty;
        if dirty
            && now.saturating_duration_since(self.last_sync) >= self.opts.sync_timeout
            && self.sync_periodic(false)?
        {
            self.last_sync = now;
        }
        Ok(())
    }

    /// The periodic sync. In `Batch` mode the buffer is written out here and
    /// the fsync and metadata go to the background pool; if the previous
    /// background sync is still running, this one is left for a later call
    /// unless `may_wait`. `Always` mode has nothing to wait for (every put
    /// was fsynced) and writes the metadata inline. `false`: left for later.
    fn sync_periodic(&mut self, may_wait: bool) -> io::Result<bool> {
        if self.opts.sync == SyncPolicy::Always {
            return self.sync_inner(false).map(|()| true);
        }
        if self.bg.busy() {
            if !may_wait {
                return Ok(false);
            }
            self.bg.wait_idle();
        }
        if let Some(e) = self.bg.take_error() {
            self.redo_background_sync();
            return Err(e);
        }
        self.commit(self.write_buf.len(), false)?;
        let file = if self.data_unsynced {
            self.write_file.clone()
        } else {
            None
        };
        let meta_due = self.read_dirty || self.write_seg != self.meta_write_seg;
        let meta = (self.meta_dirty && meta_due).then(|| syncer::MetaWrite {
            path: self.meta_path(),
            tmp: self.meta_tmp_path(),
            meta: self.meta_now(),
        });
        self.since_sync = 0;
        self.last_sync = Instant::now();
        self.data_unsynced = false;
        if meta.is_some() {
            self.meta_dirty = false;
            self.read_dirty = false;
            self.meta_write_seg = self.write_seg;
        }
        if file.is_some() || meta.is_some() {
            syncer::submit(syncer::Job {
                file,
                meta,
                tracker: self.bg.clone(),
            });
        }
        Ok(true)
    }

    /// After a failed background sync: everything it covered is dirty again.
    fn redo_background_sync(&mut self) {
        self.data_unsynced = self.write_file.is_some();
        self.meta_dirty = true;
        self.read_dirty = true;
    }

    /// Drops every message and deletes the segment files.
    pub fn empty(&mut self) -> io::Result<()> {
        self.bg.wait_idle();
        self.reader = None;
        self.write_file = None;
        self.write_buf.clear();
        self.remove_segments()?;
        self.write_seg += 1;
        self.flushed = 0;
        self.read = Pos {
            seg: self.write_seg,
            off: 0,
        };
        self.depth = 0;
        self.unacked_base += self.unacked.len() as u64;
        self.unacked.clear();
        self.first_seg = self.write_seg;
        self.total_bytes = 0;
        self.data_unsynced = false;
        self.meta_dirty = true;
        self.sync()
    }

    /// Removes every file of the queue (its topic or channel was deleted).
    pub fn delete(mut self) -> io::Result<()> {
        self.bg.wait_idle();
        self.closed = true;
        self.reader = None;
        self.write_file = None;
        self.remove_segments()?;
        for p in [self.meta_path(), self.meta_tmp_path()] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Bytes held in segment files (and not yet written), against the cap.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// fsync calls made so far (data and metadata), once the background
    /// sync in flight, if any, has finished.
    #[doc(hidden)]
    pub fn fsync_count(&self) -> u64 {
        self.bg.wait_idle();
        self.fsyncs + self.bg.fsyncs()
    }

    /// Test hook: after `n` more bytes are written to segment files, the
    /// next write fails (having written up to `n` bytes, like a short write
    /// on a full disk). One-shot.
    #[doc(hidden)]
    pub fn inject_write_error_after(&mut self, n: u64) {
        self.fail_after = Some(n);
    }

    /// Logical end of `write_seg`, buffered bytes included.
    fn write_end(&self) -> u64 {
        self.flushed + self.write_buf.len() as u64
    }

    fn seg_path(&self, seg: u64) -> PathBuf {
        self.dir.join(format!("{}{seg:06}.dat", self.prefix))
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(format!("{}meta.dat", self.prefix))
    }

    fn meta_tmp_path(&self) -> PathBuf {
        self.dir.join(format!("{}meta.dat.tmp", self.prefix))
    }

    /// Counts puts and pops toward `sync_every` and syncs when it is reached.
    fn count_ops(&mut self, n: u64) {
        self.since_sync += n;
        let every = self.opts.sync_every.max(1);
        if self.since_sync >= every
            && let Err(e) = self.sync_periodic(self.since_sync >= every.saturating_mul(2))
        {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync failed");
        }
    }

    /// Writes `write_buf` at `flushed` (and fsyncs it if `fsync`). On failure
    /// the file is cut back to `flushed` and the buffer to `keep` bytes (the
    /// records of the failing batch are dropped, older ones kept for the next
    /// attempt). If the file cannot be cut back, the segment is abandoned
    /// (the reader will skip its torn tail) and writing goes on in a new one.
    fn commit(&mut self, keep: usize, fsync: bool) -> io::Result<()> {
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
    fn reclaim_write_segment(&mut self) -> io::Result<()> {
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
    fn roll(&mut self) -> io::Result<()> {
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

    /// The reader for `seg`, opening it if needed; `None` if the file is gone.
    fn reader_for(&mut self, seg: u64) -> io::Result<Option<&mut SegmentReader>> {
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
    fn finish_read_segment(&mut self) {
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

    /// Deletes the segment files before the committed read position's
    /// segment (read through and every record acked), after persisting that
    /// position, so their space is given back.
    fn release_segments(&mut self) {
        let upto = self.committed().seg;
        if self.first_seg >= upto {
            return;
        }
        if let Err(e) = self.sync() {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync failed");
        }
        for seg in self.first_seg..upto {
            let path = self.seg_path(seg);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => self.total_bytes = self.total_bytes.saturating_sub(len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(queue = %self.name, seg, error = %e, "cannot delete consumed segment")
                }
            }
        }
        self.first_seg = upto;
    }

    /// Records from `from` to the end of the segments before `write_seg`.
    fn count_from(&self, from: Pos) -> io::Result<u64> {
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

    fn remove_segments(&self) -> io::Result<()> {
        for (seg, _) in list_segments(&self.dir, &self.prefix)? {
            match fs::remove_file(self.seg_path(seg)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn set_max_unacked(&mut self, n: usize) {
        self.max_unacked = n.max(1);
    }

    #[cfg(test)]
    fn reader_capacity(&self) -> usize {
        self.reader.as_ref().map_or(0, |r| r.buf.capacity())
    }

    /// Test hook: drops the queue as a crash would, without writing out the
    /// buffer or the metadata.
    #[cfg(test)]
    fn crash(mut self) {
        self.bg.wait_idle();
        self.closed = true;
    }
}

impl Drop for DiskQueue {
    /// Writes everything out on the way down, as nsqd does on exit.
    fn drop(&mut self) {
        if !self.closed
            && let Err(e) = self.sync()
        {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync on close failed");
        }
    }
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("name", &self.name)
            .field("depth", &self.depth)
            .field("read", &self.read)
            .field("write_seg", &self.write_seg)
            .field("write_end", &self.write_end())
            .finish()
    }
}

/// What the reader found at a position.
enum Step {
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
struct SegmentReader {
    seg: u64,
    file: File,
    /// Bytes of the file starting at `buf_off`.
    buf: Vec<u8>,
    buf_off: u64,
}

impl SegmentReader {
    fn new(seg: u64, file: File) -> Self {
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
    fn next(&mut self, off: u64, limit: u64, max_msg_size: u32) -> io::Result<Step> {
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
    fn resync(&mut self, off: u64, why: Corruption, limit: u64, max: u32) -> io::Result<u64> {
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

/// The queue name as it appears in file names: bytes outside
/// `[A-Za-z0-9._-]` (such as the `:` of `topic:channel`) become `%XX`.
/// `%` itself is encoded, so the mapping is one-to-one.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The segments of the queue whose files start with `prefix`, as
/// (number, length), sorted by number. Other queues' files never match:
/// what follows the prefix must be digits and `.dat`.
fn list_segments(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, u64)>> {
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
